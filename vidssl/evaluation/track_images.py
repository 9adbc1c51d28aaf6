"""A labelled image set of real objects: crops of ``vidssl tracks`` tracks in ``ImageFolder`` layout.

    vidssl tracks ~/videos out=runs/tracks detector=yolo11n_int8_openvino_model/ min_score=0.25 min_box=32
    vidssl tracks crops runs/tracks out=runs/crops
    vidssl eval knn runs/crops encoder=runs/fti

The real-data counterpart of :mod:`vidssl.data.synth_images`, for ``vidssl eval knn | linear``
(and ``vidssl bench images=``). Layout of ``out/``::

    train/<class>/<video>_t<track>_f<frame>.jpg   size x size RGB crops (JPEG, quality 95)
    val/<class>/...                               crops of other videos than train's
    crops.json                                    settings, split, counts per class and split (module end)

* **Labels** are the detector's classes: each crop is filed under its track's ``class_name``, the
  class ``vidssl tracks`` gave the track by a majority vote over its detections (constant over a
  track). They are the detector's guesses, not human labels: a mislabelled track stays mislabelled.
* **Crops**: ``per_track`` boxes of each track at evenly spaced times (for each of ``per_track``
  times evenly spaced from its first to its last frame, the box nearest in time; fewer when the
  track has fewer boxes), each enlarged ``context`` times around its centre, then the square around
  that (side the longer side, shifted to stay inside the frame: :func:`crop_object`) resized to
  ``size``. Boxes whose shorter side is below ``min_box`` native pixels are skipped.
* **Split by video**: the videos with a usable box, ordered by the SHA-1 of their file name
  (:func:`vidssl.data.index.name_hash_order`, the order of ``vidssl train val_videos=``); the first
  ``round(val_fraction * n)`` (at least 1, at most n - 1) make ``val``, the rest ``train``. Every
  crop of a video, so every crop of an object, lands in one half; near-duplicate frames of one
  object never sit on both sides.
* **Cap**: ``max_per_class`` (0: none) keeps at most that many crops of a class in each half, so
  one class filmed in many videos (``person``) does not make most of the set. The crops are dealt
  one at a time to the class's videos in SHA-1 order, round-robin, each video's turn going to its
  own tracks round-robin; a track given ``m`` of its ``per_track`` crops keeps ``m`` of them evenly
  spread in time (:func:`cap_picks`, :data:`CAP_RULE`). So a capped class keeps as many videos and
  tracks as the cap allows, and the choice is decided before any frame is read.
* **Classes** with fewer than ``min_images`` crops in train or in val are dropped (their folders
  removed, listed with their counts in ``crops.json`` and in one printed line): a class val lacks
  cannot be scored, and one train lacks cannot be predicted.

Resumable and atomic like ``vidssl tracks``: every image is written atomically, ``crops.json``
after every video (``complete: false`` until the classes are settled), a rerun skips the videos it
records and refuses a folder made with other settings or another split. A video that cannot be
read is reported and skipped (listed under ``failed``).

``crops.json`` (``version`` 1): ``complete``, ``labels`` (what the class names are), ``tracks``,
``data``, ``detector`` (from ``tracks.json``), ``settings``, ``split`` (``rule``, ``train`` and
``val``: the videos), ``cap`` (``rule``; ``before``: ``{split: {class: crops before the cap}}`` of
the classes it thinned), ``images`` (``{"train": {class: count}, "val": {...}}`` of the kept classes),
``classes`` (``kept``, ``dropped``: ``{class: {"train": n, "val": n}}``), ``track_counts`` (tracks
and boxes read, boxes too small), ``per_video`` (``split``, crops per class) and ``failed``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from vidssl.config import ConfigError, option, to_dict
from vidssl.data.backends import VideoReadError, open_video
from vidssl.data.index import name_hash_order
from vidssl.files import atomic_path, atomic_write_json, shown, stale_partials

RECORD = "crops.json"
RECORD_VERSION = 1
SPLITS = ("train", "val")
LABELS = ("the detector's class of each track (its class_name in the tracks CSV: the majority over the track's "
          "detections, as 'vidssl tracks' wrote it); detector guesses, not human labels")
CAP_RULE = ("max_per_class: per half and class, crops are dealt one at a time to the class's videos in SHA-1 "
            "order, round-robin, each video's turn going to its tracks (by track id) round-robin, until the cap; a "
            "track given m of its per_track crops keeps m of them evenly spaced in time")
SPLIT_RULE = ("by video: the videos with a usable box, sorted by the SHA-1 of the file name; the first "
              "round(val_fraction * n) (at least 1, at most n - 1) are val, the rest train")
CHUNK = 16  # frames decoded at a time: a 720p frame is 2.8 MB


@dataclass(frozen=True)
class TrackCropsConfig:
    tracks: str = option("", "folder written by 'vidssl tracks' (tracks.json and the CSVs)")
    data: str = option("", "the videos the tracks were computed on ('' = the folder recorded in tracks.json)")
    out: str = option("runs/crops", "ImageFolder root written: train/<class>/*.jpg, val/<class>/*.jpg, crops.json")
    per_track: int = option(4, "crops per track, at evenly spaced times (fewer for shorter tracks)", min=1)
    min_box: float = option(32.0, "skip boxes whose shorter side is below this many native pixels", min=0)
    context: float = option(1.0, "crop this many times the box around its centre (1.2: 10% more on each side), "
                            "then the square around it", min=1.0)
    size: int = option(128, "crops are resized to size x size pixels", min=8)
    val_fraction: float = option(0.25, "fraction of the videos whose crops make val (chosen by the SHA-1 of the "
                                 "file name)", min=0)
    min_images: int = option(10, "drop classes with fewer crops than this in train or in val", min=1)
    max_per_class: int = option(0, "at most this many crops of a class in each half, spread over its videos and "
                                "tracks (round-robin) and evenly in time; 0 = no cap", min=0)


@dataclass
class CropsResult:
    """What a run did: ``images`` per split and class (kept classes), ``dropped`` classes with their
    counts, ``failed`` (rel path, reason)."""

    out: Path
    images: dict[str, dict[str, int]]
    dropped: dict[str, dict[str, int]]
    videos: dict[str, list[str]]
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    min_images: int = 0
    cap: int = 0
    capped: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per fact: what was written, the dropped classes, the failed videos."""
        total = {s: sum(self.images[s].values()) for s in SPLITS}
        lines = [f"wrote {total['train'] + total['val']:,} crops of {len(self.images['train'])} classes into "
                 f"{self.out} (train {total['train']:,} from {len(self.videos['train'])} videos, val "
                 f"{total['val']:,} from {len(self.videos['val'])}: split by video); {len(self.written)} videos "
                 f"cropped, {len(self.skipped)} already done"]
        thinned = [f"{c} {s} {n}" for s in SPLITS for c, n in self.capped.get(s, {}).items()]
        if thinned:
            lines.append(f"max_per_class={self.cap} thinned {len(thinned)} class halves (crops before the cap): "
                         + ", ".join(thinned))
        if self.dropped:
            named = ", ".join(f"{c} ({n['train']}/{n['val']})" for c, n in self.dropped.items())
            lines.append(f"dropped {len(self.dropped)} classes with fewer than {self.min_images} crops in train or "
                         f"val (train/val): {named}")
        if self.failed:
            lines.append(f"{len(self.failed)} videos failed: " + ", ".join(f"{r} ({why})" for r, why in self.failed))
        return shown("\n".join(lines))


