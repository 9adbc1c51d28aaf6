"""Image sets for the invariance measure, made from object tracks.

A set holds images of one instance under one transformation (:data:`TRANSFORMATIONS`):

* ``viewpoint``: crops of one tracked object at several frames (pose, scale, deformation and
  background change; the object stays the same);
* ``illumination``: one crop under each of :data:`ILLUMINATIONS`;
* ``occlusion``: one crop, plain and under synthetic occluders (:func:`occlude`);
* ``instance``: crops of different objects of one class.

Tracks are :class:`vidssl.tracking.Track`, the one track type of the package.
:func:`tracks_from_synth` reads them from a ``vidssl synth`` folder (ground-truth boxes and masks,
every set fully labelled); :func:`tracks_from_folder` reads the tracks of ``vidssl tracks`` on real
videos (detector boxes and classes), leaving out and counting small boxes and short tracks::

    tracks = tracks_from_synth(Path("runs/synth"))
    sets = {name: build_sets(tracks, transformation=name, sets=64, images_per_set=8,
                             image_size=64, seed=0) for name in TRANSFORMATIONS}

    source = tracks_from_folder("runs/tracks", min_box=32, min_track=8)
    viewpoint, classes = build_labelled_sets(source.tracks, transformation="viewpoint", root=source.root)

On real video the viewpoint and instance sets are real (one track over time; tracks of one detector
class), the illumination and occlusion sets are real crops transformed synthetically.

Crops are squares around the box (:func:`crop_object`), cut with the data layer's
:func:`vidssl.data.track_pairs.crop_box`.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from vidssl.data.track_pairs import crop_box
from vidssl.tracking import Track

TRANSFORMATIONS = ("viewpoint", "illumination", "occlusion", "instance")
"""What a set varies: the object's pose / shape over time, the lighting of one crop, occluders
drawn over one crop, or the object itself (different objects of one class)."""

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixel-edge coordinates


def tracks_from_synth(root: Path, *, min_size: int = 8, min_visible: float = 0.75) -> list[Track]:
    """The ground-truth tracks of a ``vidssl synth`` folder (see :mod:`vidssl.data.synth`).

    One :class:`~vidssl.tracking.Track` per object of each video, holding only its usable frames
    (with their boxes; scores 1.0, as ground truth). ``Track.video`` is the video's path under
    ``root`` joined to ``root`` as given (its JPEG frame folder, else its mp4), so
    :func:`build_sets` finds it without a ``root`` of its own.

    A frame is kept when the object's box is at least ``min_size`` pixels on both sides and its
    visible area (pixels of its label in the mask) is at least ``min_visible`` times its largest
    visible area in the video: viewpoint and instance sets should show whole objects, otherwise
    every transformation would also measure occlusion by the other objects.

    Raises:
        FileNotFoundError: ``root`` holds no ``synth.json`` (not a complete synthetic dataset).
    """
    from vidssl.data.backends import list_frame_files
    from vidssl.data.synth import load_annotations, read_palette_mask

    root = Path(root)
    if not (root / "synth.json").exists():
        raise FileNotFoundError(f"{root}: no synth.json; make a synthetic dataset with 'vidssl synth out={root}'")
    tracks = []
    for seq in json.loads((root / "synth.json").read_text())["sequences"]:
        annotation = load_annotations(root / "annotations" / f"{seq}.json")
        masks = list_frame_files(root / "davis" / "Annotations" / "480p" / seq)
        visible = np.stack([np.bincount(read_palette_mask(m).ravel(), minlength=256) for m in masks])  # (T, 256)
        frames = root / "davis" / "JPEGImages" / "480p" / seq
        video = frames if frames.is_dir() else root / "videos" / f"{seq}.mp4"
        for obj in annotation["objects"]:
            largest = visible[:, obj["id"]].max()
            kept = [
                (frame["index"], tuple(float(v) for v in box["box"]))
                for frame in annotation["frames"]
                for box in frame["boxes"]
                if box["id"] == obj["id"]
                and min(box["box"][2] - box["box"][0], box["box"][3] - box["box"][1]) >= min_size
                and visible[frame["index"], obj["id"]] >= min_visible * largest
            ]
            if kept:
                indices, boxes = zip(*kept, strict=True)
                tracks.append(Track(
                    video=video.as_posix(), track_id=obj["id"], class_id=obj["class_id"], class_name=obj["class"],
                    frames=np.array(indices, np.int64), boxes=np.array(boxes, np.float32).reshape(-1, 4),
                    scores=np.ones(len(indices), np.float32),
                ))
    return tracks


@dataclass(frozen=True)
class TrackSource:
    """Tracks ready for :func:`build_labelled_sets`, where their videos are, and what was left out."""

    tracks: list[Track]
    root: Path  # each video is root / track.video
    counts: dict[str, int]  # tracks_read, tracks_kept, tracks_too_short, boxes_read, boxes_too_small


def tracks_from_folder(
    tracks_dir: str | Path, *, data: str | Path = "", min_box: float = 32.0, min_track: int = 8
) -> TrackSource:
    """The tracks of a ``vidssl tracks`` folder (:func:`vidssl.tracking.read_tracks`), filtered for
    the invariance sets.

    A box whose shorter side is below ``min_box`` native pixels is dropped (its crop would be
    upsampled blur); a track left with fewer than ``min_track`` boxes is dropped (short tracks are
    mostly detector flicker, and a viewpoint set needs ``images_per_set`` frames of one track).
    Both are counted in ``counts``.

    Args:
        tracks_dir: the folder holding ``tracks.json`` and the CSVs.
        data: the videos' folder; empty: the ``data`` recorded in ``tracks.json``.

    Raises:
        FileNotFoundError: no ``tracks.json`` in ``tracks_dir``, or ``data`` is not a folder.
        ValueError: a CSV that is not a tracks CSV (the message names it).
    """
    from vidssl.tracking import read_manifest, read_tracks

    root = Path(data) if data else Path(read_manifest(tracks_dir)["data"])
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder (data= must be the folder the tracks of {tracks_dir} were"
                                " computed on)")
    counts = dict.fromkeys(("tracks_read", "tracks_kept", "tracks_too_short", "boxes_read", "boxes_too_small"), 0)
    kept = []
    for video_tracks in read_tracks(tracks_dir).values():
        for track in video_tracks:
            counts["tracks_read"] += 1
            counts["boxes_read"] += len(track)
            sides = np.minimum(track.boxes[:, 2] - track.boxes[:, 0], track.boxes[:, 3] - track.boxes[:, 1])
            large = sides >= min_box
            counts["boxes_too_small"] += int((~large).sum())
            if int(large.sum()) < max(min_track, 1):
                counts["tracks_too_short"] += 1
                continue
            kept.append(Track(
                video=track.video, track_id=track.track_id, class_id=track.class_id, class_name=track.class_name,
                frames=track.frames[large], boxes=track.boxes[large], scores=track.scores[large],
            ))
    counts["tracks_kept"] = len(kept)
    return TrackSource(tracks=kept, root=root, counts=counts)


def _box(track: Track, row: int) -> Box:
    """Row ``row`` of ``track.boxes`` as Python floats."""
    x1, y1, x2, y2 = (float(v) for v in track.boxes[row])
    return x1, y1, x2, y2


def square_box(box: Box, *, height: int, width: int) -> tuple[int, int, int, int]:
    """The square crop window around ``box`` in a ``height`` x ``width`` frame, in whole pixels.

    Its side is the box's longer side (so the aspect ratio is kept), at least 1 and at most the
    frame's shorter side; it is centred on the box and shifted to stay inside the frame rather
    than padded, so no crop shows artificial borders.

    Returns:
        ``left, top, left + side, top + side``.
    """
    x1, y1, x2, y2 = box
    side = min(max(math.ceil(x2 - x1), math.ceil(y2 - y1), 1), height, width)
    left = min(max(round((x1 + x2 - side) / 2), 0), width - side)
    top = min(max(round((y1 + y2 - side) / 2), 0), height - side)
    return left, top, left + side, top + side


def crop_object(frame: np.ndarray, box: Box, *, size: int) -> tuple[torch.Tensor, Box]:
    """The :func:`square_box` crop around ``box``, resized to ``size`` x ``size``.

    The window is cut by :func:`vidssl.data.track_pairs.crop_box` (with whole-pixel bounds and no
    context it returns exactly that window).

    Args:
        frame: (H, W, 3) uint8 RGB.
        box: x1, y1, x2, y2 in pixels.

    Returns:
        (3, size, size) uint8 crop, and the box in the crop's pixel coordinates.
    """
    height, width = frame.shape[:2]
    window = square_box(box, height=height, width=width)
    pixels = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)  # (3, H, W), a view
    patch = crop_box(pixels, window, scale=(1.0, 1.0), context=1.0)
    crop = TF.resize(patch, [size, size], antialias=True)
    left, top, right, _ = window
    scale = size / (right - left)
    x1, y1, x2, y2 = box
    return crop, ((x1 - left) * scale, (y1 - top) * scale, (x2 - left) * scale, (y2 - top) * scale)


@dataclass(frozen=True)
class Illumination:
    """One lighting change: brightness and contrast factors (torchvision's ``adjust_brightness`` /
    ``adjust_contrast``; 1 = unchanged), then per-channel RGB gains for colour temperature."""

    name: str
    brightness: float = 1.0
    contrast: float = 1.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) uint8 -> the same under this lighting, uint8."""
        out = TF.adjust_contrast(TF.adjust_brightness(image, self.brightness), self.contrast)
        gains = torch.tensor(self.gains).view(3, 1, 1)
        return (out.float() * gains).round().clamp(0, 255).to(torch.uint8)


