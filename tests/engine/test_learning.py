"""Evidence that FTI learns: after a short CPU run, augmented frames retrieve other frames of
their own video better than with the same encoder at its random initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from testdata import SIZE, retrieval_set, video_retrieval

from vidssl.data.synth import SynthConfig, generate
from vidssl.engine.trainer import run_config, train
from vidssl.export import load_encoder
from vidssl.models.encoders import build_encoder


@pytest.mark.slow
def test_fti_beats_random_init_on_video_retrieval(tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "synth"
    generate(data, SynthConfig(num_videos=8, num_frames=48, height=128, width=160, seed=5), progress=False)
    cfg, method_cfg = run_config(
        data=str(data / "videos"), out=str(tmp_path / "run"), method="fti", encoder="resnet18", steps=60, batch_size=16,
        image_size=SIZE, decode_size=72, max_gap=12, workers=2, proj_hidden=256, optimizer="adamw", lr=1e-3,
        weight_decay=1e-6, warmup_steps=5, log_every=10, save_every=1000)
    out = train(cfg, method_cfg)
    retrieval = retrieval_set(data / "videos")
    trained = video_retrieval(load_encoder(out / "encoder.safetensors"), retrieval)
    torch.manual_seed(cfg.seed)  # the very initialisation the run started from
    random_init = video_retrieval(build_encoder("resnet18"), retrieval)
    print(f"\nvideo retrieval top-1 ({len(retrieval[0])} augmented queries): FTI {trained:.3f}, "
          f"random init {random_init:.3f}, margin {trained - random_init:+.3f}")
    assert trained > random_init + 0.05
