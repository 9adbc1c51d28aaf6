"""Scores of propagated labels: DAVIS region J and boundary F, and PCK for keypoints.

J and F follow the official DAVIS 2017 evaluation (``davis2017-evaluation``: ``db_eval_iou`` and
``f_measure``; Perazzi et al. 2016, "A Benchmark Dataset and Evaluation Methodology for Video
Object Segmentation"):

- J = |pred & gt| / |pred | gt| per object and frame, 1 when both are empty.
- F = the F-measure of boundary precision and recall: boundaries are ``seg2bmap`` maps (a pixel
  differs from its right, lower or lower-right neighbour), matched within
  ``ceil(0.008 * image diagonal)`` pixels (a ``skimage.morphology.disk`` dilation). Empty
  boundaries in both give 1; an empty prediction against a non-empty truth gives 0.

PCK follows CRW's and UVC's JHMDB evaluation (``eval_pck.py`` of both repositories): a joint is
correct when its distance to the truth is at most ``alpha * 0.6 * the diagonal of the bounding
box of that frame's ground-truth joints`` (one box per person); first frames (given) are not
scored, joints without a prediction are left out, and PCK@alpha is the mean over joint types of
each type's fraction of correct joints.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

BOUND_TH = 0.008  # DAVIS boundary tolerance, a fraction of the image diagonal


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: intersection over union of two (H, W) boolean masks; 1.0 when both are empty."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool one-pixel-wide boundary, offset half a pixel towards the origin
    (Martin et al.'s ``seg2bmap`` as the DAVIS code has it): a pixel is on the boundary when it
    differs from its right, lower or lower-right neighbour; the last row compares only to the
    right, the last column only downwards, and the corner pixel is never a boundary."""
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


@lru_cache(maxsize=16)
def _disk(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(radius).astype(np.uint8)


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Matching tolerance in pixels: ``ceil(bound_th * diagonal)`` (``bound_th >= 1``: pixels)."""
    return int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(height, width))


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, *, bound_th: float = BOUND_TH) -> float:
    """F: boundary F-measure of two (H, W) boolean masks (module docstring)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    pred_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    n_pred, n_gt = np.count_nonzero(pred_b), np.count_nonzero(gt_b)
    if n_pred == 0 or n_gt == 0:
        precision = 0.0 if n_pred and not n_gt else 1.0
        recall = 0.0 if n_gt and not n_pred else 1.0
    else:
        disk = _disk(boundary_radius(*pred.shape, bound_th))
        pred_dil = cv2.dilate(pred_b.astype(np.uint8), disk).astype(bool)
        gt_dil = cv2.dilate(gt_b.astype(np.uint8), disk).astype(bool)
        precision = np.count_nonzero(pred_b & gt_dil) / n_pred
        recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def pck_reference(gt: np.ndarray, valid: np.ndarray | None = None) -> float:
    """CRW / UVC's JHMDB reference size of one person in one frame: 0.6 times the diagonal of
    the bounding box of its (valid) ground-truth joints (J, 2); NaN without any."""
    points = gt if valid is None else gt[valid]
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        return float("nan")
    return 0.6 * float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))


def joint_distances(
    pred: np.ndarray, gt: np.ndarray, groups: tuple[str, ...], *, skip_first: bool = True
) -> np.ndarray:
    """Normalized distances of predicted joints (T, J, 2) to the truth (T, J, 2).

    Each distance is divided by :func:`pck_reference` of its group (person / object) in that
    frame, the box taken over the group's joints that have a prediction (as CRW's code does).
    Frame 0 is NaN with ``skip_first`` (it was given), as are joints without a prediction or truth.

    Returns:
        (T, J) float64.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} differ in shape")
    scored = np.isfinite(pred).all(axis=2) & np.isfinite(gt).all(axis=2)
    out = np.full(pred.shape[:2], np.nan)
    members = {g: np.array([i for i, h in enumerate(groups) if h == g]) for g in dict.fromkeys(groups)}
    for t in range(1 if skip_first else 0, pred.shape[0]):
        for index in members.values():
            ok = scored[t, index]
            reference = pck_reference(gt[t, index], ok)
            if not np.isfinite(reference) or reference <= 0:
                continue
            d = np.linalg.norm(pred[t, index] - gt[t, index], axis=1) / reference
            out[t, index[ok]] = d[ok]
    return out


def pck(distances: np.ndarray, alpha: float) -> float:
    """PCK@alpha of normalized distances (N, J) (rows: frames of any clips; NaN = not scored):
    the mean over joint types of the fraction with distance <= alpha (types never scored are
    left out)."""
    scored = np.isfinite(distances)
    per_joint = [np.mean(distances[scored[:, j], j] <= alpha) for j in range(distances.shape[1]) if scored[:, j].any()]
    return float(np.mean(per_joint)) if per_joint else float("nan")