ILLUMINATIONS = (
    Illumination("original"),
    Illumination("darker", brightness=0.6),
    Illumination("brighter", brightness=1.4),
    Illumination("low contrast", contrast=0.6),
    Illumination("high contrast", contrast=1.4),
    Illumination("warm", gains=(1.15, 1.0, 0.8)),  # tungsten-like: more red, less blue
    Illumination("cool", gains=(0.85, 1.0, 1.2)),  # overcast-like: more blue
    Illumination("dim and warm", brightness=0.75, contrast=0.8, gains=(1.1, 1.0, 0.85)),
)
"""An illumination set is one crop under each of these, in this order (deterministic)."""


def occlude(
    image: torch.Tensor, box: Box, *, rng: np.random.Generator, area: tuple[float, float] = (0.1, 0.4)
) -> torch.Tensor:
    """``image`` (3, H, W) uint8 with one synthetic occluder over the object in ``box``.

    The occluder is a rectangle covering a fraction of the box's area drawn uniformly from
    ``area``, with a log-uniform aspect ratio in [1/2, 2], placed uniformly inside the box and
    filled with a flat grey of random level or with uniform noise (an even chance each).
    """
    x1, y1, x2, y2 = box
    box_w, box_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    target = rng.uniform(*area) * box_w * box_h
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    w = min(max(round(math.sqrt(target * aspect)), 1), math.floor(box_w))
    h = min(max(round(target / max(w, 1)), 1), math.floor(box_h))
    left = round(x1 + rng.uniform(0, box_w - w))
    top = round(y1 + rng.uniform(0, box_h - h))
    out = image.clone()
    region = out[:, top : top + h, left : left + w]
    if rng.random() < 0.5:
        region[:] = int(rng.integers(0, 256))
    else:
        region[:] = torch.from_numpy(rng.integers(0, 256, region.shape, dtype=np.uint8))
    return out


