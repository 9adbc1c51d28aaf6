"""Every registered method trains one step through the real loop: a finite loss, the shared
encoder's weights move, its options are recorded, and the encoder exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.trainer import train, train_config
from vidssl.methods import METHODS
from vidssl.models.encoders import build_encoder

TINY = dict(encoder="resnet18", batch_size=2, image_size=48, decode_size=56, workers=0, lr=0.05, log_every=1,
            save_every=1, proj_hidden=32, proj_dim=16, queue_size=8, optimizer="sgd")
# Only what the tiny synthetic set (24 frames per video) or a one-step run needs.
OVERRIDES: dict[str, dict] = {
    "cpc": dict(seq_len=4, seq_stride=2, pred_steps=2),
    "colorization": dict(kmeans_samples=2, num_refs=2, ref_stride=2),
    "dino": dict(dino_out_dim=64, dino_hidden=32, dino_bottleneck=16, dino_local_crops=2),
    "byol": dict(byol_proj_hidden=32, byol_proj_dim=16, byol_pred_hidden=32),
    "simsiam": dict(simsiam_proj_dim=32, simsiam_pred_hidden=16),
    "jigsaw": dict(jigsaw_permutations=10, jigsaw_tile_dim=16, jigsaw_hidden=32),
    "relpatch": dict(relpatch_hidden=32),
}


@pytest.fixture(scope="module")
def ground_truth_tracks(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vidssl.cli import main

    out = tmp_path_factory.mktemp("tracks")
    assert main(["tracks", str(synth_dir / "videos"), f"out={out}", "detector=groundtruth", "min_track=4", "min_box=4",
                 f"cache_dir={out / 'cache'}"]) == 0
    return out


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_a_step(name, synth_dir, tmp_path, cache_dir, ground_truth_tracks) -> None:
    extra = dict(OVERRIDES.get(name, {}))
    if name == "track":
        extra["tracks"] = str(ground_truth_tracks)
    cfg = train_config(method=name, data=str(synth_dir / "videos"), out=str(tmp_path / name), steps=1, **TINY, **extra)
    run = train(cfg)
    (log,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert torch.isfinite(torch.tensor(log["loss"])), log
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert all(state["config"][k] == v for k, v in extra.items())
    torch.manual_seed(cfg.seed)  # the trainer's initial encoder
    initial = build_encoder(cfg.encoder, stride=cfg.encoder_stride).state_dict()
    moved = [k for k, v in initial.items() if v.is_floating_point() and not torch.equal(v, state["model"][f"encoder.{k}"])]
    assert moved, f"{name}: no encoder weight changed in one step"
    assert (run / "encoder.safetensors").exists()