def class_folder(name: str, class_id: int) -> str:
    """A class name usable as one folder name (a separator or a leading dot replaced)."""
    clean = name.replace("/", "_").replace("\\", "_").replace("\0", "").strip().lstrip(".")
    return clean or f"class_{class_id}"


def spaced(frames: np.ndarray, count: int) -> list[int]:
    """Positions into ``frames`` (increasing frame indices) of up to ``count`` boxes evenly spaced in
    time: for each of ``count`` times evenly spaced from the first to the last frame, the nearest
    box (the earlier one on a tie); repeated positions are kept once."""
    if len(frames) <= count:
        return list(range(len(frames)))
    times = np.linspace(float(frames[0]), float(frames[-1]), count)
    after = np.clip(np.searchsorted(frames, times), 1, len(frames) - 1)
    nearer = np.where(times - frames[after - 1] <= frames[after] - times, after - 1, after)
    return sorted({int(p) for p in nearer})


def split_videos(videos: list[str], val_fraction: float) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...]}`` by :data:`SPLIT_RULE` (each half sorted by name).

    Raises:
        ValueError: fewer than 2 videos, or ``val_fraction`` not in (0, 1).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction}: must be between 0 and 1")
    if len(videos) < 2:
        raise ValueError(f"a split by video needs usable tracks in 2 videos or more, found {len(videos)}")
    count = min(len(videos) - 1, max(1, round(val_fraction * len(videos))))
    val = sorted(videos, key=name_hash_order)[:count]
    return {"train": sorted(set(videos) - set(val)), "val": sorted(val)}


