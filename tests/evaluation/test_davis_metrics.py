"""DAVIS J and F against straightforward reference computations written out with loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidssl.evaluation.davis_metrics import (
    boundary_f_measure,
    boundary_radius,
    region_similarity,
    seg2bmap,
)


def _reference_j(pred: np.ndarray, gt: np.ndarray) -> float:
    inter = union = 0
    for y in range(gt.shape[0]):
        for x in range(gt.shape[1]):
            inter += bool(pred[y, x]) and bool(gt[y, x])
            union += bool(pred[y, x]) or bool(gt[y, x])
    return 1.0 if union == 0 else inter / union


def _reference_boundary(mask: np.ndarray) -> np.ndarray:
    """A pixel is on the boundary when it differs from its right, lower or lower-right neighbour
    (neighbours outside the image count as 0, except that the last row / column only look right /
    down and the bottom-right corner is never a boundary): the DAVIS seg2bmap."""
    h, w = mask.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            v = bool(mask[y, x])
            right = bool(mask[y, x + 1]) if x + 1 < w else False
            down = bool(mask[y + 1, x]) if y + 1 < h else False
            diag = bool(mask[y + 1, x + 1]) if x + 1 < w and y + 1 < h else False
            if y == h - 1 and x == w - 1:
                out[y, x] = False
            elif y == h - 1:
                out[y, x] = v != right
            elif x == w - 1:
                out[y, x] = v != down
            else:
                out[y, x] = v != right or v != down or v != diag
    return out


def _reference_f(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """Boundary precision / recall by brute force: a boundary pixel matches when a boundary pixel
    of the other mask lies within the disk of ``radius`` (Euclidean distance <= radius)."""
    pb, gb = _reference_boundary(pred), _reference_boundary(gt)
    p_pts, g_pts = np.argwhere(pb), np.argwhere(gb)

    def matched(points, others) -> int:
        return sum(any(math.dist(p, o) <= radius for o in others) for p in points)

    if len(p_pts) == 0 or len(g_pts) == 0:
        precision = 0.0 if len(p_pts) and not len(g_pts) else 1.0
        recall = 0.0 if len(g_pts) and not len(p_pts) else 1.0
    else:
        precision, recall = matched(p_pts, g_pts) / len(p_pts), matched(g_pts, p_pts) / len(g_pts)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _masks() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    gt = np.zeros((40, 50), bool)
    gt[8:30, 10:35] = True
    shifted = np.roll(gt, (3, 4), axis=(0, 1))
    blob = np.zeros_like(gt)
    yy, xx = np.mgrid[:40, :50]
    blob[(yy - 20) ** 2 + (xx - 25) ** 2 < 120] = True
    far = np.zeros_like(gt)
    far[0:5, 40:50] = True  # touches the image border
    noisy = gt ^ (rng.random(gt.shape) < 0.05)
    return [(shifted, gt), (blob, gt), (far, gt), (noisy, gt), (gt, far)]


@pytest.mark.parametrize("case", range(5))
def test_j_and_f_agree_with_loop_references(case: int) -> None:
    pred, gt = _masks()[case]
    assert region_similarity(pred, gt) == pytest.approx(_reference_j(pred, gt), abs=1e-12)
    assert np.array_equal(seg2bmap(pred), _reference_boundary(pred))
    radius = boundary_radius(*gt.shape)
    assert radius == math.ceil(0.008 * math.hypot(40, 50)) == 1
    assert boundary_f_measure(pred, gt) == pytest.approx(_reference_f(pred, gt, radius), abs=1e-12)
    # A wider tolerance (bound_th >= 1 is in pixels) matches the brute force too.
    assert boundary_f_measure(pred, gt, bound_th=3) == pytest.approx(_reference_f(pred, gt, 3), abs=1e-12)


def test_perfect_and_empty_predictions() -> None:
    _, gt = _masks()[0]
    empty = np.zeros_like(gt)
    assert region_similarity(gt, gt) == 1.0 and boundary_f_measure(gt, gt) == 1.0
    assert region_similarity(empty, gt) == 0.0 and boundary_f_measure(empty, gt) == 0.0
    assert region_similarity(gt, empty) == 0.0 and boundary_f_measure(gt, empty) == 0.0
    # An object absent from both truth and prediction counts as perfect (the official code's rule).
    assert region_similarity(empty, empty) == 1.0 and boundary_f_measure(empty, empty) == 1.0


def test_boundary_tolerance_of_davis_480p() -> None:
    assert boundary_radius(480, 854) == 8  # ceil(0.008 * 979.6)
