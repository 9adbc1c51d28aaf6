"""How well tracks follow the synthetic ground-truth identities (used by the tests and the
benchmark note): each track row is matched to the ground-truth box of the same frame with the
highest IoU (at least 0.5)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidssl.tracking import Track


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) and (M, 4), x1 y1 x2 y2 with exclusive x2 y2 -> (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter)


@dataclass
class Identity:
    rows: int  # track rows matched to a ground-truth box
    purity: float  # share of matched rows that belong to their track's dominant object
    coverage: float  # share of ground-truth (object, frame) boxes covered by the object's dominant track
    objects: int  # ground-truth objects seen
    single_track_objects: int  # objects whose dominant track covers >= 90% of the rows they got


def identity_scores(tracks: dict[str, list[Track]], annotations: Path) -> Identity:
    matched = dominant = 0
    covered = total_gt = 0
    objects = single = 0
    for rel, video_tracks in tracks.items():
        doc = json.loads((annotations / f"{Path(rel).stem}.json").read_text())
        gt = {f["index"]: f["boxes"] for f in doc["frames"]}
        per_object: dict[int, Counter] = {}
        for track in video_tracks:
            ids = []
            for frame, box in zip(track.frames, track.boxes, strict=True):
                boxes = gt.get(int(frame), [])
                if not boxes:
                    continue
                iou = box_iou(box[None], np.array([b["box"] for b in boxes], np.float32))[0]
                if iou.max() >= 0.5:
                    ids.append(boxes[int(iou.argmax())]["id"])
            if ids:
                counts = Counter(ids)
                matched += len(ids)
                dominant += counts.most_common(1)[0][1]
                for obj, n in counts.items():
                    per_object.setdefault(obj, Counter())[track.track_id] += n
        visible = Counter(b["id"] for boxes in gt.values() for b in boxes)
        for obj, frames in visible.items():
            objects += 1
            total_gt += frames
            by_track = per_object.get(obj, Counter())
            best = by_track.most_common(1)[0][1] if by_track else 0
            covered += best
            single += bool(by_track) and best >= 0.9 * sum(by_track.values())
    return Identity(matched, dominant / max(1, matched), covered / max(1, total_gt), objects, single)
