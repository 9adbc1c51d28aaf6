"""PCK against CRW's eval_pck.py written out the way it is there."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidssl.evaluation.jhmdb_metrics import joint_distances, pck


def _reference_pck(pred: np.ndarray, gt: np.ndarray, alpha: float) -> float:
    """CRW's eval_pck.py, for one clip of one person, written out the way it is there."""
    per_joint: dict[int, list[float]] = {j: [] for j in range(gt.shape[1])}
    for k in range(1, gt.shape[0]):
        xs, ys = gt[k, :, 0], gt[k, :, 1]
        box = 0.6 * math.dist((xs.max(), ys.max()), (xs.min(), ys.min()))
        for j in range(gt.shape[1]):
            per_joint[j].append(math.dist(pred[k, j], gt[k, j]) / box)
    return float(np.mean([np.mean(np.array(d) <= alpha) for d in per_joint.values()]))


def test_pck_of_perfect_prediction_is_one_and_matches_the_reference() -> None:
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 200, (6, 15, 2))
    groups = ("person",) * 15
    perfect = joint_distances(gt, gt, groups)
    assert np.isnan(perfect[0]).all()  # the given first frame is not scored
    assert pck(perfect, 0.1) == 1.0 and pck(perfect, 0.2) == 1.0
    noisy = gt + rng.normal(0, 12, gt.shape)
    distances = joint_distances(noisy, gt, groups)
    for alpha in (0.1, 0.2):
        assert pck(distances, alpha) == pytest.approx(_reference_pck(noisy, gt, alpha))
    assert 0 < pck(distances, 0.1) < pck(distances, 0.2) < 1


def test_pck_leaves_out_joints_without_prediction_and_boxes_each_instance() -> None:
    gt = np.array([[[0, 0], [10, 0], [100, 100], [100, 150]]] * 2, dtype=float)
    pred = gt.copy()
    pred[1, 0] = np.nan  # lost joint: not scored
    pred[1, 3] += [0, 5]  # 5 px off in a box of diagonal 50 (its own instance): 5 / 30 > 0.1
    distances = joint_distances(pred, gt, ("a", "a", "b", "b"))
    assert np.isnan(distances[1, 0])
    assert distances[1, 3] == pytest.approx(5 / (0.6 * 50))
    # Instance "a" keeps one scored joint: its box is a point, so none of its joints is scored.
    assert np.isnan(distances[1, 1])
    assert pck(distances, 0.1) == pytest.approx(np.mean([1.0, 0.0]))
