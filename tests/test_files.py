"""The one atomic writer and the one device rule."""

from __future__ import annotations

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