def thin(count: int, keep: int) -> list[int]:
    """``keep`` of ``count`` positions (0 .. count - 1) evenly spread from the first to the last, as
    :func:`spaced` spreads times (all of them when ``keep >= count``; the middle one for ``keep`` 1)."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [(count - 1) // 2]
    return [int(i * (count - 1) / (keep - 1) + 0.5) for i in range(keep)]  # steps >= 1: all distinct


def cap_picks(picks: dict[Any, list[int]], video_of: dict[Any, str], cap: int) -> dict[Any, list[int]]:
    """At most ``cap`` of the crops ``picks`` (``{track key: positions}``, the tracks of one class in
    one half) by :data:`CAP_RULE`: crops dealt to the videos in :func:`name_hash_order`, round-robin,
    each video's turn going to its own tracks (in key order) round-robin; every track then keeps
    :func:`thin` of its positions. ``cap`` 0 keeps everything. Deterministic: the result depends on
    the video names, the track keys and the positions alone."""
    if not cap or sum(len(p) for p in picks.values()) <= cap:
        return {t: list(p) for t, p in picks.items()}
    tracks_of: dict[str, list[Any]] = {}
    for t in sorted(picks):
        tracks_of.setdefault(video_of[t], []).append(t)
    queues = []  # per video, its tracks in the order its turns serve them
    for video in sorted(tracks_of, key=name_hash_order):
        rounds = max(len(picks[t]) for t in tracks_of[video])
        queues.append([t for r in range(rounds) for t in tracks_of[video] if r < len(picks[t])])
    quota: Counter[Any] = Counter()
    dealt, turn = 0, 0
    while dealt < cap:
        for queue in queues:
            if turn < len(queue) and dealt < cap:
                quota[queue[turn]] += 1
                dealt += 1
        turn += 1
    return {t: [p[i] for i in thin(len(p), quota[t])] for t, p in picks.items() if quota[t]}


def plan_crops(by_video: dict[str, list[Any]], split_of: dict[str, str], cfg: TrackCropsConfig
               ) -> tuple[dict[str, list[tuple[Any, int]]], dict[str, dict[str, int]]]:
    """The crops to write, before reading any frame: ``{video: [(track, position), ...]}`` (every
    track's :func:`spaced` boxes, thinned to ``cfg.max_per_class`` per class and half by
    :func:`cap_picks`), and ``{split: {class folder: crops before the cap}}`` of the classes the cap
    thinned."""
    groups: dict[tuple[str, str], dict[tuple[str, int, int], list[int]]] = {}
    track_of: dict[tuple[str, int, int], Any] = {}
    for video, tracks in by_video.items():
        for i, track in enumerate(tracks):
            key = (video, int(track.track_id), i)
            track_of[key] = track
            folder = class_folder(track.class_name, track.class_id)
            groups.setdefault((split_of[video], folder), {})[key] = spaced(track.frames, cfg.per_track)
    plan: dict[str, list[tuple[Any, int]]] = {v: [] for v in by_video}
    capped: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for (split, folder), picks in sorted(groups.items()):
        kept = cap_picks(picks, {k: k[0] for k in picks}, cfg.max_per_class)
        before = sum(len(p) for p in picks.values())
        if sum(len(p) for p in kept.values()) < before:
            capped[split][folder] = before
        for key, positions in kept.items():
            plan[key[0]] += [(track_of[key], p) for p in positions]
    return plan, capped


def _enlarge(box: np.ndarray, context: float, scale: tuple[float, float]) -> tuple[float, float, float, float]:
    """``box`` (native pixels) in decoded pixels, enlarged ``context`` times around its centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = scale
    cx, cy, hw, hh = (x1 + x2) / 2 * sx, (y1 + y2) / 2 * sy, (x2 - x1) * sx * context / 2, (y2 - y1) * sy * context / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def _video_crops(path: Path, picks: list[tuple[Any, int]], *, cfg: TrackCropsConfig,
                 native: tuple[int, int] | None) -> list[tuple[str, str, np.ndarray]]:
    """(class folder, file name, (size, size, 3) uint8) of every (track, position) of ``picks``, all
    from the one video at ``path``.

    Raises:
        VideoReadError: the video cannot be opened or decoded.
    """
    from vidssl.evaluation.invariance.sets import crop_object

    by_frame: dict[int, list[tuple[Any, int]]] = {}
    for track, p in picks:
        by_frame.setdefault(int(track.frames[p]), []).append((track, p))
    reader = open_video(path)
    try:
        # boxes are in the tracked video's native pixels; a prepared copy is read at its own size
        scale = (reader.width / native[1], reader.height / native[0]) if native and all(native) else (1.0, 1.0)
        stem = Path(picks[0][0].video).as_posix().replace("/", "__")
        out = []
        wanted = sorted(by_frame)
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            for index, frame in zip(chunk, reader.get_frames(chunk), strict=True):
                for track, p in by_frame[index]:
                    crop, _ = crop_object(frame, _enlarge(track.boxes[p], cfg.context, scale), size=cfg.size)
                    out.append((class_folder(track.class_name, track.class_id),
                                f"{stem}_t{track.track_id}_f{index:06d}.jpg", crop.permute(1, 2, 0).numpy()))
        return out
    finally:
        reader.close()


