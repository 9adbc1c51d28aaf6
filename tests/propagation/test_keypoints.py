"""Keypoint files (JSON, JHMDB .mat) and heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from vidssl.propagation.keypoints import (
    JHMDB_JOINTS,
    Keypoints,
    heatmaps,
    peaks,
    read_keypoints,
    to_grid_coords,
    write_keypoints,
)


def test_json_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xy = np.round(rng.uniform(0, 300, (4, 6, 2)), 3)
    visible = rng.random((4, 6)) > 0.3
    xy[~visible] = np.nan  # written as null, read back as not visible
    points = Keypoints(xy=xy, visible=visible, names=tuple("abcdef"), groups=("p", "p", "p", "q", "q", "q"))
    write_keypoints(tmp_path / "k.json", points, scores=rng.random((4, 6)), size=(240, 320))
    back = read_keypoints(tmp_path / "k.json")
    assert back.names == points.names and back.groups == points.groups
    assert np.array_equal(back.visible, visible)
    np.testing.assert_allclose(back.xy[visible], xy[visible])
    doc = json.loads((tmp_path / "k.json").read_text())
    assert doc["height"] == 240 and len(doc["frames"][0]["scores"]) == 6


def test_single_frame_json_forms(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(json.dumps([[1, 2], [3.5, 4, 0]]))
    (tmp_path / "dict.json").write_text(json.dumps({"keypoints": [[1, 2, 1]], "names": ["nose"]}))
    listed = read_keypoints(tmp_path / "list.json")
    assert listed.xy.shape == (1, 2, 2) and listed.visible.tolist() == [[True, False]]
    assert read_keypoints(tmp_path / "dict.json").names == ("nose",)
    (tmp_path / "bad.json").write_text(json.dumps({"points": []}))
    with pytest.raises(ValueError, match="bad.json"):
        read_keypoints(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_keypoints(tmp_path / "missing.json")


def test_mat_round_trip_is_one_based(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 320, (7, 15, 2))  # 0-based, (T, J, 2)
    savemat(tmp_path / "joint_positions.mat", {"pos_img": xy.transpose(2, 1, 0) + 1})  # JHMDB: (2, 15, T), 1-based
    points = read_keypoints(tmp_path / "joint_positions.mat")
    np.testing.assert_allclose(points.xy, xy)
    assert points.names == JHMDB_JOINTS and points.visible.all()
    savemat(tmp_path / "other.mat", {"something": np.zeros(3)})
    with pytest.raises(ValueError, match="other.mat"):
        read_keypoints(tmp_path / "other.mat")


def test_synth_annotation_json(synth_dir: Path) -> None:
    points = read_keypoints(synth_dir / "annotations" / "synth_000.json")
    doc = json.loads((synth_dir / "annotations" / "synth_000.json").read_text())
    objects = [str(o["id"]) for o in doc["objects"]]
    assert points.xy.shape == (doc["num_frames"], 5 * len(objects), 2)
    assert points.groups[:5] == (objects[0],) * 5 and points.names[0] == f"{objects[0]}/0"
    first = doc["frames"][0]["keypoints"][objects[0]][0]
    np.testing.assert_allclose(points.xy[0, 0], first[:2])


def test_heatmap_peak_returns_the_joint() -> None:
    # A cell centre, a point between cells, a point outside the frame.
    xy = np.array([[20.0 * 8 + 3.5, 5.0 * 8 + 3.5], [12.25, 30.0], [-100.0, 5.0]])
    maps = heatmaps(xy, np.array([True, True, True]), (12, 25), stride=8, sigma=0.5)
    assert maps.shape == (3, 12, 25) and maps[0, 5, 20] == 1.0 and maps[2].sum() == 0
    assert torch.count_nonzero(maps[0]) == 9  # 3 sigma = 1.5 cells: the 3 x 3 neighbourhood
    found, score = peaks(maps, stride=8, topk=1)
    np.testing.assert_allclose(found[0], xy[0])
    assert np.isnan(found[2]).all() and score[2] == 0
    # Between cells, CRW's top-3 weighted mean lands within a cell of the joint.
    found3, _ = peaks(maps, stride=8, topk=3)
    assert np.abs(to_grid_coords(found3[1], 8) - to_grid_coords(xy[1], 8)).max() < 1
