"""``vidssl tracks``: a detector plus an ultralytics tracker over every video of a folder.

For each video (from :func:`vidssl.data.index.scan`) frames are decoded ``chunk`` at a time with
:func:`vidssl.data.backends.open_video` (never the whole video in memory), detected, filtered
(``classes``, ``min_score``, ``min_box``) and fed frame by frame to a fresh ultralytics
``BYTETracker`` / ``BOTSORT``. Tracks with fewer than ``min_track`` boxes are dropped, and the rest
are written as ``OUT/<rel path>.csv`` (format: :mod:`vidssl.data.tracks`).

Each row is the *detection* the tracker matched to the track in that frame (its box and score),
not the Kalman-filtered estimate: positives are cropped from these boxes, which should hug what the
detector saw. As in ultralytics' own ``track`` mode, a track first appears on the frame that
confirms it (its second detection), except for tracks born on the first processed frame.

Resumable: a video whose CSV exists is skipped; every CSV and ``tracks.json`` is written atomically
(after each video), so an interrupted run loses at most the video in progress. A video that cannot
be read (or has no annotation, for ``detector=groundtruth``) is reported and skipped. Resuming into
a folder written with other settings is an error, so one folder never mixes two runs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vidssl.config import ConfigError, option, to_dict
from vidssl.data.backends import VideoReadError, open_video
from vidssl.data.index import scan
from vidssl.data.tracks import (
    MANIFEST_VERSION,
    Track,
    csv_path,
    read_manifest,
    read_tracks_csv,
    write_manifest,
    write_tracks_csv,
)
from vidssl.files import shown
from vidssl.tracking.detectors import AnnotationError, Detections, Detector, filter_detections, load_detector
from vidssl.tracking.trackers import TrackerRecipe, load_tracker_recipe, new_tracker


@dataclass(frozen=True)
class TracksConfig:
    data: str = option("", "folder of videos (searched recursively) or one video")
    out: str = option("runs/tracks", "output folder: <rel path>.csv per video plus tracks.json")
    detector: str = option("", "a .pt detector or an exported model folder (local path), or 'groundtruth'")
    tracker: str = option("bytetrack", "bytetrack | botsort | PATH.yaml (an ultralytics tracker recipe)")
    classes: tuple[int | str, ...] = option((), "keep these class ids or names, e.g. person,bicycle (empty: all)")
    min_score: float = option(0.1, "drop detections below this confidence (before tracking)")
    min_box: float = option(16.0, "drop detections whose shorter side is below this many pixels (before tracking)")
    min_track: int = option(8, "drop tracks with fewer boxes than this (after tracking)")
    imgsz: int = option(640, "detector input size (.pt models; static exports run at their export size)")
    stride: int = option(1, "detect and track every n-th frame only")
    max_frames: int = option(0, "process at most this many frames per video (0: all)")
    device: str = option("", "detector device: '' (ultralytics' choice), cpu, 0, cuda:0, ...")
    annotations: str = option("", "groundtruth: folder of <seq>.json (default: nearest annotations/ above each video)")
    jitter: float = option(0.0, "groundtruth: box noise, std as a fraction of the box size (0: exact boxes)")
    chunk: int = option(16, "frames decoded and detected at a time")
    cache_dir: str = option("", "index manifest folder (default $VIDSSL_CACHE_DIR or ~/.cache/vidssl)")


# Settings that change what is written: resuming into a folder made with other values is an error.
_OUTPUT_SETTINGS = ("class_ids", "min_score", "min_box", "min_track", "imgsz", "stride", "max_frames", "jitter")


@dataclass
class TracksResult:
    """What a run did; ``failed`` holds (rel path, reason)."""

    out: Path
    tracked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    tracks: int = 0
    rows: int = 0

    def summary(self) -> str:
        fps = self.frames / self.seconds if self.seconds else 0.0
        line = (
            f"tracked {len(self.tracked)} videos ({self.frames:,} frames, {fps:.1f} frames/s):"
            f" {self.tracks} tracks, {self.rows:,} boxes into {self.out}; {len(self.skipped)} already done"
        )
        if self.failed:
            names = ", ".join(f"{rel} ({why})" for rel, why in self.failed[:3])
            line += f"; {len(self.failed)} failed: {names}" + (" ..." if len(self.failed) > 3 else "")
        return shown(line)


def resolve_classes(classes: tuple[int | str, ...], names: dict[int, str]) -> frozenset[int] | None:
    """Class ids from ids and / or names (``"person,bicycle"`` is split at commas); None when empty.

    Raises:
        ConfigError: an id or name the detector does not have (the message lists its names).
    """
    items: list[int | str] = []
    for item in classes:
        if isinstance(item, str):
            items += [p.strip() for p in item.split(",") if p.strip()]
        else:
            items.append(item)
    if not items:
        return None
    by_name = {name: i for i, name in names.items()}
    ids = set()
    for item in items:
        if isinstance(item, str) and item.isdigit():
            item = int(item)
        if isinstance(item, int) and item in names:
            ids.add(item)
        elif isinstance(item, str) and item in by_name:
            ids.add(by_name[item])
        else:
            known = ", ".join(f"{i}={n}" for i, n in list(names.items())[:20]) + (" ..." if len(names) > 20 else "")
            raise ConfigError(f"classes: the detector has no class {item!r} (it has {known})")
    return frozenset(ids)


def _rel_path(path: str | Path, base: Path) -> str:
    """``path`` relative to the data root, posix; a file reached through a symlink that leads out of
    the root (the index stores resolved paths) keeps just its name."""
    try:
        return Path(path).resolve().relative_to(base).as_posix()
    except (ValueError, OSError, RuntimeError):  # outside the root, or a link loop (RuntimeError before 3.13)
        return Path(path).name


def _frame_chunks(num_frames: int, *, stride: int, max_frames: int, chunk: int) -> Iterator[list[int]]:
    indices = list(range(0, num_frames, stride))
    if max_frames > 0:
        indices = indices[:max_frames]
    for start in range(0, len(indices), chunk):
        yield indices[start : start + chunk]


def _to_boxes(detections: Detections, shape: tuple[int, int]) -> Any:
    from ultralytics.engine.results import Boxes

    data = np.concatenate([detections.boxes, detections.scores[:, None], detections.classes[:, None]], axis=1)
    return Boxes(data.astype(np.float32), shape)


@dataclass
class _VideoTracks:
    tracks: list[Track]
    num_frames: int
    height: int
    width: int
    fps: float
    frames_processed: int


def track_video(
    path: Path,
    rel: str,
    *,
    detector: Detector,
    recipe: TrackerRecipe,
    classes: frozenset[int] | None,
    cfg: TracksConfig,
    on_chunk: Any = None,
) -> _VideoTracks:
    """Detect and track one video; returns its tracks after the ``min_track`` filter.

    ``on_chunk(num_frames)`` is called after each chunk (progress reporting).

    Raises:
        VideoReadError: the video cannot be decoded. AnnotationError: ground truth is missing.
    """
    reader = open_video(path)
    tracker = new_tracker(recipe)
    # per track: lists of (frame, box, score, class)
    found: dict[int, list[tuple[int, np.ndarray, float, int]]] = {}
    processed = 0
    try:
        for indices in _frame_chunks(reader.num_frames, stride=cfg.stride, max_frames=cfg.max_frames, chunk=cfg.chunk):
            frames = reader.get_frames(indices)  # (T, H, W, 3) uint8 RGB
            detections = detector.detect(path, indices, frames)
            for index, frame, dets in zip(indices, frames, detections, strict=True):
                dets = filter_detections(dets, classes=classes, min_score=cfg.min_score, min_box=cfg.min_box)
                bgr = np.ascontiguousarray(frame[..., ::-1])  # BoT-SORT's motion compensation wants BGR
                rows = tracker.update(_to_boxes(dets, frame.shape[:2]), bgr)
                for row in rows.reshape(-1, 8):
                    det = int(row[7])
                    found.setdefault(int(row[4]), []).append(
                        (index, dets.boxes[det], float(dets.scores[det]), int(dets.classes[det]))
                    )
            processed += len(indices)
            if on_chunk is not None:
                on_chunk(len(indices))
    finally:
        reader.close()

    tracks = []
    for track_id, items in found.items():
        if len(items) < max(1, cfg.min_track):
            continue
        class_id = Counter(c for *_, c in items).most_common(1)[0][0]
        tracks.append(
            Track(
                video=rel,
                track_id=track_id,
                class_id=class_id,
                class_name=detector.names.get(class_id, str(class_id)),
                frames=np.array([f for f, *_ in items], np.int64),
                boxes=np.stack([b for _, b, _, _ in items]).astype(np.float32),
                scores=np.array([s for _, _, s, _ in items], np.float32),
            )
        )
    return _VideoTracks(tracks, reader.num_frames, reader.height, reader.width, reader.fps, processed)


def _settings(cfg: TracksConfig, classes: frozenset[int] | None) -> dict[str, Any]:
    settings = to_dict(cfg)
    settings["class_ids"] = sorted(classes) if classes is not None else None
    return settings


def _check_resume(previous: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    """Raise unless ``out``'s existing ``tracks.json`` was written with what ``new`` will write."""

    def facts(m: dict[str, Any]) -> dict[str, Any]:
        settings = m.get("settings", {})
        return {
            **{k: settings.get(k) for k in _OUTPUT_SETTINGS},
            "detector": m.get("detector"),
            "tracker": m.get("tracker", {}).get("settings"),  # not where the recipe file was found
            "data": m.get("data"),
        }

    old, now = facts(previous), facts(new)
    changed = [f"{k}: {old[k]!r} -> {now[k]!r}" for k in now if old[k] != now[k]]
    if changed:
        raise ConfigError(
            f"{out} holds tracks made with other settings ({'; '.join(changed)}): choose another out= or delete it"
        )


