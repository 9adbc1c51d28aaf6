"""PCK of propagated keypoints, as CRW's and UVC's JHMDB evaluation computes it.

``eval_pck.py`` of ajabri/videowalk and Liusifei/UVC (CRW, 2020, arXiv:2006.14613; UVC, Li et al.
2019, arXiv:1909.11895): a joint is correct when its distance to the truth is at most ``alpha *
0.6 * the diagonal of the bounding box of that frame's ground-truth joints`` (one box per person);
first frames (given) are not scored, joints without a prediction are left out, and PCK@alpha is
the mean over joint types of each type's fraction of correct joints.
"""

from __future__ import annotations

import numpy as np


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