def _settings(cfg: TrackCropsConfig, tracks: Path, data: Path) -> dict[str, Any]:
    return {**{k: v for k, v in to_dict(cfg).items() if k not in ("out", "tracks", "data")},
            "tracks": str(tracks.resolve()), "data": str(data.resolve())}


def _counts(per_video: dict[str, Any]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    for entry in per_video.values():
        counts[entry["split"]].update(entry["crops"])
    return {s: dict(sorted(c.items())) for s, c in counts.items()}


def make_track_crops(cfg: TrackCropsConfig, *, progress: bool = True) -> CropsResult:
    """Write the crops of ``cfg.tracks`` as an ImageFolder root at ``cfg.out`` (module docstring).

    Raises:
        ConfigError: no tracks folder given, or ``out`` holds crops made with other settings or
            another split.
        FileNotFoundError: no ``tracks.json``, or the videos' folder is missing.
        FileExistsError: ``out`` holds ``train/`` or ``val/`` but no ``crops.json`` (not ours).
        ValueError: a CSV that is not a tracks CSV, fewer than 2 videos with usable boxes, or no class
            with ``min_images`` crops in both halves (each message names the file or the counts).
    """
    from vidssl.evaluation.invariance.sets import tracks_from_folder
    from vidssl.tracking import read_manifest

    if not cfg.tracks:
        raise ConfigError("tracks crops needs a tracks folder: vidssl tracks crops TRACKS_DIR out=DIR")
    tracks_dir = Path(cfg.tracks).expanduser()
    manifest = read_manifest(tracks_dir)
    source = tracks_from_folder(tracks_dir, data=Path(cfg.data).expanduser() if cfg.data else "",
                                min_box=cfg.min_box, min_track=1)
    by_video: dict[str, list[Any]] = {}
    for track in source.tracks:
        by_video.setdefault(track.video, []).append(track)
    if 0 < cfg.max_per_class < cfg.min_images:
        raise ConfigError(f"max_per_class={cfg.max_per_class} is below min_images={cfg.min_images}: every class "
                          "would be dropped")
    try:
        split = split_videos(sorted(by_video), cfg.val_fraction)
    except ValueError as err:  # name the folder whose tracks are too few
        raise ValueError(f"{tracks_dir}: {err} (min_box={cfg.min_box})") from None
    split_of = {v: s for s in SPLITS for v in split[s]}
    plan, capped = plan_crops(by_video, split_of, cfg)
    settings = _settings(cfg, tracks_dir, source.root)

    out = Path(cfg.out).expanduser()
    record_path = out / RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    if record is None and any((out / s).exists() for s in SPLITS):
        raise FileExistsError(f"{out} holds train/ or val/ but no {RECORD}: not written by 'vidssl tracks crops', "
                              "not touching it; choose another out=")
    if record is not None:
        held = {"max_per_class": 0, **record["settings"]}  # folders of before the cap had none
        changed = [f"{k}: {held.get(k)!r} -> {v!r}" for k, v in settings.items() if held.get(k) != v]
        if record["split"]["train"] != split["train"] or record["split"]["val"] != split["val"]:
            changed.append("the videos with tracks (another split)")
        if changed:
            raise ConfigError(f"{out} holds crops made with other settings ({'; '.join(changed)}): choose another "
                              "out= or delete it")
        for s in SPLITS:  # temporaries of a run killed mid-write: we own this folder
            for folder in [out / s, *(out / s).glob("*")] if (out / s).is_dir() else []:
                for stale in stale_partials(folder):
                    stale.unlink()
    else:
        record = {"version": RECORD_VERSION, "complete": False, "labels": LABELS, "tracks": settings["tracks"],
                  "data": settings["data"], "detector": manifest.get("detector"), "settings": settings,
                  "split": {"rule": SPLIT_RULE, **split}, "cap": {"rule": CAP_RULE, "before": capped},
                  "images": {}, "classes": {},
                  "track_counts": source.counts, "per_video": {}, "failed": {}}
    sizes = {rel: (int(v.get("height", 0)), int(v.get("width", 0))) for rel, v in manifest.get("videos", {}).items()}

    result = CropsResult(out=out, images={}, dropped={}, videos={}, min_images=cfg.min_images,
                         cap=cfg.max_per_class, capped=capped)
    todo = [v for v in sorted(by_video) if v not in record["per_video"]]  # a video that failed is tried again
    result.skipped = [v for v in sorted(by_video) if v in record["per_video"]]
    for rel in tqdm(todo, desc="crops", unit="video", disable=not progress):
        picks = plan[rel]
        if not picks:  # the cap took every crop of this video
            record["per_video"][rel] = {"split": split_of[rel], "crops": {}}
            atomic_write_json(record_path, record, indent=1)
            result.written.append(rel)
            continue
        try:
            crops = _video_crops(source.root / rel, picks, cfg=cfg, native=sizes.get(rel))
        except (VideoReadError, OSError) as err:
            result.failed.append((rel, str(err)))
            record["failed"][rel] = str(err)
            if progress:
                tqdm.write(shown(f"skipped {rel}: {err}"))
            atomic_write_json(record_path, record, indent=1)
            continue
        for folder, name, pixels in crops:
            with atomic_path(out / split_of[rel] / folder / name) as tmp:
                Image.fromarray(pixels).save(tmp, quality=95)
        record["per_video"][rel] = {"split": split_of[rel], "crops": dict(Counter(f for f, _, _ in crops))}
        record["failed"].pop(rel, None)
        atomic_write_json(record_path, record, indent=1)
        result.written.append(rel)

    counts = _counts(record["per_video"])
    names = sorted(set(counts["train"]) | set(counts["val"]))
    kept = [c for c in names if min(counts["train"].get(c, 0), counts["val"].get(c, 0)) >= cfg.min_images]
    result.dropped = {c: {s: counts[s].get(c, 0) for s in SPLITS} for c in names if c not in kept}
    for c in result.dropped:
        for s in SPLITS:
            shutil.rmtree(out / s / c, ignore_errors=True)
    result.images = {s: {c: counts[s][c] for c in kept} for s in SPLITS}
    result.videos = {s: [v for v in split[s] if record["per_video"].get(v, {}).get("crops")] for s in SPLITS}
    record |= {"images": result.images, "classes": {"kept": kept, "dropped": result.dropped},
               "cap": {"rule": CAP_RULE, "before": capped}}
    if not kept:
        atomic_write_json(record_path, record, indent=1)
        seen = ", ".join(f"{c} ({n['train']}/{n['val']})" for c, n in result.dropped.items()) or "none"
        raise ValueError(f"{record_path}: no class has {cfg.min_images} crops in both train and val (train/val: "
                         f"{seen}); use more videos, more per_track or a smaller min_images")
    record["complete"] = True
    atomic_write_json(record_path, record, indent=1)
    return result
