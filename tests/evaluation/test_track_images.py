"""``vidssl tracks crops``: an ImageFolder of object crops from hand-made tracks on generated videos:
the class folders, the crops' frames and content, the split by video, small boxes, a corrupt video,
resuming, and the kNN probe on the result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidssl.cli import main
from vidssl.data.tracks import Track, csv_path, write_manifest, write_tracks_csv
from vidssl.evaluation.track_images import cap_picks, spaced, split_videos, thin

FRAMES, HEIGHT, WIDTH = 12, 96, 128
CAT = (10.0, 10.0, 60.0, 60.0)  # a red square
DOG = (70.0, 20.0, 120.0, 80.0)  # a blue box, 50 x 60
GOOD = [f"clip{i}.mp4" for i in range(6)]
BAD = "broken.mp4"


def _track(video: str, track_id: int, name: str, box: tuple[float, ...], frames: range = range(FRAMES)) -> Track:
    return Track(video=video, track_id=track_id, class_id=track_id, class_name=name,
                 frames=np.array(list(frames), np.int64), boxes=np.tile(np.array([box], np.float32), (len(frames), 1)),
                 scores=np.ones(len(frames), np.float32))


@pytest.fixture(scope="module")
def tracks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/``: 6 videos showing a red square (cat) and a blue box (dog) on grey, and a file that is
    no video; ``tracks/``: as 'vidssl tracks' writes them, with a track of tiny boxes (ant) in every
    video and a bird in one video only."""
    from vidssl.data.video_writer import write_video

    root = tmp_path_factory.mktemp("crops")
    data, tracks = root / "data", root / "tracks"
    data.mkdir()
    frame = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    frame[10:60, 10:60] = (230, 20, 20)
    frame[20:80, 70:120] = (20, 20, 230)
    for name in GOOD:
        write_video(data / name, [frame] * FRAMES, 12.0, crf=10)
    (data / BAD).write_bytes(b"not a video at all" * 50)
    videos = {}
    for i, name in enumerate([*GOOD, BAD]):
        found = [_track(name, 1, "cat", CAT), _track(name, 2, "dog", DOG),
                 _track(name, 3, "ant", (5.0, 5.0, 25.0, 25.0))]
        if i == 0:
            found.append(_track(name, 4, "bird", (30.0, 30.0, 90.0, 90.0), range(0, 6)))
        write_tracks_csv(csv_path(tracks, name), found)
        videos[name] = {"num_frames": FRAMES, "width": WIDTH, "height": HEIGHT}
    write_manifest(tracks, {"version": 1, "data": str(data), "detector": {"type": "hand-made"}, "videos": videos})
    return tracks


def _sha1_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())


def test_spaced_picks_evenly_spaced_times() -> None:
    assert spaced(np.arange(12), 3) == [0, 5, 11]  # times 0, 5.5, 11: a tie takes the earlier frame
    assert spaced(np.array([0, 1, 2, 40, 41]), 3) == [0, 2, 4]  # nearest in time, not in rows (20.5 -> 2)
    assert spaced(np.array([4, 9]), 5) == [0, 1]
    split = split_videos(GOOD, 0.34)
    assert split["val"] == sorted(_sha1_order(GOOD)[:2]) and not set(split["val"]) & set(split["train"])
    assert sorted(split["train"] + split["val"]) == sorted(GOOD)
    assert len(split_videos(GOOD, 0.01)["val"]) == 1 and len(split_videos(GOOD, 0.99)["train"]) == 1
    with pytest.raises(ValueError, match="2 videos or more"):
        split_videos(GOOD[:1], 0.5)


