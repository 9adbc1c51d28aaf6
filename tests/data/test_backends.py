"""Every backend returns frame i of a full sequential decode for index i, in any access order; a
new backend is one class and one line in BACKENDS."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from testdata import index_frame, phone_video, read_index, shared_clip

from vidssl.data.backends import (
    BACKENDS,
    Backend,
    Size,
    VideoReadError,
    available_backends,
    backend_choices,
    backend_help,
    check_indices,
    open_video,
    output_size,
    resolve_backend,
)
from vidssl.engine.config import TrainConfig  # imported before any test registers a backend
from vidssl.engine.trainer import run_config, train

FILE_BACKENDS = [b for b in ("pyav", "decord", "opencv") if b in available_backends()]
ORDER = [5, 69, 0, 33, 34, 34, 12, 68, 1, 40, 8, 7]  # backwards, repeats, across GOPs, both ends


def test_index_encoding_roundtrip() -> None:
    assert all(read_index(index_frame(i)) == i for i in range(256))


@pytest.mark.parametrize("video", ["long_gop", "short_gop"])
@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_random_access_is_frame_accurate(index_videos, backend: str, video: str) -> None:
    reader = open_video(index_videos[video], backend=backend)
    assert reader.num_frames == 70
    assert reader.fps == pytest.approx(25.0)
    got = reader.get_frames(ORDER)
    assert got.shape == (len(ORDER), 96, 128, 3) and got.dtype == np.uint8
    assert [read_index(f) for f in got] == ORDER
    sequential = open_video(index_videos[video], backend=backend).get_frames(range(70))
    assert [read_index(f) for f in sequential] == list(range(70))
    np.testing.assert_array_equal(got, sequential[ORDER])  # bit-exact with the sequential decode


def test_frame_folder(index_videos) -> None:
    reader = open_video(index_videos["frames"])  # auto -> frames for a directory
    assert reader.num_frames == 70
    assert [read_index(f) for f in reader.get_frames(ORDER)] == ORDER


@pytest.mark.parametrize("backend", [*FILE_BACKENDS, "frames"])
def test_resize_on_decode(index_videos, backend: str) -> None:
    path = index_videos["frames" if backend == "frames" else "short_gop"]
    reader = open_video(path, backend=backend, size=48)
    got = reader.get_frames(ORDER)
    assert got.shape == (len(ORDER), 48, 64, 3)
    assert [read_index(f) for f in got] == ORDER
    assert open_video(path, backend=backend, size=(40, 50)).get_frames([3]).shape == (1, 40, 50, 3)


def test_backends_agree(index_videos) -> None:
    frames = {b: open_video(index_videos["long_gop"], backend=b).get_frames(range(70)) for b in FILE_BACKENDS}
    first = frames[FILE_BACKENDS[0]].astype(np.int16)
    for other in FILE_BACKENDS[1:]:
        assert np.abs(first - frames[other]).mean() < 1.0


@pytest.mark.shared
@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_real_clip_frame_accurate(backend: str) -> None:
    clip = shared_clip()
    sequential = open_video(clip, backend=backend).get_frames(range(250))
    order = [200, 3, 249, 120, 121, 0, 64]
    np.testing.assert_array_equal(open_video(clip, backend=backend).get_frames(order), sequential[order])


def test_auto_choice(index_videos) -> None:
    assert resolve_backend(index_videos["frames"]) == "frames"
    assert resolve_backend(index_videos["long_gop"]) in FILE_BACKENDS
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend(index_videos["long_gop"], "ffmpeg")


@pytest.mark.parametrize("backend", [*FILE_BACKENDS])
def test_bad_files_name_the_file(tmp_path, backend: str) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    for path in (empty, text, tmp_path / "missing.mp4"):
        with pytest.raises(VideoReadError, match=path.name):
            open_video(path, backend=backend)


def test_out_of_range_index(index_videos) -> None:
    with pytest.raises(VideoReadError, match="out of range"):
        open_video(index_videos["short_gop"]).get_frames([70])


def test_output_size() -> None:
    assert output_size(720, 1280, 256) == (256, 455)
    assert output_size(1280, 720, 256) == (455, 256)
    assert output_size(720, 1280, None) == (720, 1280)
    assert output_size(720, 1280, (10, 20)) == (10, 20)
    assert set(BACKENDS) == {"decord", "pyav", "torchcodec", "opencv", "frames", "image"}


def test_rotation_metadata_is_applied(tmp_path, cache_dir) -> None:
    """Issue 13: a phone video's display matrix was ignored, so masks drawn on the displayed frame did
    not line up. Frames come out as shown; decord, which cannot rotate, refuses the file clearly."""

    from vidssl.data.index import scan

    path = phone_video(tmp_path / "phone.mp4")  # stored 128x96, shown 96 wide and 128 tall
    shown = [np.rot90(index_frame(i)) for i in range(6)]
    for backend in [b for b in ("pyav", "opencv") if b in available_backends()]:
        reader = open_video(path, backend=backend)
        assert (reader.height, reader.width) == (128, 96), backend
        frames = reader.get_frames([4, 1])
        assert frames.shape == (2, 128, 96, 3), backend
        assert np.abs(frames[0].astype(int) - shown[4]).mean() < 8, backend
        small = open_video(path, backend=backend, size=48)
        assert small.get_frames([0]).shape == (1, 64, 48, 3) and (small.height, small.width) == (64, 48), backend
    if "decord" in available_backends():
        with pytest.raises(VideoReadError, match="rotates it by 90 degrees.*backend=pyav"):
            open_video(path, backend="decord")
    info = scan(tmp_path, progress=False).videos[0]
    assert (info.height, info.width) == (128, 96)


_NPY_HEADER_LOCK = threading.Lock()


class NpyVideo(Backend):
    """A format only this backend reads: a .npy file of uint8 (T, H, W, 3) frames at 10 fps,
    memory-mapped (never read whole). It declares everything; the default probe opens it and
    decodes frame 0."""

    module = "numpy"
    extensions = (".npy",)
    priority = 5

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1) -> None:
        self.path = Path(path)
        try:
            # np.load parses the .npy header with ast.literal_eval, and CPython 3.11's AST
            # constructor keeps one recursion counter for all threads: the index probes files on
            # several threads, and CI once failed with "SystemError: AST constructor recursion
            # depth mismatch" (cf. python/cpython#106905). Parse one header at a time.
            with _NPY_HEADER_LOCK:
                self._frames = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise VideoReadError(self.path, f"not a .npy video ({err})") from err
        if self._frames.dtype != np.uint8 or self._frames.ndim != 4 or self._frames.shape[3] != 3:
            raise VideoReadError(self.path, f"not uint8 (T, H, W, 3) frames: {self._frames.dtype} {self._frames.shape}")
        self.num_frames, self.fps = len(self._frames), 10.0
        self.height, self.width = output_size(*self._frames.shape[1:3], size)

    def get_frames(self, indices) -> np.ndarray:
        wanted = check_indices(self.path, indices, self.num_frames)
        frames = torch.from_numpy(np.stack([self._frames[i] for i in wanted])).permute(0, 3, 1, 2)
        if tuple(frames.shape[2:]) != (self.height, self.width):
            frames = torch.nn.functional.interpolate(frames, size=(self.height, self.width), mode="nearest-exact")
        return frames.permute(0, 2, 3, 1).numpy()


@pytest.fixture()
def npy_backend(monkeypatch: pytest.MonkeyPatch) -> type[Backend]:
    monkeypatch.setitem(BACKENDS, "npy", NpyVideo)  # the one line a new backend adds; nothing else is touched
    return NpyVideo


def test_a_backend_is_one_class_and_one_line(npy_backend, tmp_path, cache_dir) -> None:
    """Issue 24: a file only a new decoder reads was left out of the index (found by suffix and
    probed with PyAV). Now the class declares its files, probe and place in auto, and the index,
    auto, the help, the loader and training all take it from the registry."""
    from vidssl.data.index import scan
    from vidssl.data.pipeline import build_loader
    from vidssl.data.samplers import PairSampler
    from vidssl.data.spec import DataSpec
    from vidssl.distributed import DistInfo

    root = tmp_path / "videos"
    root.mkdir()
    for name, length in (("a", 12), ("b", 20)):
        np.save(root / f"{name}.npy", np.stack([index_frame(i) for i in range(length)]))
    (root / "broken.npy").write_bytes(b"not an array")
    index = scan(root, progress=False)
    got = [(Path(v.path).name, v.num_frames, v.fps, v.height, v.width, v.is_frames) for v in index.videos]
    assert got == [("a.npy", 12, 10.0, 96, 128, False), ("b.npy", 20, 10.0, 96, 128, False)]
    assert [(Path(p).name, why.startswith("not a .npy video")) for p, why in index.unreadable] == [("broken.npy", True)]

    assert resolve_backend(root / "a.npy") == "npy" and "npy" in available_backends()
    assert "| npy" in backend_choices() and "npy" in backend_help()
    reader = open_video(root / "b.npy")
    assert [read_index(f) for f in reader.get_frames([19, 3, 3, 0, 11])] == [19, 3, 3, 0, 11]
    assert open_video(root / "b.npy", size=48).get_frames([5]).shape == (1, 48, 64, 3)

    data = build_loader(data=root, spec=DataSpec(PairSampler(min_gap=1, max_gap=4)), device=torch.device("cpu"),
                        dist=DistInfo(), image_size=32, batch_size=2, steps=2, seed=0)
    batches = list(data.loader)
    assert len(batches) == 2 and batches[0]["frames"].shape == (2, 2, 3, 32, 32)
    out = train(*run_config(data=str(root), out=str(tmp_path / "run"), method="simclr", encoder="resnet18", steps=1,
                            batch_size=2, image_size=32, decode_size=48, workers=0, export=False))
    assert (out / "checkpoints" / "last.pt").exists()


def test_the_index_probes_with_the_backend_that_reads(index_videos, tmp_path, cache_dir, monkeypatch) -> None:
    """A scan for backend=X lists the files X reads and asks X's probe; the manifest remembers which
    backend probed an entry, so asking for another one probes again."""
    from vidssl.data import index as index_module
    from vidssl.data.index import scan

    root = tmp_path / "videos"
    root.mkdir()
    (root / "clip.mp4").write_bytes(index_videos["long_gop"].read_bytes())
    (root / "seq").mkdir()
    for frame in sorted(index_videos["frames"].iterdir())[:5]:
        (root / "seq" / frame.name).write_bytes(frame.read_bytes())
    asked: list[str] = []
    for name in ("pyav", "frames"):
        real = BACKENDS[name].probe
        monkeypatch.setattr(BACKENDS[name], "probe", classmethod(lambda cls, p, real=real: asked.append(cls.__name__)
                                                                  or real(p)))
    assert sorted(Path(v.path).name for v in scan(root, progress=False).videos) == ["clip.mp4", "seq"]
    assert sorted(asked) == ["FrameFolderReader", "PyAVReader"]
    asked.clear()
    assert [Path(v.path).name for v in scan(root, backend="frames", progress=False).videos] == ["seq"]
    assert asked == []  # probed by the same backend before: from the manifest
    assert [Path(v.path).name for v in scan(root, backend="pyav", progress=False).videos] == ["clip.mp4"]
    assert asked == []
    with pytest.raises(ValueError, match="unknown backend 'ffmpeg'; choose from auto | pyav"):
        scan(root, backend="ffmpeg", progress=False)
    if "opencv" in available_backends():
        real_probe = index_module.probe
        probed: list[str] = []
        monkeypatch.setattr(index_module, "probe", lambda p, *, backend: probed.append(backend) or real_probe(
            p, backend=backend))
        assert scan(root, backend="opencv", progress=False).videos[0].num_frames == 70
        assert probed == ["opencv"]  # cached by pyav: probed again by the backend that will read it


def test_help_lists_every_backend_from_the_registry() -> None:
    help_text = TrainConfig.__dataclass_fields__["backend"].metadata["help"]
    assert help_text == backend_help()
    assert backend_choices().split(" | ") == ["auto", "pyav", "torchcodec", "decord", "opencv", "frames", "image"]


def test_auto_takes_the_next_installed_and_names_what_to_install(index_videos, tmp_path, cache_dir,
                                                                 monkeypatch) -> None:
    from vidssl.data import backends
    from vidssl.data.index import scan

    missing = {"av", "torchcodec"}  # torchcodec's own absence is tested in test_torchcodec.py
    monkeypatch.setattr(backends, "_installed", lambda module: module not in missing)
    assert resolve_backend(index_videos["long_gop"]) == "decord"
    missing |= {"decord", "cv2"}
    with pytest.raises(ValueError, match="no backend for .mp4 files is installed: install av or torchcodec or decord "
                                         "or opencv"):
        resolve_backend(index_videos["long_gop"])
    with pytest.raises(ValueError, match="backend 'pyav' needs the 'av' package, which is not installed"):
        scan(index_videos["long_gop"], backend="pyav", progress=False)
    index = scan(index_videos["long_gop"], progress=False)  # reported in the summary, not dropped unseen
    assert not index.videos and "install av or torchcodec or decord" in index.unreadable[0][1]
