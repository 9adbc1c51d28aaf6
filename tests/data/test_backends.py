"""Every backend returns frame i of a full sequential decode for index i, in any access order."""

from __future__ import annotations

import numpy as np
import pytest
from testdata import index_frame, read_index, shared_clip

from vidssl.data.backends import BACKENDS, VideoReadError, available_backends, open_video, output_size, resolve_backend

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
    assert set(BACKENDS) == {"decord", "pyav", "opencv", "frames", "image"}


def test_rotation_metadata_is_applied(tmp_path, cache_dir) -> None:
    """Issue 13: a phone video's display matrix was ignored, so masks drawn on the displayed frame did
    not line up. Frames come out as shown; decord, which cannot rotate, refuses the file clearly."""
    import av

    from vidssl.data.index import scan

    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.set_display_rotation(90)  # stored 128x96, shown 96 wide and 128 tall
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
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