def _draw_specs(
    tracks: Sequence[Track], *, transformation: str, sets: int, images_per_set: int, rng: np.random.Generator
) -> list[list[tuple[int, int]]]:
    """Which (track, position in ``track.frames``) each set is made of; at most ``sets`` sets.

    No frame of a track is used twice: the copies of a crop in two sets always fire together, so
    one strong crop would fill several of a neuron's few firing places and be counted twice.

    * viewpoint: each track's frames shuffled and cut into groups of ``images_per_set``.
    * illumination, occlusion: one (track, frame) each (transformed later).
    * instance: one frame each of up to ``images_per_set`` different tracks of one class, the
      classes with two tracks or more taking turns.
    """
    n = images_per_set
    if transformation == "viewpoint":
        groups = []
        for t, track in enumerate(tracks):
            order = rng.permutation(len(track.frames))
            groups += [[(t, int(p)) for p in sorted(order[g * n : (g + 1) * n])] for g in range(len(order) // n)]
        if not groups:
            raise ValueError(f"viewpoint sets need a track with {n} usable frames or more; none has")
        return [groups[i] for i in rng.permutation(len(groups))[:sets]]
    if transformation in ("illumination", "occlusion"):
        pairs = [(t, p) for t, track in enumerate(tracks) for p in range(len(track.frames))]
        if not pairs:
            raise ValueError(f"{transformation} sets need at least one track; there is none")
        return [[pairs[i]] for i in rng.permutation(len(pairs))[:sets]]
    # instance: shuffled unused frames per track, taken one per set
    unused = [[int(p) for p in rng.permutation(len(track.frames))] for track in tracks]
    by_class: dict[int, list[int]] = defaultdict(list)
    for t, track in enumerate(tracks):
        by_class[track.class_id].append(t)
    specs: list[list[tuple[int, int]]] = []
    while len(specs) < sets:
        made = len(specs)
        for c in rng.permutation(sorted(by_class)).tolist():
            members = [t for t in by_class[c] if unused[t]]
            if len(members) < 2 or len(specs) == sets:
                continue
            chosen = rng.choice(members, size=min(n, len(members)), replace=False)
            specs.append([(int(t), unused[t].pop()) for t in chosen])
        if len(specs) == made:  # no class has two tracks with frames left
            break
    if not specs:
        raise ValueError("instance sets need two tracks of one class or more; none has (use more videos)")
    return specs


def build_sets(
    tracks: Sequence[Track],
    *,
    transformation: str,
    sets: int = 64,
    images_per_set: int = 8,
    image_size: int = 64,
    seed: int = 0,
    root: str | Path = "",
) -> list[torch.Tensor]:
    """The image sets of :func:`build_labelled_sets`, without their class labels."""
    return build_labelled_sets(
        tracks, transformation=transformation, sets=sets, images_per_set=images_per_set,
        image_size=image_size, seed=seed, root=root,
    )[0]


def build_labelled_sets(
    tracks: Sequence[Track],
    *,
    transformation: str,
    sets: int = 64,
    images_per_set: int = 8,
    image_size: int = 64,
    seed: int = 0,
    root: str | Path = "",
) -> tuple[list[torch.Tensor], list[str]]:
    """Image sets of one transformation from object tracks, and the object class of each set;
    deterministic given ``seed``.

    Each track's video is ``root / track.video`` (``root`` empty: ``track.video`` as it is, as
    :func:`tracks_from_synth` gives it; for ``vidssl tracks`` output, the data folder of its
    ``tracks.json``: :func:`tracks_from_folder`). Boxes are in the video's native pixels.

    * ``viewpoint``: crops of one track at ``images_per_set`` frames (pose, scale, deformation
      and background change; the object stays the same).
    * ``illumination``: one crop under each of :data:`ILLUMINATIONS` (sets of that size).
    * ``occlusion``: one crop, unoccluded and with ``images_per_set - 1`` different occluders.
    * ``instance``: crops of up to ``images_per_set`` different objects of one class.

    Returns:
        At most ``sets`` tensors (n_j, 3, image_size, image_size) uint8: fewer when the tracks
        run out of unused frames (no frame is used twice); and per set its tracks'
        ``class_name`` (the paper protocol ranks neurons per class).

    Raises:
        ValueError: unknown transformation, or tracks that cannot make its sets.
        FileNotFoundError: a track's video is missing (the message names it).
    """
    from vidssl.data.backends import open_video

    if transformation not in TRANSFORMATIONS:
        raise ValueError(f"unknown transformation '{transformation}'; choose from {', '.join(TRANSFORMATIONS)}")
    # One stream per transformation, so adding one never changes another's sets.
    rng = np.random.default_rng([seed, TRANSFORMATIONS.index(transformation)])
    specs = _draw_specs(tracks, transformation=transformation, sets=sets, images_per_set=images_per_set, rng=rng)
    classes = [tracks[spec[0][0]].class_name for spec in specs]
    videos = [Path(root) / track.video for track in tracks]
    wanted: dict[Path, set[int]] = defaultdict(set)
    for spec in specs:
        for t, p in spec:
            wanted[videos[t]].add(int(tracks[t].frames[p]))
    decoded: dict[tuple[Path, int], np.ndarray] = {}
    for video, indices in wanted.items():
        if not video.exists():
            raise FileNotFoundError(f"{video}: video of a track not found (is root / data the folder the tracks"
                                    " were computed on?)")
        reader = open_video(video)
        try:
            ordered = sorted(indices)
            decoded |= {(video, i): frame for i, frame in zip(ordered, reader.get_frames(ordered), strict=True)}
        finally:
            reader.close()
    crops = [
        [crop_object(decoded[videos[t], int(tracks[t].frames[p])], _box(tracks[t], p), size=image_size) for t, p in s]
        for s in specs
    ]
    if transformation == "illumination":
        # Every lighting change on all crops at once: (L, S, 3, H, W) -> S sets of L images.
        lit = torch.stack([light(torch.stack([c[0][0] for c in crops])) for light in ILLUMINATIONS])
        return list(lit.transpose(0, 1).unbind()), classes
    if transformation == "occlusion":
        return [
            torch.stack([crop] + [occlude(crop, box, rng=rng) for _ in range(images_per_set - 1)])
            for ((crop, box),) in crops
        ], classes
    return [torch.stack([crop for crop, _ in group]) for group in crops], classes
