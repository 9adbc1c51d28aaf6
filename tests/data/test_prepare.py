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
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".vidssl-prepare.jsonl", ".vidssl-prepare.lock", "cam/day1/clip.mp4"]
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
    kept = (prepare_module.RECORD, prepare_module.LOCK)
    assert sorted(p.name for p in out.rglob("*") if p.is_file() and p.name not in kept) == ["clip.mp4"]


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


def test_prepare_records_sources_and_settings(source: Path, tmp_path: Path, cache_dir: Path, caplog) -> None:
    """Any existing output counted as done: a rerun with another size= kept the old files, a changed
    source was not redone, and a file vidssl never wrote was taken as a finished output."""
    import logging
    import os

    out = tmp_path / "prepared"
    dst = out / "cam" / "day1" / "clip.mp4"
    assert prepare(PrepareConfig(data=str(source), out=str(out), size=48, keyint=4), progress=False).written == [dst]
    assert prepare(PrepareConfig(data=str(source), out=str(out), size=48, keyint=4), progress=False).skipped == 1
    caplog.set_level(logging.INFO)
    again = prepare(PrepareConfig(data=str(source), out=str(out), size=32, keyint=4), progress=False)
    assert again.written == [dst] and "size=48 -> 32; redoing it" in caplog.text
    with av.open(str(dst)) as container:
        assert container.streams.video[0].height == 32
    clip = source / "cam" / "day1" / "clip.mov"
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))  # the source changed
    assert prepare(PrepareConfig(data=str(source), out=str(out), size=32, keyint=4), progress=False).written == [dst]
    foreign = tmp_path / "foreign"
    (foreign / "cam" / "day1").mkdir(parents=True)
    (foreign / "cam" / "day1" / "clip.mp4").write_bytes(b"the user's own file")
    result = prepare(PrepareConfig(data=str(source), out=str(foreign), size=32), progress=False)
    assert result.written == [] and "was not written by vidssl prepare" in dict(result.failed)[str(clip)]
    assert (foreign / "cam" / "day1" / "clip.mp4").read_bytes() == b"the user's own file"


def test_a_second_prepare_on_one_folder_waits_and_encodes_nothing_twice(source: Path, tmp_path: Path,
                                                                       cache_dir: Path, caplog) -> None:
    """Two benchmarks started together both ran prepare on one data folder and both encoded every
    video; the second now waits for the first and finds its outputs recorded."""
    import fcntl
    import logging
    import threading
    import time

    out = tmp_path / "prepared"
    out.mkdir()
    cfg = PrepareConfig(data=str(source), out=str(out), size=48, keyint=4)
    results = []
    caplog.set_level(logging.WARNING)
    with open(out / prepare_module.LOCK, "a+b") as held:  # another process's prepare, mid-run
        fcntl.flock(held, fcntl.LOCK_EX)
        second = threading.Thread(target=lambda: results.append(prepare(cfg, progress=False)), daemon=True)
        second.start()
        limit = time.monotonic() + 60
        while "being prepared by another process" not in caplog.text:
            assert second.is_alive() and time.monotonic() < limit  # it may not finish while the lock is held
            second.join(0.05)
        assert not (out / "cam").exists()  # it waited before encoding anything
        root = source.resolve()
        first = prepare_module._prepare(cfg, prepare_module.scan(root), root, out, progress=False)  # the holder's run
        assert len(first.written) == 1
        fcntl.flock(held, fcntl.LOCK_UN)
        second.join(60)
    assert not second.is_alive() and results[0].written == [] and results[0].skipped == 1
    assert len((out / prepare_module.RECORD).read_text().splitlines()) == 1  # one encode, one record line


def test_outputs_of_different_sources_never_share_a_name(tmp_path: Path, index_videos: dict[str, Path],
                                                         cache_dir: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    for suffix in (".mp4", ".mkv", ".webm"):
        shutil.copy(index_videos["short_gop"], root / f"clip{suffix}")
    out = tmp_path / "prepared"
    result = prepare(PrepareConfig(data=str(root), out=str(out), size=32), progress=False)
    assert sorted(p.name for p in result.written) == ["clip.mkv.mp4", "clip.mp4", "clip.webm.mp4"]
    frames = prepare(PrepareConfig(data=str(root), out=str(tmp_path / "f"), size=32, format="frames"), progress=False)
    assert sorted(p.name for p in frames.written) == ["clip_mkv", "clip_mp4", "clip_webm"]


def test_a_partial_left_by_a_killed_prepare_is_never_indexed(source: Path, tmp_path: Path, cache_dir: Path) -> None:
    """``kill -9`` mid-write leaves ``.clip.mp4.1a2b3c4d.partial.mp4``: it was indexed as one more video."""
    from vidssl.data.index import find_videos

    out = tmp_path / "prepared"
    prepare(PrepareConfig(data=str(source), out=str(out), size=48), progress=False)
    left = out / "cam" / "day1" / ".clip2.mp4.1a2b3c4d.partial.mp4"
    shutil.copy(out / "cam" / "day1" / "clip.mp4", left)
    assert find_videos(out) == [out / "cam" / "day1" / "clip.mp4"]