def track_folder(cfg: TracksConfig, *, progress: bool = True) -> TracksResult:
    """Run the detector and tracker over every video under ``cfg.data`` (module docstring).

    The detector, the tracker recipe and ``classes`` are all checked before any video is opened.

    Raises:
        ConfigError: missing data / detector, an unknown class, or resuming with other settings.
        FileNotFoundError: the data, the detector or the tracker recipe does not exist.
        ValueError: the detector is not a loadable detector.
    """
    if not cfg.data:
        raise ConfigError("tracks needs a folder of videos: vidssl tracks DATA out=DIR detector=PATH")
    if cfg.stride < 1 or cfg.chunk < 1:
        raise ConfigError("stride and chunk must be at least 1")
    recipe = load_tracker_recipe(cfg.tracker)
    detector = load_detector(cfg.detector, imgsz=cfg.imgsz, device=cfg.device, conf=cfg.min_score,
                             annotations=cfg.annotations or None, jitter=cfg.jitter)
    classes = resolve_classes(cfg.classes, detector.names)
    new_tracker(recipe)  # imports ultralytics and builds the tracker once, so a broken setup fails here

    root = Path(cfg.data).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    base = root.resolve() if root.is_dir() else root.resolve().parent
    index = scan(root, cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None, progress=progress)
    if index.videos and Path(index.videos[0].path) == base:  # DATA is itself a frame folder
        base = base.parent
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    settings = _settings(cfg, classes)
    manifest = {
        "version": MANIFEST_VERSION,
        "data": str(base),
        "detector": detector.describe(),
        "classes": {str(i): n for i, n in detector.names.items()},
        "tracker": {"name": recipe.name, "recipe": str(recipe.path.resolve()), "settings": recipe.settings},
        "settings": settings,
        "videos": {},
        "failed": {},
    }
    try:
        previous = read_manifest(out)
    except FileNotFoundError:
        previous = None
    if previous is not None:
        _check_resume(previous, manifest, out)
        manifest["videos"] = dict(previous.get("videos", {}))

    result = TracksResult(out=out)
    for path, why in index.unreadable:
        rel = _rel_path(path, base)
        result.failed.append((rel, why))
        manifest["failed"][rel] = why
    todo = []
    for info in index.videos:
        rel = _rel_path(info.path, base)
        if csv_path(out, rel).exists():
            result.skipped.append(rel)
            if rel not in manifest["videos"]:  # the run stopped between the CSV and tracks.json
                tracks = read_tracks_csv(csv_path(out, rel))
                manifest["videos"][rel] = {
                    "num_frames": info.num_frames, "width": info.width, "height": info.height, "fps": info.fps,
                    "tracks": len(tracks), "rows": sum(len(t) for t in tracks),
                }
        else:
            todo.append((info, rel))

    bar = tqdm(total=len(todo), desc=f"tracks {root.name}", unit="video", disable=not progress)
    counted = {"frames": 0}
    start = time.perf_counter()

    def on_chunk(n: int) -> None:
        counted["frames"] += n
        bar.set_postfix_str(f"{counted['frames'] / (time.perf_counter() - start):.1f} frames/s", refresh=True)

    for info, rel in todo:
        bar.set_description_str(f"tracks {shown(Path(rel).name)}")
        began = time.perf_counter()
        try:
            video = track_video(Path(info.path), rel, detector=detector, recipe=recipe, classes=classes, cfg=cfg,
                                on_chunk=on_chunk)
        except (VideoReadError, AnnotationError, OSError) as err:
            result.failed.append((rel, str(err)))
            manifest["failed"][rel] = str(err)
            bar.write(shown(f"skipped {rel}: {err}"))
            bar.update()
            write_manifest(out, manifest)
            continue
        seconds = time.perf_counter() - began
        rows = write_tracks_csv(csv_path(out, rel), video.tracks)
        manifest["failed"].pop(rel, None)
        manifest["videos"][rel] = {
            "num_frames": video.num_frames, "width": video.width, "height": video.height, "fps": video.fps,
            "frames_processed": video.frames_processed, "tracks": len(video.tracks), "rows": rows,
            "seconds": round(seconds, 3),
        }
        write_manifest(out, manifest)
        result.tracked.append(rel)
        result.frames += video.frames_processed
        result.seconds += seconds
        result.tracks += len(video.tracks)
        result.rows += rows
        bar.update()
    bar.close()
    write_manifest(out, manifest)
    return result
