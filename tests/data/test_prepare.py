"""Folder preparation: re-encoded copies keep every frame and its index, with short GOPs."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from testdata import read_index

from vidssl.cli import main
from vidssl.data import prepare as prepare_module
from vidssl.data.backends import VideoReadError, open_video
from vidssl.data.prepare import PrepareConfig, prepare

NUM_FRAMES = 70


@pytest.fixture()
def source(tmp_path: Path, index_videos: dict[str, Path]) -> Path:
    """A long-GOP video with B-frames two folders down (named .mov), next to a broken file."""
    root = tmp_path / "src"
    (root / "cam" / "day1").mkdir(parents=True)
    shutil.copy(index_videos["long_gop"], root / "cam" / "day1" / "clip.mov")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video\n")
    return root


def _keyframes_and_pts(path: Path) -> tuple[list[int], list[int]]:
    """Positions (in decode order) of keyframe packets, and packet timestamps in decode order."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.pts is not None]
    return [i for i, p in enumerate(packets) if p.is_keyframe], [p.pts for p in packets]


def _decoded_indices(path: Path) -> list[int]:
    reader = open_video(path)
    try:
        return [read_index(frame) for frame in reader.get_frames(range(reader.num_frames))]
    finally:
        reader.close()


def test_prepare_mp4(source: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "prepared"
    cfg = PrepareConfig(data=str(source), out=str(out), size=48, keyint=4)
    result = prepare(cfg, progress=False)

    dst = out / "cam" / "day1" / "clip.mp4"
    assert result.written == [dst]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["cam/day1/clip.mp4"]
    assert result.frames == NUM_FRAMES and result.skipped == 0
    assert [Path(p).name for p, _ in result.failed] == ["broken.mp4"]  # reported, and the run went on

    with av.open(str(dst)) as container:
        stream = container.streams.video[0]
        assert (stream.height, stream.width) == (48, 64)
        assert float(stream.average_rate) == pytest.approx(25.0)
    keyframes, pts = _keyframes_and_pts(dst)
    assert len(pts) == NUM_FRAMES
    assert keyframes == list(range(0, NUM_FRAMES, 4))
    assert pts == sorted(pts)  # no B-frames: decode order is presentation order
    assert _decoded_indices(dst) == list(range(NUM_FRAMES))

    again = prepare(cfg, progress=False)
    assert again.written == [] and again.skipped == 1 and again.frames == 0
    assert [Path(p).name for p, _ in again.failed] == ["broken.mp4"]


def test_odd_sizes_are_rounded_to_even_sides(source: Path, tmp_path: Path, cache_dir: Path) -> None:
    """H.264 yuv420p needs even sides: a short side of 45 on a 96x128 video becomes 44x60."""
    result = prepare(PrepareConfig(data=str(source), out=str(tmp_path / "odd"), size=45, keyint=4), progress=False)
    (dst,) = result.written
    reader = open_video(dst)
    assert (reader.num_frames, reader.height, reader.width) == (NUM_FRAMES, 44, 60)
    assert [read_index(f) for f in reader.get_frames([1, 68])] == [1, 68]


def test_prepare_frame_folders(source: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "frames"
    result = prepare(PrepareConfig(data=str(source), out=str(out), size=48, format="frames"), progress=False)
    dst = out / "cam" / "day1" / "clip"
    assert result.written == [dst] and result.frames == NUM_FRAMES
    assert sorted(p.name for p in dst.iterdir()) == [f"{i:05d}.jpg" for i in range(NUM_FRAMES)]
    reader = open_video(dst)
    assert (reader.num_frames, reader.height, reader.width) == (NUM_FRAMES, 48, 64)
    frames = reader.get_frames([0, 33, 69])
    assert [read_index(f) for f in frames] == [0, 33, 69]
    assert prepare(PrepareConfig(data=str(source), out=str(out), size=48, format="frames"), progress=False).skipped == 1


def test_decode_failure_is_reported_and_the_run_goes_on(
    source: Path, tmp_path: Path, cache_dir: Path, index_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that probes fine but fails while re-encoding is listed in ``failed``; no output is left."""
    shutil.copy(index_videos["short_gop"], source / "bad_late.mp4")
    real_open = prepare_module.open_video

    def open_video_failing_late(path, **kwargs):
        reader = real_open(path, **kwargs)
        if Path(path).name == "bad_late.mp4":
            real_get = reader.get_frames

            def get_frames(indices):
                if max(indices) >= 64:
                    raise VideoReadError(path, "decoding failed (simulated)")
                return real_get(indices)

            reader.get_frames = get_frames
        return reader

    monkeypatch.setattr(prepare_module, "open_video", open_video_failing_late)
    out = tmp_path / "prepared"
    result = prepare(PrepareConfig(data=str(source), out=str(out), size=48, chunk=32), progress=False)
    assert [p.name for p in result.written] == ["clip.mp4"]
    assert sorted(Path(p).name for p, _ in result.failed) == ["bad_late.mp4", "broken.mp4"]
    assert "simulated" in dict((Path(p).name, why) for p, why in result.failed)["bad_late.mp4"]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["clip.mp4"]  # no half-written file


def test_prepare_refuses_bad_folders(source: Path, cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="data=DIR and out=DIR"):
        prepare(PrepareConfig(data=str(source)), progress=False)
    with pytest.raises(ValueError, match="must differ"):
        prepare(PrepareConfig(data=str(source), out=str(source)), progress=False)


def test_prepare_through_the_cli(source: Path, tmp_path: Path, cache_dir: Path, capsys) -> None:
    out = tmp_path / "cli_out"
    assert main(["prepare", str(source), f"out={out}", "size=48"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert line.startswith("prepared 1 videos (70 frames) in ")
    assert f"into {out}; 0 already done; 1 failed: " in line and "broken.mp4" in line
    frame = open_video(out / "cam" / "day1" / "clip.mp4").get_frames([5])[0]
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
