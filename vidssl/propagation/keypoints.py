"""Keypoints as propagation labels: files in and out, Gaussian heatmaps, peaks.

    points = read_keypoints(Path("joint_positions.mat"))   # JHMDB, or a JSON file (formats below)
    maps = heatmaps(points.xy[0], points.visible[0], (h, w), stride=8, sigma=0.5)  # (J, h, w)
    xy, score = peaks(soft, stride=8)                        # (J, 2) pixels, (J,) peak values

Joints travel as one heatmap each, a Gaussian of ``sigma`` feature cells around the joint drawn
on the feature grid and cut to zero beyond 3 sigma, as CRW draws them (CRW, 2020,
arXiv:2006.14613, after UVC, Li et al. 2019, arXiv:1909.11895); a propagated joint is the mean
position of its heatmap's ``topk`` largest cells weighted by their values (CRW takes 3).

Coordinates are 0-based pixels with pixel centres at integers (x right, y down). Feature cell
``(i, j)`` is centred at pixel ``((j + 0.5) * stride - 0.5, (i + 0.5) * stride - 0.5)``.

JSON formats read by :func:`read_keypoints` (written by :func:`write_keypoints`: the first)::

    {"names": [...], "groups": [...], "frames": [{"index": 0, "keypoints": [[x, y, v], ...]}, ...]}
    {"keypoints": [[x, y], ...]}  or  [[x, y, v], ...]           one frame
    a ``vidssl synth`` annotations/<seq>.json                       5 keypoints per object

``v`` is 1 for a visible joint and 0 otherwise (optional; default 1). ``groups`` names the
instance (person, object) each joint belongs to; PCK's reference size is per instance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidssl.files import atomic_write_json

JHMDB_JOINTS = (
    "neck", "belly", "face", "right shoulder", "left shoulder", "right hip", "left hip", "right elbow",
    "left elbow", "right knee", "left knee", "right wrist", "left wrist", "right ankle", "left ankle",
)
"""The 15 joints of JHMDB's ``joint_positions.mat`` (the puppet model of Jhuang et al. 2013), in file order."""

JHMDB_SKELETON = ((0, 1), (0, 2), (0, 3), (0, 4), (1, 5), (1, 6), (3, 7), (4, 8), (5, 9), (6, 10), (7, 11),
                  (8, 12), (9, 13), (10, 14))
"""Bones between :data:`JHMDB_JOINTS` (indices), for drawing."""


@dataclass(frozen=True)
class Keypoints:
    """Keypoints of T frames."""

    xy: np.ndarray  # (T, J, 2) float64 pixel coordinates
    visible: np.ndarray  # (T, J) bool
    names: tuple[str, ...]  # J joint names
    groups: tuple[str, ...]  # J instance names: joints of one person / object share one

    def __post_init__(self) -> None:
        if self.xy.ndim != 3 or self.xy.shape[2] != 2 or self.visible.shape != self.xy.shape[:2]:
            raise ValueError(
                f"keypoints must be (T, J, 2) with visibility (T, J); got {self.xy.shape}, {self.visible.shape}"
            )
        if not len(self.names) == len(self.groups) == self.xy.shape[1]:
            raise ValueError(f"{self.xy.shape[1]} joints but {len(self.names)} names and {len(self.groups)} groups")


def read_jhmdb_mat(path: Path) -> Keypoints:
    """JHMDB ``joint_positions.mat``: ``pos_img`` is (2, 15, T) in MATLAB's 1-based pixel
    coordinates, so 1 is subtracted (as CRW's and UVC's evaluation code do). Every joint counts as
    visible: JHMDB annotates all 15 in every frame (some lie outside the image)."""
    from scipy.io import loadmat

    try:
        pos = np.asarray(loadmat(str(path))["pos_img"], dtype=np.float64)
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a JHMDB joint_positions.mat with pos_img ({err})") from err
    if pos.ndim != 3 or pos.shape[0] != 2:
        raise ValueError(f"{path}: pos_img should be (2, joints, frames), got {pos.shape}")
    xy = pos.transpose(2, 1, 0) - 1
    names = JHMDB_JOINTS if xy.shape[1] == len(JHMDB_JOINTS) else tuple(str(j) for j in range(xy.shape[1]))
    return Keypoints(xy=xy, visible=np.ones(xy.shape[:2], bool), names=names, groups=("person",) * xy.shape[1])


def _frame_points(path: Path, points: object) -> tuple[np.ndarray, np.ndarray]:
    """One frame's rows [x, y] or [x, y, v] (null coordinates allowed) -> (J, 2) xy, (J,) visible."""
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) in (2, 3) for p in points):
        raise ValueError(f"{path}: keypoints must be a list of [x, y] or [x, y, visible]")
    rows = np.array([[np.nan if v is None else v for v in p] + [1] * (3 - len(p)) for p in points], dtype=np.float64)
    return rows[:, :2], (rows[:, 2] > 0) & np.isfinite(rows[:, :2]).all(axis=1)


