"""Checks on the real data in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testdata import SHARED

from vidssl.evaluation.davis import score_sequence, summarize
from vidssl.evaluation.davis_metrics import boundary_f_measure, region_similarity
from vidssl.propagation.keypoints import read_keypoints
from vidssl.propagation.masks import read_mask

# The official davis2017-evaluation on "copy the first mask to every frame" (../shared/data/README.md).
ORACLE = {"blackswan": (0.5450, 0.3340), "kite-surf": (0.1333, 0.3264)}


def _davis() -> Path:
    root = SHARED / "davis2016"
    if not root.is_dir():
        pytest.skip("../shared/data is absent")
    return root


@pytest.mark.shared
def test_j_and_f_reproduce_the_official_evaluation() -> None:
    root = _davis()
    per_sequence = {}
    for name, (want_j, want_f) in ORACLE.items():
        masks = sorted((root / "Annotations" / "480p" / name).glob("*.png"))
        first = read_mask(masks[0])
        j, f = {1: []}, {1: []}
        for path in masks[1:-1]:  # first and last frames are not scored
            gt = read_mask(path)
            j[1].append(region_similarity(first == 1, gt == 1))
            f[1].append(boundary_f_measure(first == 1, gt == 1))
        per_sequence[name] = score_sequence(j, f)
        assert per_sequence[name]["J"] == pytest.approx(want_j, abs=1e-4)
        assert per_sequence[name]["F"] == pytest.approx(want_f, abs=1e-4)
    means = summarize(per_sequence)
    assert means["J"] == pytest.approx(np.mean([j for j, _ in ORACLE.values()]), abs=1e-4)


@pytest.mark.shared
def test_jhmdb_clip_reads_as_fifteen_zero_based_joints() -> None:
    mats = sorted((SHARED / "jhmdb" / "joint_positions").glob("*/*/joint_positions.mat"))
    if not mats:
        pytest.skip("../shared/data is absent")
    points = read_keypoints(mats[0])
    assert points.xy.shape == (40, 15, 2) and points.names[0] == "neck"
    from scipy.io import loadmat

    np.testing.assert_allclose(points.xy[0, :, 0], loadmat(str(mats[0]))["pos_img"][0, :, 0] - 1)
