"""Object-track positives: crops of one ground-truth track, as the pair source of any two-view method
(``positives=tracks|both``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidssl.cli import main
from vidssl.data.index import scan
from vidssl.data.track_pairs import TrackPairDataset, crop_box, native_sizes, pick_pair
from vidssl.engine.trainer import run_config, train
from vidssl.tracking import read_manifest, read_tracks

TINY = dict(encoder="resnet18", batch_size=2, image_size=32, decode_size=60, workers=0, proj_hidden=32, proj_dim=16,
            lr=0.01, log_every=1, save_every=2, export=False)


@pytest.fixture(scope="module")
def tracks_dir(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tracks")
    assert main(["tracks", str(synth_dir / "videos"), f"out={out}", "detector=groundtruth", "min_track=4",
                 "min_box=4", f"cache_dir={out / 'cache'}"]) == 0
    return out


def test_crop_box_scales_enlarges_and_clips() -> None:
    frame = torch.arange(3 * 20 * 40, dtype=torch.int32).view(3, 20, 40).to(torch.uint8)
    assert crop_box(frame, (10, 4, 20, 12), scale=(1.0, 1.0), context=1.0).shape == (3, 8, 10)
    # native 80x40 decoded at 40x20: half the pixels; context 2 doubles the sides
    assert crop_box(frame, (20, 8, 40, 24), scale=(0.5, 0.5), context=2.0).shape == (3, 16, 20)
    # a box past the border is clipped but never empty
    assert crop_box(frame, (100, 100, 120, 130), scale=(1.0, 1.0), context=1.0).shape[1:] == (1, 1)


def test_pick_pair_respects_the_gap_and_falls_back() -> None:
    frames = np.array([0, 1, 2, 10, 11, 40])
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        a, b = pick_pair(frames, min_gap=5, max_gap=15, generator=g)
        gap = abs(frames[a] - frames[b])
        assert 5 <= gap <= 15 or not ((np.abs(frames - frames[a]) >= 5) & (np.abs(frames - frames[a]) <= 15)).any()
    assert pick_pair(np.array([7]), min_gap=3, max_gap=9, generator=g) == (0, 0)


def test_crops_are_the_tracked_boxes(tracks_dir, synth_dir, cache_dir) -> None:
    index = scan(synth_dir / "videos", progress=False)
    manifest = read_manifest(tracks_dir)
    tracks = read_tracks(tracks_dir)
    assert sum(map(len, tracks.values())) >= 3
    data = TrackPairDataset(index.videos, tracks=tracks, data_root=synth_dir / "videos",
                            native_sizes=native_sizes(manifest), min_gap=2, max_gap=6, context=1.0,
                            samples_per_epoch=20)
    for i in range(20):
        item = data[i]
        _, track = data.tracks[item["track"]]
        f0, f1 = item["indices"].tolist()
        assert f0 in track.frames and f1 in track.frames and abs(f0 - f1) <= 6
        row = int(np.flatnonzero(track.frames == f0)[0])
        x1, y1, x2, y2 = track.boxes[row]
        crop = item["frames"][0]
        assert abs(crop.shape[2] - (x2 - x1)) <= 2 and abs(crop.shape[1] - (y2 - y1)) <= 2
    # the same sample twice: a function of (seed, epoch, index) only
    assert [torch.equal(data[i]["indices"], data[i]["indices"]) for i in range(5)] == [True] * 5
    assert len({tuple(data[i]["indices"].tolist()) + (data[i]["track"],) for i in range(20)}) > 5  # not constant


def test_track_pairs_and_frame_plus_track_pairs_train(tracks_dir, synth_dir, tmp_path, cache_dir) -> None:
    data = str(synth_dir / "videos")
    run = train(*run_config(method="fti", positives="tracks", data=data, tracks=str(tracks_dir),
                            out=str(tmp_path / "t"), steps=2, queue_size=16, **TINY))
    assert (run / "checkpoints" / "last.pt").exists()
    run = train(*run_config(method="fti", positives="both", data=data, tracks=str(tracks_dir), out=str(tmp_path / "f"),
                            steps=2, loss="moco", queue_size=16, track_weight=0.5, **TINY))
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite([x["frame_loss"], x["track_loss"]]).all() for x in logs)
    assert logs[-1]["loss"] == pytest.approx(logs[-1]["frame_loss"] + 0.5 * logs[-1]["track_loss"], rel=1e-4)


@pytest.mark.parametrize("method", ["byol", "simsiam", "simclr"])
def test_any_two_view_method_takes_track_pairs(method, tracks_dir, synth_dir, tmp_path, cache_dir) -> None:
    """BYOL's asymmetric view recipe sees both crops of a pair (one view each), like two frames."""
    heads = {"byol": dict(proj_hidden=32, proj_dim=16, pred_hidden=32), "simsiam": dict(proj_dim=16, pred_hidden=8),
             "simclr": dict(proj_hidden=32, proj_dim=16)}[method]
    loop = {k: v for k, v in TINY.items() if k not in ("proj_hidden", "proj_dim")}
    run = train(*run_config(method=method, positives="both", data=str(synth_dir / "videos"), tracks=str(tracks_dir),
                            out=str(tmp_path / method), steps=1, **loop, **heads))
    (log,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert np.isfinite([log["frame_loss"], log["track_loss"], log["loss"]]).all()


def test_pair_source_errors_are_clear(tracks_dir, synth_dir, tmp_path, cache_dir, capsys) -> None:
    data = str(synth_dir / "videos")

    def run(**kw):
        return train(*run_config(method="fti", data=data, steps=1, **TINY, **kw))

    with pytest.raises(ValueError, match="positives=tracks needs tracks=DIR"):
        run(positives="tracks", out=str(tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        run(positives="tracks", tracks=str(tmp_path / "nope"), out=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="positives=frames"):
        run(tracks=str(tracks_dir), out=str(tmp_path / "d"))
    other = tmp_path / "other"
    other.mkdir()
    first = sorted(p.name for p in (synth_dir / "videos").iterdir())[0]
    (other / "a.mp4").write_bytes((synth_dir / "videos" / first).read_bytes())
    with pytest.raises(ValueError, match="no usable tracks"):
        train(*run_config(method="fti", positives="tracks", data=str(other), tracks=str(tracks_dir),
                          out=str(tmp_path / "c"), steps=1, **TINY))
    assert main(["train", "method=track", f"out={tmp_path / 'e'}"]) == 2
    assert "positives=tracks" in capsys.readouterr().err


def test_tracks_of_other_videos_with_the_same_names_are_left_out(tracks_dir, synth_dir, tmp_path, cache_dir,
                                                                 caplog) -> None:
    """Tracks made on other videos with the same file names were used: their boxes cropped frames of
    the wrong video. The frame count and the shape recorded in tracks.json must fit the video."""
    import logging
    import shutil

    from vidssl.data.track_pairs import native_frames
    from vidssl.data.video_writer import write_video

    other = tmp_path / "videos"
    shutil.copytree(synth_dir / "videos", other)
    (other / "synth_000.mp4").unlink()  # another video under the same name: fewer frames
    write_video(other / "synth_000.mp4", (np.zeros((120, 160, 3), np.uint8) for _ in range(10)), 24.0)
    manifest = read_manifest(tracks_dir)
    index = scan(other, progress=False)
    caplog.set_level(logging.WARNING)
    data = TrackPairDataset(index.videos, tracks=read_tracks(tracks_dir), data_root=other,
                            native_sizes=native_sizes(manifest), native_frames=native_frames(manifest))
    kept = {Path(data.videos[position].path).name for position, _ in data.tracks}
    assert "synth_000.mp4" not in kept and kept  # the others still fit
    assert "made on other videos of the same name" in caplog.text and "24 frames tracked, 10 here" in caplog.text