def _read_json(path: Path) -> Keypoints:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    synth = isinstance(doc, dict) and "objects" in doc and doc.get("frames")
    if synth and isinstance(doc["frames"][0].get("keypoints"), dict):
        ids = [str(o["id"]) for o in doc["objects"]]  # a vidssl synth annotation
        per_frame = [[p for i in ids for p in frame["keypoints"][i]] for frame in doc["frames"]]
        counts = [len(doc["frames"][0]["keypoints"][i]) for i in ids]
        names = tuple(f"{i}/{k}" for i, n in zip(ids, counts, strict=True) for k in range(n))
        groups = tuple(i for i, n in zip(ids, counts, strict=True) for _ in range(n))
    elif isinstance(doc, dict) and "frames" in doc:
        per_frame = [frame["keypoints"] for frame in doc["frames"]]
        names = tuple(doc.get("names") or (str(j) for j in range(len(per_frame[0]))))
        groups = tuple(doc.get("groups") or ("0",) * len(names))
    elif isinstance(doc, dict) and "keypoints" in doc:
        per_frame = [doc["keypoints"]]
        names = tuple(doc.get("names") or (str(j) for j in range(len(per_frame[0]))))
        groups = tuple(doc.get("groups") or ("0",) * len(names))
    elif isinstance(doc, list):
        per_frame, names = [doc], tuple(str(j) for j in range(len(doc)))
        groups = ("0",) * len(names)
    else:
        raise ValueError(f"{path}: unknown keypoint JSON (see vidssl.propagation.keypoints for the formats)")
    if not per_frame or not per_frame[0]:
        raise ValueError(f"{path}: no keypoints in the first frame")
    frames = [_frame_points(path, points) for points in per_frame]
    if len({len(xy) for xy, _ in frames}) != 1:
        raise ValueError(f"{path}: frames hold different numbers of keypoints")
    return Keypoints(xy=np.stack([xy for xy, _ in frames]), visible=np.stack([v for _, v in frames]),
                     names=names, groups=groups)


def read_keypoints(path: Path) -> Keypoints:
    """Keypoints from a JHMDB ``.mat`` or a JSON file (module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is none of the formats (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such keypoint file")
    if path.suffix.lower() == ".mat":
        return read_jhmdb_mat(path)
    return _read_json(path)


def write_keypoints(path: Path, points: Keypoints, *, scores: np.ndarray | None = None,
                    size: tuple[int, int] | None = None) -> None:
    """Write ``points`` as JSON (the first format of the module docstring), atomically.

    ``scores`` (T, J) adds each frame's ``scores`` (propagated heatmap peaks); ``size`` (H, W)
    records the frame size. Coordinates that are not finite are written as null.
    """
    path = Path(path)
    frames = []
    for t in range(points.xy.shape[0]):
        rows = [[_num(x), _num(y), int(v)] for (x, y), v in zip(points.xy[t], points.visible[t], strict=True)]
        frame: dict[str, object] = {"index": t, "keypoints": rows}
        if scores is not None:
            frame["scores"] = [round(float(s), 4) for s in scores[t]]
        frames.append(frame)
    doc: dict[str, object] = {"names": list(points.names), "groups": list(points.groups)}
    if size is not None:
        doc |= {"height": int(size[0]), "width": int(size[1])}
    doc["frames"] = frames
    atomic_write_json(path, doc, indent=None)


def _num(value: float) -> float | None:
    return round(float(value), 3) if np.isfinite(value) else None


def to_grid_coords(xy: np.ndarray, stride: float) -> np.ndarray:
    """Pixel coordinates (..., 2) -> feature-grid coordinates (cell centres at integers)."""
    return (xy + 0.5) / stride - 0.5


def to_pixel_coords(uv: np.ndarray, stride: float) -> np.ndarray:
    """Feature-grid coordinates (..., 2) -> pixel coordinates (inverse of :func:`to_grid_coords`)."""
    return (uv + 0.5) * stride - 0.5


def heatmaps(
    xy: np.ndarray, visible: np.ndarray, grid: tuple[int, int], *, stride: float, sigma: float
) -> torch.Tensor:
    """One Gaussian heatmap per joint on the feature grid.

    Args:
        xy: (J, 2) pixel coordinates of the frame the encoder sees.
        visible: (J,) joints to draw; the others (and non-finite ones) get an empty map.
        grid: (h, w) feature grid.
        stride: pixels per cell.
        sigma: Gaussian standard deviation in cells; values beyond 3 sigma are 0.

    Returns:
        (J, h, w) float32, peak 1 at a joint's own position (less when it falls between cells).
    """
    uv = torch.from_numpy(to_grid_coords(np.asarray(xy, dtype=np.float64), stride)).float()
    rows = torch.arange(grid[0], dtype=torch.float32)[:, None]
    cols = torch.arange(grid[1], dtype=torch.float32)[None, :]
    d2 = (cols[None] - uv[:, 0, None, None]) ** 2 + (rows[None] - uv[:, 1, None, None]) ** 2  # (J, h, w)
    maps = torch.exp(-d2 / (2 * sigma**2)) * (d2 <= (3 * sigma) ** 2)
    keep = torch.from_numpy(np.asarray(visible, bool) & np.isfinite(xy).all(axis=1))
    return torch.nan_to_num(maps) * keep[:, None, None]


def peaks(soft: torch.Tensor, *, stride: float, topk: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions from propagated heatmaps.

    Args:
        soft: (J, h, w) heatmaps.
        stride: pixels per cell (of the frame the encoder saw).
        topk: the position is the mean of the ``topk`` largest cells weighted by their values
            (CRW's ``process_pose`` takes 3; 1 is the plain argmax).

    Returns:
        (J, 2) pixel coordinates (NaN for an empty heatmap) and (J,) the largest value of each map.
    """
    flat = soft.float().flatten(1)
    values, index = flat.topk(min(topk, flat.shape[1]), dim=1)
    total = values.sum(dim=1, keepdim=True)
    weights = values / total.clamp_min(1e-12)
    uv = torch.stack([(index % soft.shape[2]).float(), (index // soft.shape[2]).float()], dim=-1)  # (J, k, 2)
    mean = (uv * weights[..., None]).sum(dim=1)
    mean[total[:, 0] <= 0] = float("nan")
    return to_pixel_coords(mean.cpu().numpy().astype(np.float64), stride), values[:, 0].cpu().numpy()
