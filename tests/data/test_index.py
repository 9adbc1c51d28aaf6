"""Folder index: probing, the manifest cache, and bad files reported in one summary line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from testdata import index_frame

from vidssl.data import index as index_module
from vidssl.data.index import scan
from vidssl.data.video_writer import write_video


@pytest.fixture()
def messy_folder(tmp_path: Path, index_videos) -> Path:
    """Good videos next to a truncated mp4, a zero-byte file, a text file named .mp4, a short video."""
    root = tmp_path / "videos"
    (root / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(index_videos["long_gop"], root / "good.mp4")
    shutil.copy(index_videos["short_gop"], root / "nested" / "deeper" / "good2.mkv.mp4")
    shutil.copytree(index_videos["frames"], root / "nested" / "frames_seq")
    data = index_videos["long_gop"].read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "zero.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("not a video at all\n")
    write_video(root / "short.mp4", [index_frame(i) for i in range(4)], 25.0)
    (root / "Annotations" / "seq").mkdir(parents=True)  # DAVIS masks: not a video
    shutil.copy(root / "nested" / "frames_seq" / "00000.jpg", root / "Annotations" / "seq" / "00000.jpg")
    (root / "readme.txt").write_text("ignored\n")
    return root


def test_scan_reports_bad_files_in_one_line(messy_folder: Path, cache_dir: Path) -> None:
    index = scan(messy_folder, min_frames=10, progress=False)
    names = sorted(Path(v.path).name for v in index.videos)
    assert names == ["frames_seq", "good.mp4", "good2.mkv.mp4"]
    frames = {Path(v.path).name: v for v in index.videos}
    assert frames["good.mp4"].num_frames == 70 and frames["good.mp4"].fps == pytest.approx(25.0)
    assert (frames["good.mp4"].height, frames["good.mp4"].width) == (96, 128)
    assert frames["frames_seq"].is_frames and frames["frames_seq"].num_frames == 70
    assert sorted(Path(p).name for p, _ in index.unreadable) == ["notes.mp4", "truncated.mp4", "zero.mp4"]
    assert [Path(p).name for p in index.too_short] == ["short.mp4"]
    summary = index.summary()
    assert "\n" not in summary
    assert "3 videos" in summary and "3 unreadable" in summary and "1 shorter than 10 frames" in summary
    assert "notes.mp4" in summary and "short.mp4" in summary


def test_manifest_makes_second_scan_probe_nothing(messy_folder: Path, cache_dir: Path, monkeypatch) -> None:
    first = scan(messy_folder, progress=False)
    calls: list[Path] = []
    real_probe = index_module.probe
    monkeypatch.setattr(index_module, "probe", lambda p, **kw: calls.append(p) or real_probe(p, **kw))
    second = scan(messy_folder, progress=False)
    assert calls == []  # everything came from the manifest, bad files included
    assert second.videos == first.videos and second.unreadable == first.unreadable

    write_video(messy_folder / "new.mp4", [index_frame(i) for i in range(12)], 25.0)  # only new files are probed
    (messy_folder / "zero.mp4").write_bytes(b"x" * 10)  # and changed ones
    third = scan(messy_folder, progress=False)
    assert sorted(p.name for p in calls) == ["new.mp4", "zero.mp4"]
    assert "new.mp4" in {Path(v.path).name for v in third.videos}


def test_damaged_manifest_is_rebuilt(messy_folder: Path, cache_dir: Path) -> None:
    scan(messy_folder, progress=False)
    (manifest,) = cache_dir.glob("index-*.json")
    manifest.write_text("{ not json")
    assert len(scan(messy_folder, progress=False).videos) == 4
    assert json.loads(manifest.read_text())["version"] == index_module.MANIFEST_VERSION


def test_scan_missing_folder(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        scan(tmp_path / "nope", progress=False)


def test_scan_synthetic(synth_dir: Path, cache_dir: Path) -> None:
    index = scan(synth_dir / "videos", progress=False)
    assert len(index) == 3 and all(v.num_frames == 24 for v in index.videos)
    davis = scan(synth_dir / "davis", progress=False)  # frame folders; Annotations are skipped
    assert len(davis) == 3 and all(v.is_frames for v in davis.videos)


def test_links_loops_and_damaged_files_are_reported_under_their_own_names(tmp_path: Path, index_videos,
                                                                          cache_dir) -> None:
    """Issue 13: a symlink loop aborted the scan with a traceback, a dangling link was reported
    under its target's name with the wrong reason, a directory loop was walked 41 levels deep, and
    a truncated mp4 with its index at the front counted the frames its header promised."""
    import av

    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    shutil.copy(index_videos["short_gop"], root / "good.mp4")
    (root / "loop_a.mp4").symlink_to(root / "loop_b.mp4")
    (root / "loop_b.mp4").symlink_to(root / "loop_a.mp4")
    (root / "dangling.mp4").symlink_to(tmp_path / "elsewhere" / "gone.mp4")
    (root / "sub" / "up").symlink_to("..")  # a directory loop
    (root / "sub" / "again").symlink_to(root)
    (root / "twin.mp4").symlink_to(root / "good.mp4")  # a second name for one video: one entry
    # An mp4 with its index (moov) at the front, cut in half: the header promises 48 frames.
    with av.open(str(tmp_path / "faststart.mp4"), "w", format="mp4", options={"movflags": "faststart"}) as c:
        stream = c.add_stream("libx264", rate=24, options={"x264-params": "keyint=8:min-keyint=8:scenecut=0"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(48):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = i
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    data = (tmp_path / "faststart.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])

    index = scan(root, progress=False)  # no traceback
    reasons = {Path(p).name: why for p, why in index.unreadable}
    assert reasons["loop_a.mp4"] == reasons["loop_b.mp4"] == "symbolic link loop"
    assert reasons["dangling.mp4"] == f"broken symbolic link (to {tmp_path / 'elsewhere' / 'gone.mp4'})"
    assert "gone.mp4" not in reasons
    assert "dangling.mp4 (broken symbolic link" in index.summary()
    cut = next(v for v in index.videos if v.name == "cut.mp4")
    from vidssl.data.backends import open_video

    reader = open_video(cut.path, backend="pyav")
    assert 0 < cut.num_frames < 48
    reader.get_frames([cut.num_frames - 1])  # the last frame counted decodes
    assert sorted(v.name for v in index.videos) == ["cut.mp4", "good.mp4"]
    walked = index_module.find_videos(root)
    assert max(len(p.relative_to(root).parts) for p in walked) <= 2  # the loop was not followed
