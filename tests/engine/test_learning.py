"""Evidence that FTI learns: after a short CPU run, augmented frames retrieve other frames of
their own video better than with the same encoder at its random initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vidssl.data.backends import open_video
from vidssl.data.synth import SynthConfig, generate
from vidssl.data.transforms import center_crop, normalize, simclr_augment
from vidssl.engine.trainer import run_config, train
from vidssl.export import load_encoder
from vidssl.models.encoders import build_encoder

SIZE = 64


def retrieval_set(videos: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every 2nd frame of every video, once as a SimCLR-augmented query and once centre-cropped
    as a database entry: (queries, database) uint8 (N, 3, 64, 64), video ids, frame indices."""
    torch.manual_seed(123)
    augment, plain = simclr_augment(SIZE), center_crop(SIZE)
    queries, database, video_ids, times = [], [], [], []
    for v, path in enumerate(sorted(videos.glob("*.mp4"))):
        reader = open_video(path)
        indices = list(range(0, reader.num_frames, 2))
        for t, frame in zip(indices, torch.from_numpy(reader.get_frames(indices)).permute(0, 3, 1, 2), strict=True):
            queries.append(augment(frame))
            database.append(plain(frame))
            video_ids.append(v)
            times.append(t)
    return torch.stack(queries), torch.stack(database), torch.tensor(video_ids), torch.tensor(times)


@torch.no_grad()
def video_retrieval(encoder: torch.nn.Module, data: tuple[torch.Tensor, ...], *, exclude: int = 4) -> float:
    """Top-1 accuracy: the nearest database frame (cosine) comes from the query's video, frames
    within ``exclude`` of the query's own frame being left out (no near-duplicate matches)."""
    queries, database, video_ids, times = data
    encoder.eval()
    sim = F.normalize(encoder(normalize(queries)), dim=1) @ F.normalize(encoder(normalize(database)), dim=1).T
    near = (video_ids[:, None] == video_ids[None, :]) & ((times[:, None] - times[None, :]).abs() < exclude)
    sim[near] = -2
    return (video_ids[sim.argmax(1)] == video_ids).float().mean().item()


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