def test_too_few_usable_tracks_are_refused_in_one_line_naming_the_folder(tracks_dir: Path, tmp_path: Path,
                                                                         capsys) -> None:
    assert main(["tracks", "crops", str(tracks_dir), f"out={tmp_path / 'crops'}", "min_box=1000"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tracks_dir) in err and "2 videos or more" in err, err
    assert not (tmp_path / "crops").exists()


def test_crops_of_hand_made_tracks(tracks_dir: Path, tmp_path: Path, cache_dir: Path, capsys) -> None:
    out = tmp_path / "crops"
    args = ["tracks", "crops", str(tracks_dir), f"out={out}", "per_track=3", "size=32", "val_fraction=0.34",
            "min_images=3"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    record = json.loads((out / "crops.json").read_text())
    assert record["complete"] and "detector's class" in record["labels"]

    # the split: by the SHA-1 of the file name over the 7 videos with usable boxes; none in both halves
    val = sorted(_sha1_order([*GOOD, BAD])[:2])
    assert val == ["clip2.mp4", "clip3.mp4"] and record["split"]["val"] == val
    assert sorted(record["split"]["train"] + val) == sorted([*GOOD, BAD])
    for split in ("train", "val"):
        videos = {p.name.split("_t")[0] for p in (out / split).rglob("*.jpg")}
        assert videos == {v for v in record["split"][split] if v != BAD}

    # the classes: cat and dog; the ant's boxes are below min_box, the bird (one video, 3 crops) is dropped
    for split in ("train", "val"):
        good = [v for v in record["split"][split] if v != BAD]
        assert sorted(p.name for p in (out / split).iterdir()) == ["cat", "dog"]
        assert record["images"][split] == {"cat": 3 * len(good), "dog": 3 * len(good)}
        for name in ("cat", "dog"):
            files = sorted(p.name for p in (out / split / name).iterdir())
            assert files == sorted(f"{v}_t{1 if name == 'cat' else 2}_f{f:06d}.jpg" for v in good for f in (0, 5, 11))
    assert record["classes"] == {"kept": ["cat", "dog"], "dropped": {"bird": {"train": 3, "val": 0}}}
    assert record["track_counts"]["boxes_too_small"] == 7 * FRAMES
    assert "dropped 1 classes with fewer than 3 crops in train or val (train/val): bird" in printed

    # the corrupt video: reported, named, skipped
    assert list(record["failed"]) == [BAD]
    assert f"1 videos failed: {BAD}" in printed

    # the crops are the boxes: the red square alone, the blue box in a square window around it
    cat = np.asarray(Image.open(next((out / "train" / "cat").iterdir())), np.float32).mean(axis=(0, 1))
    dog = np.asarray(Image.open(next((out / "train" / "dog").iterdir())), np.float32)
    assert cat[0] > 200 and cat[2] < 50 and dog.shape == (32, 32, 3)
    assert dog[:, 8:24].mean(axis=(0, 1))[2] > 200  # its middle is blue

    # a rerun rewrites nothing; other settings in the same folder are refused in one line
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    assert main(args) == 0
    assert "0 videos cropped, 6 already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps
    assert main([*args, "per_track=2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds crops made with other settings (per_track: 3 -> 2)" in err

    # the kNN probe runs on the folder
    assert main(["eval", "knn", str(out), "encoder=random:resnet18", "image_size=32", "workers=0", "ks=(5,)",
                 f"cache_dir={tmp_path / 'features'}", f"out={tmp_path / 'knn'}"]) == 0
    knn = json.loads((tmp_path / "knn" / "results.json").read_text())
    assert knn["num_classes"] == 2 and knn["num_val"] == 12 and knn["top1"] >= 0.9  # red against blue


def test_cap_deals_crops_round_robin_over_videos_then_tracks_then_time() -> None:
    """Video a.mp4 (SHA-1 43a5...) has 3 tracks, b.mp4 (d45b...) one; 4 crops each. The cap deals
    one crop per video in turn (a first), each video's turn to its next track: b's one track gets as
    many crops as a's three together, and a track keeps its crops evenly spread in time."""
    assert thin(4, 2) == [0, 3] and thin(5, 3) == [0, 2, 4] and thin(4, 1) == [1] and thin(3, 5) == [0, 1, 2]
    assert thin(16, 5) == [0, 4, 8, 11, 15] and len(set(thin(9, 8))) == 8
    picks = {("b.mp4", 1): [0, 4, 8, 12], ("a.mp4", 3): [0, 1, 2, 3], ("a.mp4", 1): [0, 1, 2, 3],
             ("a.mp4", 2): [5, 6, 7, 8]}
    video_of = {k: k[0] for k in picks}
    assert cap_picks(picks, video_of, 6) == {("b.mp4", 1): [0, 8, 12], ("a.mp4", 1): [1], ("a.mp4", 2): [6],
                                             ("a.mp4", 3): [1]}
    assert cap_picks(picks, video_of, 5) == {("b.mp4", 1): [0, 12], ("a.mp4", 1): [1], ("a.mp4", 2): [6],
                                             ("a.mp4", 3): [1]}
    assert cap_picks(picks, video_of, 2) == {("b.mp4", 1): [4], ("a.mp4", 1): [1]}
    assert cap_picks(picks, video_of, 1) == {("a.mp4", 1): [1]}
    assert cap_picks(picks, video_of, 0) == picks == cap_picks(picks, video_of, 16)
    shuffled = dict(reversed(list(picks.items())))  # the order the tracks come in changes nothing
    assert cap_picks(shuffled, video_of, 5) == cap_picks(picks, video_of, 5)
    # b's track is short: once it is used up, a's turns go on alone
    short = {("b.mp4", 1): [7], ("a.mp4", 1): [0, 1, 2, 3, 4, 5]}
    assert cap_picks(short, {k: k[0] for k in short}, 4) == {("b.mp4", 1): [7], ("a.mp4", 1): [0, 3, 5]}


def test_max_per_class_caps_each_half_and_is_recorded(tracks_dir: Path, tmp_path: Path, capsys) -> None:
    """max_per_class=4 on 5 train videos (SHA-1 order clip4, clip0, clip1, clip5, broken) and 2 val
    (clip3, clip2) of cat and dog, 3 crops each: train keeps the middle crop of the first 4 videos
    (the broken one gets none, so nothing fails), val both ends of each video's track."""
    out = tmp_path / "capped"
    args = ["tracks", "crops", str(tracks_dir), f"out={out}", "per_track=3", "size=32", "val_fraction=0.34",
            "min_images=3", "max_per_class=4"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    record = json.loads((out / "crops.json").read_text())
    assert record["settings"]["max_per_class"] == 4 and "round-robin" in record["cap"]["rule"]
    assert record["cap"]["before"] == {"train": {"cat": 15, "dog": 15}, "val": {"cat": 6, "dog": 6}}
    assert record["images"] == {"train": {"cat": 4, "dog": 4}, "val": {"cat": 4, "dog": 4}}
    for name, track in (("cat", 1), ("dog", 2)):
        train = sorted(p.name for p in (out / "train" / name).iterdir())
        assert train == sorted(f"clip{i}.mp4_t{track}_f000005.jpg" for i in (4, 0, 1, 5))
        val = sorted(p.name for p in (out / "val" / name).iterdir())
        assert val == sorted(f"clip{i}.mp4_t{track}_f{f:06d}.jpg" for i in (3, 2) for f in (0, 11))
    assert record["classes"]["dropped"] == {"bird": {"train": 3, "val": 0}}  # 3 crops: below the cap
    assert record["failed"] == {} and record["per_video"][BAD]["crops"] == {}
    assert "max_per_class=4 thinned 4 class halves (crops before the cap): cat train 15, dog train 15" in printed
    assert "train 8 from 4 videos, val 8 from 2" in printed

    assert main(args) == 0 and "0 videos cropped, 7 already done" in capsys.readouterr().out
    assert main([*args[:-1], "max_per_class=5"]) == 1
    assert "max_per_class: 4 -> 5" in capsys.readouterr().err
    assert main([*args[:-1], f"out={tmp_path / 'low'}", "max_per_class=2"]) == 1
    assert "max_per_class=2 is below min_images=3" in capsys.readouterr().err


def test_crops_refuse_foreign_folders_and_missing_tracks(tracks_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "mine" / "train").mkdir(parents=True)
    assert main(["tracks", "crops", str(tracks_dir), f"out={tmp_path / 'mine'}"]) == 1
    assert "holds train/ or val/ but no crops.json" in capsys.readouterr().err
    assert main(["tracks", "crops", str(tmp_path), f"out={tmp_path / 'x'}"]) == 1
    assert f"{tmp_path}: no tracks.json" in capsys.readouterr().err
    assert main(["tracks", "crops", str(tracks_dir), f"out={tmp_path / 'y'}", "min_images=100"]) == 1
    err = capsys.readouterr().err
    assert "no class has 100 crops in both train and val" in err and "crops.json" in err


def test_crops_of_a_smaller_copy_of_the_videos_rescale_the_boxes(tracks_dir: Path, tmp_path: Path) -> None:
    """data= a copy at half the size (as 'vidssl prepare' writes): the boxes of the tracked
    originals are rescaled, so the crops still show the objects."""
    from vidssl.data.backends import open_video
    from vidssl.data.video_writer import write_video

    source = Path(json.loads((tracks_dir / "tracks.json").read_text())["data"])
    half = tmp_path / "half"
    half.mkdir()
    for name in GOOD:
        reader = open_video(source / name, size=(HEIGHT // 2, WIDTH // 2))
        write_video(half / name, list(reader.get_frames(range(FRAMES))), 12.0, crf=10)
        reader.close()
    out = tmp_path / "crops"
    assert main(["tracks", "crops", str(tracks_dir), f"data={half}", f"out={out}", "per_track=1", "size=16",
                 "min_images=1"]) == 0
    cat = np.asarray(Image.open(next((out / "train" / "cat").iterdir())), np.float32).mean(axis=(0, 1))
    assert cat[0] > 190 and cat[2] < 60, cat  # the red square, not half of it and the grey beside it
    assert json.loads((out / "crops.json").read_text())["data"] == str(half.resolve())
