"""backend=torchcodec (issue 28): frame-accurate on the self-numbering videos like the other backends,
close to PyAV's frames, and an optional extra: without torchcodec, or with torchcodec but without
the FFmpeg libraries it loads, its tests skip with the reason and ``auto`` never picks it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from testdata import index_frame, phone_video, read_index, shared_clip

from vidssl.data import backends
from vidssl.data.backends import (
    BACKENDS,
    VideoReadError,
    available_backends,
    open_video,
    resolve_backend,
)

PROBLEM = BACKENDS["torchcodec"].missing()  # None where torchcodec and FFmpeg both load
needs_torchcodec = pytest.mark.skipif(PROBLEM is not None, reason=f"backend 'torchcodec' {PROBLEM}")
ORDER = [5, 69, 0, 33, 34, 34, 12, 68, 1, 40, 8, 7]  # backwards, repeats, across GOPs, both ends


@needs_torchcodec
@pytest.mark.parametrize("video", ["long_gop", "short_gop"])
def test_random_access_is_frame_accurate(index_videos, video: str) -> None:
    reader = open_video(index_videos[video], backend="torchcodec")
    assert (reader.num_frames, reader.height, reader.width) == (70, 96, 128)
    assert reader.fps == pytest.approx(25.0)
    got = reader.get_frames(ORDER)
    assert got.shape == (len(ORDER), 96, 128, 3) and got.dtype == np.uint8
    assert [read_index(f) for f in got] == ORDER
    sequential = open_video(index_videos[video], backend="torchcodec").get_frames(range(70))
    assert [read_index(f) for f in sequential] == list(range(70))
    np.testing.assert_array_equal(got, sequential[ORDER])  # bit-exact with the sequential decode
    # The same frames as PyAV (the same FFmpeg decode; colour conversion may round differently).
    pyav = open_video(index_videos[video], backend="pyav").get_frames(ORDER)
    assert np.abs(got.astype(np.int16) - pyav).mean() < 1.0


@needs_torchcodec
def test_resize_on_decode_matches_pyav(index_videos) -> None:
    path = index_videos["short_gop"]
    reader = open_video(path, backend="torchcodec", size=48)
    assert (reader.height, reader.width) == (48, 64)
    got = reader.get_frames(ORDER)
    assert got.shape == (len(ORDER), 48, 64, 3)
    assert [read_index(f) for f in got] == ORDER
    pyav = open_video(path, backend="pyav", size=48).get_frames(ORDER)  # area vs antialiased bilinear
    assert np.abs(got.astype(np.int16) - pyav).mean() < 4.0
    assert open_video(path, backend="torchcodec", size=(40, 50)).get_frames([3]).shape == (1, 40, 50, 3)
    assert open_video(path, backend="torchcodec", size=96).get_frames([3]).shape == (1, 96, 128, 3)  # no-op


@needs_torchcodec
def test_resize_after_decoding_matches_the_decoder_resize(index_videos) -> None:
    """On CUDA the resize runs on the decoded frames (TorchCodec's decoder transforms are CPU-only):
    the same antialiased bilinear resize as the CPU path's, checked here on the CPU."""
    from vidssl.data.backends import resize_frames

    path = index_videos["long_gop"]
    full = open_video(path, backend="torchcodec").get_tensor(ORDER)
    after = resize_frames(full, (48, 64)).numpy()
    native = open_video(path, backend="torchcodec", size=48).get_frames(ORDER)
    assert after.shape == native.shape == (len(ORDER), 48, 64, 3)
    assert [read_index(f) for f in after] == ORDER
    assert np.abs(after.astype(np.int16) - native).mean() < 1.0  # 0.2 here; nearest-neighbour: 2.7


@needs_torchcodec
def test_rotation_metadata_is_applied(tmp_path) -> None:
    """A phone video comes out as shown (TorchCodec applies the display matrix), resized to the
    shown size."""

    path = phone_video(tmp_path / "phone.mp4")  # stored 128x96, shown 96 wide and 128 tall
    reader = open_video(path, backend="torchcodec")
    assert (reader.height, reader.width) == (128, 96)
    frames = reader.get_frames([4, 1])
    np.testing.assert_array_less(np.abs(frames.astype(np.int16) - open_video(path, backend="pyav").get_frames([4, 1]))
                                 .mean(), 1.0)
    assert np.abs(frames[0].astype(int) - np.rot90(index_frame(4))).mean() < 8
    small = open_video(path, backend="torchcodec", size=48)
    assert (small.height, small.width) == (64, 48) and small.get_frames([0]).shape == (1, 64, 48, 3)


@needs_torchcodec
def test_bad_files_name_the_file(tmp_path, index_videos) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    for path in (empty, text, tmp_path / "missing.mp4"):
        with pytest.raises(VideoReadError, match=path.name) as err:
            open_video(path, backend="torchcodec")
        assert ".cpp" not in str(err.value) and "\n" not in str(err.value)  # one line, no C++ source location
    with pytest.raises(VideoReadError, match="out of range"):
        open_video(index_videos["short_gop"], backend="torchcodec").get_frames([70])


@needs_torchcodec
def test_tensor_on_the_decoding_device_and_threads(index_videos) -> None:
    reader = open_video(index_videos["long_gop"], backend="torchcodec", threads=2, device="cpu")
    tensor = reader.get_tensor([9, 2])
    assert tensor.shape == (2, 96, 128, 3) and tensor.dtype == torch.uint8 and tensor.device.type == "cpu"
    assert [read_index(f) for f in tensor.numpy()] == [9, 2]


@needs_torchcodec
@pytest.mark.shared
def test_real_clip_frame_accurate() -> None:
    clip = shared_clip()
    sequential = open_video(clip, backend="torchcodec").get_frames(range(250))
    order = [200, 3, 249, 120, 121, 0, 64]
    np.testing.assert_array_equal(open_video(clip, backend="torchcodec").get_frames(order), sequential[order])
    pyav = open_video(clip, backend="pyav").get_frames(order)
    assert np.abs(sequential[order].astype(np.int16) - pyav).mean() < 1.0


@needs_torchcodec
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_decoding_matches_cpu(index_videos) -> None:
    """NVDEC decodes the same frames; its colour conversion may round differently from FFmpeg's."""
    cuda = open_video(index_videos["long_gop"], backend="torchcodec", device="cuda")
    tensor = cuda.get_tensor(ORDER)
    assert tensor.device.type == "cuda"
    assert [read_index(f) for f in tensor.cpu().numpy()] == ORDER
    cpu = open_video(index_videos["long_gop"], backend="torchcodec").get_frames(ORDER)
    assert np.abs(tensor.cpu().numpy().astype(np.int16) - cpu).mean() < 2.0
    small = open_video(index_videos["long_gop"], backend="torchcodec", device="cuda", size=48)
    assert (small.height, small.width) == (48, 64)
    frames = small.get_frames(ORDER)  # resized on the GPU, returned as host arrays
    assert frames.shape == (len(ORDER), 48, 64, 3) and [read_index(f) for f in frames] == ORDER


# What holds on every machine, torchcodec or not.


def test_absent_torchcodec_is_reported_and_never_chosen(index_videos, monkeypatch) -> None:
    """Not installed: asking for it names the package; auto takes the next decoder."""
    real = backends._installed
    monkeypatch.setattr(backends, "_installed", lambda module: module != "torchcodec" and real(module))
    assert "torchcodec" not in available_backends()
    with pytest.raises(ValueError, match="backend 'torchcodec' needs the 'torchcodec' package, which is not installed"):
        open_video(index_videos["long_gop"], backend="torchcodec")
    assert resolve_backend(index_videos["long_gop"]) != "torchcodec"


def test_torchcodec_without_ffmpeg_is_reported_and_never_chosen(index_videos, monkeypatch) -> None:
    """Installed, but FFmpeg's libraries are missing (its wheel carries none): torchcodec imports
    fine and fails on the first video, so availability asks it whether FFmpeg loaded."""
    monkeypatch.setattr(backends, "_installed", lambda module: True)
    monkeypatch.setattr(backends, "_torchcodec_problem", lambda: "needs FFmpeg's shared libraries, which torchcodec "
                                                                 "did not find: install them")
    monkeypatch.setattr(BACKENDS["torchcodec"], "priority", 1)  # even where it would be auto's first
    assert "torchcodec" not in available_backends()
    with pytest.raises(ValueError, match="backend 'torchcodec' needs FFmpeg's shared libraries"):
        resolve_backend(index_videos["long_gop"], "torchcodec")
    assert resolve_backend(index_videos["long_gop"]) == "pyav"
    with pytest.raises(ValueError, match=r"on device=cuda is installed: install torchcodec \(torchcodec needs FFmpeg"):
        resolve_backend(index_videos["long_gop"], device="cuda")  # the only backend that decodes on CUDA


def test_problem_check_reads_torchcodec_ffmpeg_version(monkeypatch) -> None:
    """The check behind the two above, on a stand-in torchcodec module: FFmpeg loaded or not, or
    torchcodec failing to import (a wheel built for another torch)."""
    import sys
    import types

    fake = types.ModuleType("torchcodec")
    monkeypatch.setitem(sys.modules, "torchcodec", fake)
    for version, expected in ((7, None), (None, "needs FFmpeg's shared libraries")):
        fake.ffmpeg_major_version = version
        backends._torchcodec_problem.cache_clear()
        problem = backends._torchcodec_problem()
        assert problem == expected if expected is None else problem.startswith(expected)
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # import raises ImportError
    backends._torchcodec_problem.cache_clear()
    assert backends._torchcodec_problem().startswith("cannot import torchcodec (ModuleNotFoundError: import of")
    backends._torchcodec_problem.cache_clear()


def test_device_is_checked_against_the_backend(index_videos) -> None:
    with pytest.raises(ValueError, match="backend 'pyav' decodes on cpu, not device=cuda"):
        open_video(index_videos["long_gop"], backend="pyav", device="cuda")
    assert open_video(index_videos["long_gop"], backend="pyav", device="cpu").num_frames == 70
    assert BACKENDS["torchcodec"].devices == ("cpu", "cuda")


def test_extra_is_declared() -> None:
    """The optional extra the skip reason names exists, and the test extra does not pull it in."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(r.startswith("torchcodec") for r in extras["torchcodec"])
    assert not any(r.startswith("torchcodec") for r in extras["test"])
