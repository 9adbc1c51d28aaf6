"""The one atomic writer and the one device rule."""

from __future__ import annotations

import os

import pytest
import torch

from vidssl.device import resolve_device
from vidssl.files import atomic_folder, atomic_path, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_nothing_behind(tmp_path) -> None:
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_an_error_keeps_the_old_file_and_removes_the_partial(tmp_path) -> None:
    path = tmp_path / "x.png"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == path.parent
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_atomic_folder_replaces_a_folder_whole(tmp_path) -> None:
    folder = tmp_path / "frames"
    with atomic_folder(folder) as tmp:
        (tmp / "0.jpg").write_text("a")
        (tmp / "1.jpg").write_text("b")
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        (tmp / "0.jpg").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in folder.iterdir()) == ["0.jpg", "1.jpg"]
    with atomic_folder(folder) as tmp:
        (tmp / "2.jpg").write_text("c")
    assert [p.name for p in folder.iterdir()] == ["2.jpg"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_written_files_get_the_ordinary_mode(tmp_path) -> None:
    """Not mkstemp's 0600: results in a shared folder stay readable by the others."""
    import os

    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "results.json", "{}\n")
        with atomic_folder(tmp_path / "frames"):
            pass
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "frames").stat().st_mode & 0o777 == 0o755


def test_written_files_have_the_ordinary_mode_whatever_the_writer(tmp_path) -> None:
    """safetensors replaces the temporary with a file of its own, mode 0600: a shared folder's other
    users could not read the exported encoder."""

    from safetensors.torch import save_file

    reference = tmp_path / "plain.txt"
    atomic_write_text(reference, "x")
    with atomic_path(tmp_path / "enc.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))
    with atomic_path(tmp_path / "ckpt.pt") as tmp:
        torch.save({"w": torch.zeros(2)}, tmp)
    mode = reference.stat().st_mode & 0o777
    for name in ("enc.safetensors", "ckpt.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


@pytest.mark.parametrize("name", ["a" * 240 + ".png", "é" * 120 + ".json", "x" * 250,
                                  os.fsdecode(b"caf\xe9-" + b"b" * 240 + b".pt")])
def test_long_and_non_utf8_names_are_written(tmp_path, name) -> None:
    """A legal name near the 255-byte limit, with the temporary's ``.<random>.partial.png`` added, was
    over it (``File name too long``): the temporary's name is cut, the destination's never is."""
    from vidssl.files import stale_partials

    path = tmp_path / name
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == [name]
    folder = tmp_path / f"{name}.d"[-255:]
    with atomic_folder(folder) as tmp:
        (tmp / "a").write_text("1")
    with atomic_folder(folder) as tmp:  # the swap through a hidden .old sibling, also cut
        (tmp / "a").write_text("2")
    assert (folder / "a").read_text() == "2"
    from vidssl.files import _new_sibling

    left = _new_sibling(path, suffix=".partial.png", folder=False)  # what a kill -9 mid-write leaves
    assert len(os.fsencode(left.name)) <= 255 and stale_partials(tmp_path) == [left]
