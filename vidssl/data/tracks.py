"""The tracks folder format: what ``vidssl tracks`` writes (:mod:`vidssl.tracking.run`) and what
track-pair training reads (:mod:`vidssl.data.pairs`). It lives in the data layer, below both, so
data never imports tracking; :mod:`vidssl.tracking` re-exports the reader.

Layout of ``OUT/`` for a data folder ``ROOT``::

    OUT/<rel path>.csv     one per video at ROOT/<rel path> (sub-folders mirrored), e.g. OUT/sub/a.mp4.csv
    OUT/tracks.json        what ran (detector, tracker, every filter setting, data root) and per video
                           its size, frame count, fps, number of tracks and rows

Each CSV has a header and one row per (track, frame) in which the track has a box::

    video,frame,track_id,class_id,class_name,score,x1,y1,x2,y2
    sub/a.mp4,0,1,0,person,0.8731,12.50,40.00,88.25,230.75

* ``video``: the rel path (posix separators), the same for every row of a file;
* ``frame``: 0-based frame index into the video (with ``stride`` > 1 only every n-th frame occurs);
* ``track_id``: positive int, unique within the video (ids from the tracker: not contiguous);
* ``class_id`` / ``class_name``: the detector's class, constant within a track (majority vote over
  the track's detections);
* ``score``: that frame's detection confidence (1.0 for ground truth);
* ``x1, y1, x2, y2``: that frame's detection box in pixels of the video's native resolution,
  ``(x1, y1)`` inclusive top-left corner, ``(x2, y2)`` exclusive bottom-right corner (floats).

Rows are sorted by ``track_id`` then ``frame``. A video in which no track survived the filters has
a CSV with the header only. ``tracks.json`` (``version`` 1)::

    {"version": 1, "data": "/abs/ROOT", "detector": {...}, "classes": {"0": "person", ...},
     "tracker": {"name": "bytetrack", "recipe": "/abs/trackers/bytetrack.yaml", "settings": {...}},
     "settings": {"classes": [...], "min_score": 0.1, "min_box": 16.0, "min_track": 8, "imgsz": 640,
                  "stride": 1, "max_frames": 0, ...},
     "videos": {"sub/a.mp4": {"num_frames": 250, "width": 640, "height": 272, "fps": 25.0,
                              "frames_processed": 250, "tracks": 7, "rows": 1203, "seconds": 12.3}},
     "failed": {"broken.mp4": "reason"}}

    tracks = read_tracks("runs/tracks")          # {"sub/a.mp4": [Track, ...], ...}
    t = tracks["sub/a.mp4"][0]
    t.frames, t.boxes, t.scores                  # (L,), (L, 4), (L,)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidssl.files import atomic_write_text

MANIFEST = "tracks.json"
MANIFEST_VERSION = 1
COLUMNS = ("video", "frame", "track_id", "class_id", "class_name", "score", "x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class Track:
    """One object track of one video.

    Attributes:
        video: the video's path relative to the data root (posix), as in ``tracks.json``.
        track_id: unique within the video.
        class_id, class_name: the detector's class (constant over the track).
        frames: (L,) int64 frame indices, increasing.
        boxes: (L, 4) float32 ``x1, y1, x2, y2`` pixels of the native resolution, x2 / y2 exclusive.
        scores: (L,) float32 detection confidences.
    """

    video: str
    track_id: int
    class_id: int
    class_name: str
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def csv_path(out: Path, rel: str) -> Path:
    """``OUT/<rel path>.csv`` for the video at ``<data root>/<rel path>``."""
    return Path(out) / f"{rel}.csv"


def write_tracks_csv(path: Path, tracks: Iterable[Track]) -> int:
    """Write ``tracks`` (one video's) as a tracks CSV atomically; returns the number of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = 0
    for track in sorted(tracks, key=lambda t: t.track_id):
        for frame, box, score in zip(track.frames, track.boxes, track.scores, strict=True):
            writer.writerow(
                [track.video, int(frame), track.track_id, track.class_id, track.class_name, f"{score:.4f}",
                 *(f"{v:.2f}" for v in box)]
            )
            rows += 1
    atomic_write_text(path, buffer.getvalue())
    return rows


def read_tracks_csv(path: str | Path) -> list[Track]:
    """The tracks of one CSV, sorted by track id.

    Raises:
        ValueError: the file's header is not :data:`COLUMNS`.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header != COLUMNS:
            raise ValueError(f"{path}: not a tracks CSV (header {','.join(header)!r})")
        grouped: dict[int, list[list[str]]] = {}
        for row in reader:
            grouped.setdefault(int(row[2]), []).append(row)
    tracks = []
    for track_id in sorted(grouped):
        rows = sorted(grouped[track_id], key=lambda r: int(r[1]))
        first = rows[0]
        tracks.append(
            Track(
                video=first[0],
                track_id=track_id,
                class_id=int(first[3]),
                class_name=first[4],
                frames=np.array([int(r[1]) for r in rows], np.int64),
                boxes=np.array([[float(v) for v in r[6:10]] for r in rows], np.float32).reshape(-1, 4),
                scores=np.array([float(r[5]) for r in rows], np.float32),
            )
        )
    return tracks


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The ``tracks.json`` of a tracks folder (schema in the module docstring).

    Raises:
        FileNotFoundError: ``out`` holds no ``tracks.json``.
    """
    file = Path(out) / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f"{out}: no {MANIFEST} (not a folder written by 'vidssl tracks')")
    return json.loads(file.read_text())


def write_manifest(out: str | Path, manifest: dict[str, Any]) -> None:
    """Write ``tracks.json`` atomically."""
    atomic_write_text(Path(out) / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def read_tracks(out: str | Path, *, min_length: int = 1) -> dict[str, list[Track]]:
    """Every track of a tracks folder written by ``vidssl tracks``.

    Args:
        out: the folder holding ``tracks.json`` and the CSVs.
        min_length: leave out tracks with fewer rows (frames with a box) than this.

    Returns:
        {video rel path: its tracks sorted by id} for every finished video listed in
        ``tracks.json`` (in sorted order; a video with no track maps to an empty list). The video
        file is ``Path(read_manifest(out)["data"]) / rel``.
    """
    manifest = read_manifest(out)
    return {
        rel: [t for t in read_tracks_csv(csv_path(Path(out), rel)) if len(t) >= min_length]
        for rel in sorted(manifest.get("videos", {}))
    }
