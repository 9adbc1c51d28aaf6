"""``vidssl tracks`` with the ground-truth detector: output contract, identities, resume, filters."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from track_identity import identity_scores

from vidssl.cli import main
from vidssl.data.tracks import COLUMNS, write_tracks_csv
from vidssl.tracking import Track, read_manifest, read_tracks, read_tracks_csv
from vidssl.tracking.detectors import Detections, filter_detections
from vidssl.tracking.run import resolve_classes

GT = ["detector=groundtruth", "min_box=0", "min_track=2"]


def run(data: Path, out: Path, *args: str) -> int:
    return main(["tracks", str(data), f"out={out}", *args])


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.csv")}


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort"])
def test_groundtruth_tracks_follow_identities(synth_dir: Path, tmp_path: Path, cache_dir: Path, tracker: str) -> None:
    out = tmp_path / "tracks"
    assert run(synth_dir / "videos", out, *GT, f"tracker={tracker}") == 0

    names = sorted(p.name for p in (synth_dir / "videos").glob("*.mp4"))
    assert sorted(p.name for p in out.glob("*.csv")) == [f"{n}.csv" for n in names]
    with (out / f"{names[0]}.csv").open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) > 1
    assert {r[0] for r in rows[1:]} == {names[0]}

    manifest = read_manifest(out)
    assert manifest["tracker"]["name"] == tracker
    assert manifest["detector"]["type"] == "groundtruth"
    assert manifest["settings"]["min_track"] == 2 and manifest["data"] == str((synth_dir / "videos").resolve())
    video = manifest["videos"][names[0]]
    assert (video["num_frames"], video["width"], video["height"], video["fps"]) == (24, 160, 120, 24.0)
    assert video["rows"] == len(rows) - 1

    tracks = read_tracks(out)
    assert sorted(tracks) == names
    track = tracks[names[0]][0]
    assert isinstance(track, Track) and track.boxes.shape == (len(track), 4) and track.frames.dtype == np.int64
    assert np.all(np.diff(track.frames) > 0)
    assert video["tracks"] == len(tracks[names[0]])

    # Exact boxes from the annotation: every row is a ground-truth box, and identities hold.
    scores = identity_scores(tracks, synth_dir / "annotations")
    assert scores.rows == sum(len(t) for ts in tracks.values() for t in ts)
    assert scores.purity >= 0.95, scores
    assert scores.coverage >= 0.85, scores
    assert scores.single_track_objects >= scores.objects - 1, scores


def test_subfolders_mirrored_and_explicit_annotations(synth_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    shutil.copy(synth_dir / "videos" / "synth_000.mp4", data / "synth_000.mp4")
    shutil.copy(synth_dir / "videos" / "synth_001.mp4", data / "sub" / "synth_001.mp4")
    out = tmp_path / "tracks"
    assert run(data, out, *GT) == 1  # no annotations/ folder above data/
    shutil.rmtree(out)
    assert run(data, out, *GT, f"annotations={synth_dir / 'annotations'}") == 0
    assert (out / "sub" / "synth_001.mp4.csv").is_file() and (out / "synth_000.mp4.csv").is_file()
    tracks = read_tracks(out)
    assert sorted(tracks) == ["sub/synth_001.mp4", "synth_000.mp4"]
    assert all(t.video == "sub/synth_001.mp4" for t in tracks["sub/synth_001.mp4"])


def test_resume_skips_finished_videos(synth_copy: Path, tmp_path: Path, cache_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tracks"
    assert run(synth_copy, out, *GT) == 0
    first = mtimes(out)
    assert len(first) == 3

    assert run(synth_copy, out, *GT) == 0
    assert "tracked 0 videos" in capsys.readouterr().out
    assert mtimes(out) == first

    (out / "synth_001.mp4.csv").unlink()
    assert run(synth_copy, out, *GT) == 0
    assert "tracked 1 videos" in capsys.readouterr().out
    again = mtimes(out)
    assert again["synth_000.mp4.csv"] == first["synth_000.mp4.csv"]
    assert again["synth_002.mp4.csv"] == first["synth_002.mp4.csv"]
    assert again["synth_001.mp4.csv"] != first["synth_001.mp4.csv"]

    # A run killed between a CSV and tracks.json: the entry is rebuilt from the CSV.
    manifest = json.loads((out / "tracks.json").read_text())
    rows = manifest["videos"].pop("synth_002.mp4")["rows"]
    (out / "tracks.json").write_text(json.dumps(manifest))
    assert run(synth_copy, out, *GT) == 0
    assert read_manifest(out)["videos"]["synth_002.mp4"]["rows"] == rows
    assert not list(out.rglob("*.partial"))

    # Other settings into the same folder would mix two runs.
    assert run(synth_copy, out, "detector=groundtruth", "min_box=0", "min_track=3") == 1
    assert "other settings" in capsys.readouterr().err


def test_bad_videos_are_reported_and_skipped(synth_copy: Path, tmp_path: Path, cache_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (synth_copy / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    good = (synth_copy / "synth_002.mp4").read_bytes()
    (synth_copy / "synth_002.mp4").write_bytes(good[: len(good) // 2])  # truncated
    shutil.copy(synth_copy / "synth_000.mp4", synth_copy / "unlabelled.mp4")  # no annotation
    out = tmp_path / "tracks"
    assert run(synth_copy, out, *GT) == 0
    failed = read_manifest(out)["failed"]
    assert {"broken.mp4", "synth_002.mp4", "unlabelled.mp4"} <= set(failed), failed
    assert "no annotations/unlabelled.json" in failed["unlabelled.mp4"]
    assert sorted(read_tracks(out)) == ["synth_000.mp4", "synth_001.mp4"]
    assert "3 failed" in capsys.readouterr().out


def test_filters(synth_copy: Path, tmp_path: Path, cache_dir: Path) -> None:
    base = read_tracks(tmp_path / "all") if run(synth_copy, tmp_path / "all", *GT) == 0 else {}
    present = {t.class_name for ts in base.values() for t in ts}
    name = sorted(present)[0]

    assert run(synth_copy, tmp_path / "cls", *GT, f"classes={name}") == 0
    kept = [t for ts in read_tracks(tmp_path / "cls").values() for t in ts]
    assert kept and {t.class_name for t in kept} == {name}
    assert read_manifest(tmp_path / "cls")["settings"]["class_ids"] == [kept[0].class_id]

    assert run(synth_copy, tmp_path / "long", "detector=groundtruth", "min_box=0", "min_track=1000") == 0
    assert all(v["tracks"] == 0 and v["rows"] == 0 for v in read_manifest(tmp_path / "long")["videos"].values())
    assert read_tracks(tmp_path / "long") == {rel: [] for rel in base}

    assert run(synth_copy, tmp_path / "big", "detector=groundtruth", "min_box=1000", "min_track=1") == 0
    assert read_manifest(tmp_path / "big")["videos"]["synth_000.mp4"]["rows"] == 0

    assert run(synth_copy, tmp_path / "stride", *GT, "stride=3", "max_frames=5") == 0
    frames = np.concatenate([t.frames for ts in read_tracks(tmp_path / "stride").values() for t in ts])
    assert set(frames.tolist()) <= {0, 3, 6, 9, 12}
    assert read_manifest(tmp_path / "stride")["videos"]["synth_000.mp4"]["frames_processed"] == 5

    # Jittered boxes still give tracks, and every box stays inside the frame.
    assert run(synth_copy, tmp_path / "jitter", *GT, "jitter=0.05") == 0
    boxes = np.concatenate([t.boxes for ts in read_tracks(tmp_path / "jitter").values() for t in ts])
    assert len(boxes) and boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 160 and boxes[:, [1, 3]].max() <= 120


def test_unknown_class_is_an_error(synth_copy: Path, tmp_path: Path, cache_dir: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run(synth_copy, tmp_path / "x", *GT, "classes=person") == 1
    err = capsys.readouterr().err
    assert "no class 'person'" in err and "0=disc" in err
    assert not (tmp_path / "x").exists()


def test_filter_detections_and_resolve_classes() -> None:
    dets = Detections.from_arrays(
        [[0, 0, 10, 40], [0, 0, 30, 30], [5, 5, 50, 50], [0, 0, 100, 100]], [0.9, 0.05, 0.5, 0.3], [0, 1, 2, 1]
    )
    kept = filter_detections(dets, classes=None, min_score=0.1, min_box=20)
    assert kept.scores.tolist() == pytest.approx([0.5, 0.3])
    kept = filter_detections(dets, classes=frozenset({1}), min_score=0.0, min_box=0)
    assert kept.classes.tolist() == [1, 1]
    names = {0: "person", 1: "bicycle", 2: "car"}
    assert resolve_classes((), names) is None
    assert resolve_classes(("person,car",), names) == {0, 2}
    assert resolve_classes((1, "2"), names) == {1, 2}


def test_csv_round_trip(tmp_path: Path) -> None:
    tracks = [
        Track("a/b.mp4", 7, 2, "car", np.array([3, 4]), np.array([[0, 1, 2, 3], [1.5, 2, 3, 4.25]], np.float32),
              np.array([0.5, 0.75], np.float32)),
        Track("a/b.mp4", 2, 0, "person", np.array([0]), np.array([[10, 20, 30, 40]], np.float32),
              np.array([1.0], np.float32)),
    ]
    assert write_tracks_csv(tmp_path / "t.csv", tracks) == 3
    back = read_tracks_csv(tmp_path / "t.csv")
    assert [t.track_id for t in back] == [2, 7]
    np.testing.assert_allclose(back[1].boxes, tracks[0].boxes)
    np.testing.assert_array_equal(back[1].frames, [3, 4])
    assert back[1].class_name == "car" and len(back[1]) == 2
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="not a tracks CSV"):
        read_tracks_csv(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="tracks.json"):
        read_tracks(tmp_path)


def test_help_lists_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tracks", "--help"]) == 0
    text = capsys.readouterr().out
    for key in ("detector", "tracker", "classes", "min_score", "min_box", "min_track", "imgsz", "stride", "device"):
        assert f"  {key}" in text


def test_odd_names_and_link_loops_are_tracked_or_reported(synth_copy: Path, tmp_path: Path, cache_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A non-UTF-8 file name aborted the whole of ``tracks``, and so did a symlink loop with a
    video's name: each is now tracked (the odd name) or reported and skipped (the loop)."""
    import os

    odd = os.fsdecode(b"caf\xe9.mp4")  # Latin-1 bytes: not UTF-8
    shutil.copy(synth_copy / "synth_000.mp4", synth_copy / odd)
    shutil.copy(synth_copy.parent / "annotations" / "synth_000.json",
                synth_copy.parent / "annotations" / f"{Path(odd).stem}.json")
    (synth_copy / "loop.mp4").symlink_to(synth_copy / "loop.mp4")
    out = tmp_path / "tracks"
    assert run(synth_copy, out, *GT) == 0
    manifest = read_manifest(out)
    assert odd in manifest["videos"] and "loop.mp4" in manifest["failed"]
    assert read_tracks(out)[odd] and (out / f"{odd}.csv").is_file()
    assert run(synth_copy, out, *GT) == 0  # and it resumes over them
    assert "tracked 0 videos" in capsys.readouterr().out
