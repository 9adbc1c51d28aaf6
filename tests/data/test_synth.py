"""Synthetic dataset: determinism, layout, and ground truth consistent with the pixels."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidssl.data.synth import (
    CLASSES,
    NUM_KEYPOINTS,
    SynthConfig,
    davis_palette,
    generate,
    load_annotations,
    read_palette_mask,
)
from vidssl.data.video_writer import write_video

TINY = SynthConfig(num_videos=2, num_frames=12, height=96, width=128, keyint=4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, TINY, progress=False)
    return root


def _sequences(root: Path) -> list[str]:
    return (root / "davis" / "ImageSets" / "2017" / "val.txt").read_text().split()


def _mask(root: Path, seq: str, t: int) -> np.ndarray:
    return read_palette_mask(root / "davis" / "Annotations" / "480p" / seq / f"{t:05d}.png")


def _tree(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern))}


def test_same_seed_same_bytes_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", TINY, progress=False).root
    for pattern in ("*.png", "*.jpg", "*.json"):
        assert _tree(again, pattern) == _tree(tiny, pattern)
    other = generate(tmp_path / "other", dataclasses.replace(TINY, seed=1), progress=False).root
    assert _tree(other, "*.png") != _tree(tiny, "*.png")
    assert _tree(other, "annotations/*.json") != _tree(tiny, "annotations/*.json")


def test_layout(tiny: Path) -> None:
    sequences = _sequences(tiny)
    assert sequences == ["synth_000", "synth_001"]
    assert sorted(p.name for p in (tiny / "videos").iterdir()) == [f"{s}.mp4" for s in sequences]
    assert json.loads((tiny / "synth.json").read_text())["config"] == dataclasses.asdict(TINY)
    names = [f"{t:05d}" for t in range(TINY.num_frames)]
    for seq in sequences:
        jpegs = sorted((tiny / "davis" / "JPEGImages" / "480p" / seq).iterdir())
        pngs = sorted((tiny / "davis" / "Annotations" / "480p" / seq).iterdir())
        assert [p.name for p in jpegs] == [f"{n}.jpg" for n in names]
        assert [p.name for p in pngs] == [f"{n}.png" for n in names]
        with Image.open(pngs[0]) as image:
            assert image.mode == "P" and image.size == (TINY.width, TINY.height)
            assert image.getpalette() == davis_palette()
    assert not list(tiny.rglob(".*")), "no partial files left behind"


def test_boxes_are_bounding_boxes_of_masks(tiny: Path) -> None:
    for seq in _sequences(tiny):
        ann = load_annotations(tiny / "annotations" / f"{seq}.json")
        classes = {o["id"]: o["class_id"] for o in ann["objects"]}
        assert all(CLASSES[o["class_id"]] == o["class"] for o in ann["objects"])
        for frame in ann["frames"]:
            label = _mask(tiny, seq, frame["index"])
            assert set(np.unique(label)) <= {0, *classes}
            boxes = {b["id"]: b for b in frame["boxes"]}
            for obj_id, class_id in classes.items():
                rows, cols = np.nonzero(label == obj_id)
                if not rows.size:
                    assert obj_id not in boxes
                    continue
                expected = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
                assert boxes[obj_id]["box"] == expected and boxes[obj_id]["class_id"] == class_id


def test_keypoint_visibility_matches_mask_and_occlusion_happens(tiny: Path) -> None:
    for seq in _sequences(tiny):
        ann = load_annotations(tiny / "annotations" / f"{seq}.json")
        occluded = 0
        for frame in ann["frames"]:
            label = _mask(tiny, seq, frame["index"])
            for obj_id, points in frame["keypoints"].items():
                assert len(points) == NUM_KEYPOINTS
                for x, y, visible in points:
                    row, col = math.floor(y + 0.5), math.floor(x + 0.5)
                    inside = 0 <= row < TINY.height and 0 <= col < TINY.width
                    on_object = inside and label[row, col] == int(obj_id)
                    assert visible == int(on_object)
                    occluded += inside and not visible
        # Every video steers its objects across each other, so some inside-frame keypoint is hidden.
        assert occluded > 0, seq


def test_mp4_matches_jpegs_with_fixed_keyframes(tiny: Path) -> None:
    for seq in _sequences(tiny):
        with av.open(str(tiny / "videos" / f"{seq}.mp4")) as container:
            packets = [p for p in container.demux(video=0) if p.size]
            keyframes = [i for i, p in enumerate(sorted(packets, key=lambda p: p.pts)) if p.is_keyframe]
            container.seek(0)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert keyframes == list(range(0, TINY.num_frames, TINY.keyint))
        assert len(frames) == TINY.num_frames
        for t, frame in enumerate(frames):
            assert frame.shape == (TINY.height, TINY.width, 3)
            jpeg = np.asarray(Image.open(tiny / "davis" / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg"))
            assert np.abs(frame.astype(int) - jpeg).mean() < 8


def test_write_video_ntsc_rate_and_odd_size(tmp_path: Path) -> None:
    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(3)]
    path = tmp_path / "ntsc.mp4"
    assert write_video(path, frames, fps=29.97) == 3
    with av.open(str(path)) as container:
        times = [f.time for f in container.decode(video=0)]
    assert times == pytest.approx([i / 29.97 for i in range(3)], abs=1e-3)
    with pytest.raises(ValueError, match="odd.mp4"):
        write_video(tmp_path / "odd.mp4", [np.zeros((31, 32, 3), np.uint8)], fps=24.0)
    assert [p.name for p in tmp_path.iterdir()] == ["ntsc.mp4"], "no partial files left behind"
