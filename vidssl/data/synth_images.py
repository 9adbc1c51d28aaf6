"""A labeled image set cut from synthetic videos: object crops in ``ImageFolder`` layout.

The image evaluations (``vidssl eval linear | knn``) need labeled images; this makes them on any
machine from :mod:`vidssl.data.synth`, whose objects carry a class (disc, square, triangle, star,
cross) and a box in every frame::

    root = make_image_folder(Path("runs/eval/synth_images"))

Layout under ``out/`` (the layout ``torchvision.datasets.ImageFolder`` reads)::

    train/<class>/<seq>_f<frame>_o<object>.png    size x size RGB crops
    val/<class>/...                               crops from other videos than train's
    meta.json                                     the arguments and image counts (written last)

Train and val are split **by video**: consecutive frames of one object are near-duplicates, so a
split by image would let val images be nearly memorised train images; split by video, val measures
recognition of unseen objects (new texture, background, motion).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vidssl.data.backends import open_video
from vidssl.data.synth import CLASSES, SynthConfig, generate, load_annotations
from vidssl.files import atomic_write_json

META_VERSION = 1  # bump when the crops change for the same arguments, so old folders are rebuilt


def _square_box(box: list[int], height: int, width: int) -> tuple[int, int, int, int]:
    """The square (x1, y1, x2, y2) of side max(w, h) centred on ``box``, shifted inside the frame.

    Square, so resizing keeps the aspect ratio: the class *is* the shape, and stretching a disc
    into an ellipse or a square into a rectangle would blur it. Near a frame edge the square is
    shifted (not clipped) so it stays square; only a box larger than the frame gets clipped.
    """
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(cx - side / 2))
    top = int(round(cy - side / 2))
    left = min(max(left, 0), max(width - side, 0))
    top = min(max(top, 0), max(height - side, 0))
    return left, top, min(left + side, width), min(top + side, height)


def _crops(video_root: Path, seq: str, *, every: int, min_area: int, size: int) -> list[tuple[str, str, np.ndarray]]:
    """(class name, file stem, (size, size, 3) uint8 crop) for every object box of area >=
    ``min_area`` in frames 0, every, 2 * every, ... of ``seq``."""
    annotation = load_annotations(video_root / "annotations" / f"{seq}.json")
    reader = open_video(video_root / "davis" / "JPEGImages" / "480p" / seq)  # JPEG q95: nearly lossless
    try:
        crops = []
        for frame_info in annotation["frames"][::every]:
            index = frame_info["index"]
            boxes = [b for b in frame_info["boxes"] if _area(b["box"]) >= min_area]
            if not boxes:
                continue
            (frame,) = reader.get_frames([index])
            for b in boxes:
                x1, y1, x2, y2 = _square_box(b["box"], annotation["height"], annotation["width"])
                crop = Image.fromarray(frame[y1:y2, x1:x2]).resize((size, size), Image.BICUBIC)
                crops.append((CLASSES[b["class_id"]], f"{seq}_f{index:05d}_o{b['id']}", np.asarray(crop)))
        return crops
    finally:
        reader.close()


def _area(box: list[int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def make_image_folder(
    out: Path,
    *,
    num_videos: int = 16,
    num_frames: int = 32,
    size: int = 64,
    seed: int = 0,
    every: int = 2,
    min_area: int = 150,
    val_fraction: float = 0.25,
    height: int = 240,
    width: int = 320,
    progress: bool = True,
) -> Path:
    """Write object crops of synthetic videos as ``out/train/<class>/*.png`` and ``out/val/...``.

    Args:
        out: output folder (see the module docstring for the layout).
        num_videos: synthetic videos to generate (:func:`vidssl.data.synth.generate`, seeded by ``seed``).
        num_frames: frames per video.
        size: crops are resized to ``size`` x ``size`` pixels.
        seed: the synthetic videos' seed; the same arguments always give the same images.
        every: crop objects in every ``every``-th frame (neighbouring frames are near-duplicates).
        min_area: skip boxes (visible pixels' bounding box) smaller than this many pixels: slivers
            of objects entering the frame or nearly hidden carry no shape.
        val_fraction: the last ``round(val_fraction * num_videos)`` videos (at least 1) make ``val``.
        height, width: frame size of the generated videos.
        progress: show a progress bar.

    Returns:
        ``out``. Nothing is regenerated when ``out/meta.json`` records the same arguments.
        Val crops of a class with no train crop are dropped (a classifier cannot name a class it
        never saw); ``meta.json`` counts them.

    Raises:
        FileExistsError: ``out/train`` or ``out/val`` exists but was not written by this function
            (no ``meta.json``): refusing to delete someone's images.
    """
    out = Path(out)
    if not 0 < val_fraction < 1 or num_videos < 2:
        raise ValueError(f"need num_videos >= 2 and 0 < val_fraction < 1, got {num_videos} and {val_fraction}")
    args = {
        "version": META_VERSION, "num_videos": num_videos, "num_frames": num_frames, "size": size, "seed": seed,
        "every": every, "min_area": min_area, "val_fraction": val_fraction, "height": height, "width": width,
    }
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if meta is not None and meta.get("args") == args and (out / "train").is_dir() and (out / "val").is_dir():
        return out
    if meta is None and ((out / "train").exists() or (out / "val").exists()):
        raise FileExistsError(f"{out} holds train/ or val/ but no meta.json: not a synthetic set, not touching it")
    meta_path.unlink(missing_ok=True)  # from here on the folder is incomplete until meta.json is back
    for split in ("train", "val"):
        shutil.rmtree(out / split, ignore_errors=True)

    num_val = min(num_videos - 1, max(1, round(val_fraction * num_videos)))
    cfg = SynthConfig(num_videos=num_videos, num_frames=num_frames, height=height, width=width, seed=seed)
    counts: dict[str, dict[str, int]] = {"train": {}, "val": {}}
    dropped = 0
    with tempfile.TemporaryDirectory(prefix="vidssl_synth_") as tmp:
        # The videos are only a means to the crops; a temporary folder leaves nothing behind.
        result = generate(Path(tmp), cfg, progress=progress)
        seqs = result.sequences
        # Train first, so val crops of classes absent from train can be recognised and dropped.
        splits = [("train", seq) for seq in seqs[: num_videos - num_val]] + [("val", seq) for seq in seqs[-num_val:]]
        for split, seq in tqdm(splits, desc="crops", unit="video", disable=not progress):
            for class_name, stem, crop in _crops(Path(tmp), seq, every=every, min_area=min_area, size=size):
                if split == "val" and class_name not in counts["train"]:
                    dropped += 1
                    continue
                folder = out / split / class_name
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(crop).save(folder / f"{stem}.png")
                counts[split][class_name] = counts[split].get(class_name, 0) + 1
    for split in ("train", "val"):
        if not counts[split]:
            raise ValueError(f"no {split} crops: use more or longer videos, or a smaller min_area (got {args})")
    record = {
        "args": args,
        "videos": {"train": list(seqs[: num_videos - num_val]), "val": list(seqs[-num_val:])},
        "images": {split: dict(sorted(c.items())) for split, c in counts.items()},
        "val_dropped_unseen_class": dropped,
    }
    atomic_write_json(meta_path, record, indent=1)
    return out
