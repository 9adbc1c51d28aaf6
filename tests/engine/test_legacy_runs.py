"""Run folders written by release 0.1 (one flat config, prefixed method keys, ``method=track``)
resume with this release. The configs in tests/fixtures/legacy_runs were written by release 0.1's
trainer; the checkpoints are rebuilt here in 0.1's layout (flat ``config``, no ``encoder`` entry),
since their weights are tens of megabytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from vidssl.cli import main
from vidssl.engine.checkpoint import encoder_from_checkpoint, load_checkpoint, save_checkpoint
from vidssl.engine.config import from_dict
from vidssl.engine.trainer import train

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"


@pytest.fixture(scope="module")
def gt_tracks(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tracks")
    assert main(["tracks", str(synth_dir / "videos"), f"out={out}", "detector=groundtruth", "min_track=4", "min_box=4",
                 f"cache_dir={out / 'cache'}"]) == 0
    return out


def release_0_1_run(name: str, run: Path, synth_dir: Path, tracks: Path) -> dict:
    """A 2-step run folder laid out as release 0.1 wrote it; returns its flat config."""
    flat = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    flat.update(data=str(synth_dir / "videos"), out=str(run), steps=2, export=False)
    if flat.get("tracks"):
        flat["tracks"] = str(tracks)
    train(*from_dict(flat))  # this release's trainer makes weights of the same names and shapes
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    state["config"] = flat
    del state["encoder"]
    save_checkpoint(state, run / "checkpoints" / "last.pt")
    (run / "config.yaml").write_text(yaml.safe_dump(flat, sort_keys=False))
    return flat


@pytest.mark.parametrize("name", ["fti_moco", "track", "fti_tracks", "dino", "cpc", "colorization", "simclr"])
def test_a_release_0_1_run_folder_resumes(name, tmp_path, synth_dir, cache_dir, gt_tracks) -> None:
    run = tmp_path / name
    flat = release_0_1_run(name, run, synth_dir, gt_tracks)
    before = load_checkpoint(run / "checkpoints" / "last.pt")
    encoder = encoder_from_checkpoint(run)  # 0.1 checkpoints export too
    assert encoder.stride == (flat["encoder_stride"] or 32)
    assert main(["train", f"out={run}", "resume=true", "steps=3", "log_every=1"]) == 0
    after = load_checkpoint(run / "checkpoints" / "last.pt")
    assert before["step"] == 2 and after["step"] == 3
    assert sorted(after["model"]) == sorted(before["model"])
    moved = [k for k, v in before["model"].items() if v.is_floating_point() and not torch.equal(v, after["model"][k])]
    assert any(k.startswith("encoder.") for k in moved)
    saved = yaml.safe_load((run / "config.yaml").read_text())  # rewritten in this release's layout
    assert set(saved) == {"train", "method"} and saved["train"]["steps"] == 3
    upgraded = from_dict(flat)
    assert from_dict(saved)[1] == upgraded[1] and saved["train"]["method"] == upgraded[0].method
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 3


def test_release_0_1_keys_map_to_this_release() -> None:
    """The key map itself: prefixes dropped, FTI's shared keys moved to the methods that used them,
    ``temperature: null`` replaced by the default it meant, ``method=track`` as a pair source."""
    cfg = {name: from_dict(yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())) for name in
           ("dino", "fti_moco", "track", "fti_tracks", "cpc", "colorization", "simclr", "mocov2", "byol")}
    assert cfg["dino"][1].out_dim == 64 and cfg["dino"][1].local_crops == 2
    assert cfg["fti_moco"][1].loss == "moco" and cfg["fti_moco"][1].temperature == 0.2
    assert cfg["fti_moco"][1].queue_size == 8 and cfg["fti_moco"][1].positives == "frames"
    assert cfg["track"][0].method == "fti" and cfg["track"][1].positives == "tracks"
    assert cfg["fti_tracks"][1].positives == "both" and cfg["fti_tracks"][1].track_weight == 0.5
    assert cfg["cpc"][1].proj_dim == 16 and cfg["cpc"][1].temperature == 1.0 and cfg["cpc"][1].seq_len == 4
    assert cfg["colorization"][1].clusters == 16 and cfg["colorization"][0].encoder_stride == 8
    assert cfg["simclr"][1].temperature == 0.1 and cfg["simclr"][1].max_gap == 0
    assert cfg["mocov2"][1].temperature == 0.2 and cfg["mocov2"][1].max_gap == 0
    assert cfg["byol"][1].proj_hidden == 32 and cfg["byol"][1].max_gap == 0
