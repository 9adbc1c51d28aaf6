"""DAVIS region similarity J and boundary F-measure of propagated masks.

J and F follow the official DAVIS 2017 evaluation (``davis2017-evaluation``: ``db_eval_iou`` and
``f_measure``; Perazzi et al. 2016, "A Benchmark Dataset and Evaluation Methodology for Video
Object Segmentation"):

- J = |pred & gt| / |pred | gt| per object and frame, 1 when both are empty.
- F = the F-measure of boundary precision and recall: boundaries are ``seg2bmap`` maps (a pixel
  differs from its right, lower or lower-right neighbour), matched within
  ``ceil(0.008 * image diagonal)`` pixels (a ``skimage.morphology.disk`` dilation). Empty
  boundaries in both give 1; an empty prediction against a non-empty truth gives 0.

PCK, the keypoint score, is in :mod:`vidssl.evaluation.jhmdb_metrics`.
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
