"""The loader's pinned-memory path, run on the CPU with a fake pin and a fake transfer.

On CUDA the data pipeline (vidssl.data.pipeline) builds its DataLoader with ``pin_memory=True``
(a pinning thread copies each
batch from the workers into page-locked memory) and moves every batch tensor with
``non_blocking=True``. Without an accelerator PyTorch turns pinning off, so here the accelerator
is declared present, ``Tensor.pin_memory`` is a fake that records the tensors it "pins" (a copy),
and ``Tensor.to`` records how each of them is moved: the real loader code (workers, the pinning
thread, its queues) runs, and the test sees what reaches the training step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vidssl.data.pipeline as pipeline
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.trainer import run_config, train

TINY = dict(encoder="resnet18", batch_size=2, image_size=32, decode_size=40, lr=0.01, log_every=1, save_every=10,
            export=False, proj_hidden=32, proj_dim=16, queue_size=8, steps=3, device="cpu")


def test_pinned_batches_reach_the_step_through_non_blocking_copies(tmp_path: Path, synth_dir: Path,
                                                                   cache_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = str(synth_dir / "videos")
    plain = train(*run_config(data=data, out=str(tmp_path / "plain"), workers=2, **TINY))

    asked: list[bool] = []
    real_loader = pipeline.DataLoader

    def pinning_loader(*args, **kwargs):
        asked.append(kwargs["pin_memory"])
        return real_loader(*args, **{**kwargs, "pin_memory": True})

    pinned: dict[int, torch.Tensor] = {}  # data_ptr -> the "pinned" copy (kept alive: its pointer stays unique)
    moved: list[tuple[tuple, bool]] = []
    real_to = torch.Tensor.to

    def fake_pin(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        copy = self.clone()
        pinned[copy.data_ptr()] = copy
        return copy

    def recording_to(self: torch.Tensor, *args, **kwargs):
        if self.data_ptr() in pinned:
            moved.append((tuple(self.shape), kwargs.get("non_blocking", False)))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(pipeline, "DataLoader", pinning_loader)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: torch.device("cuda"))
    monkeypatch.setattr(torch.accelerator, "current_device_index", lambda: 0)
    monkeypatch.setattr(torch.accelerator, "set_device_index", lambda index: None)
    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    run = train(*run_config(data=data, out=str(tmp_path / "pinned"), workers=2, **TINY))

    assert asked == [False]  # on the CPU the trainer itself never asks for pinning (it would warn)
    frames = [shape for shape, _ in moved if len(shape) == 5]
    assert len(frames) == TINY["steps"] and frames[0][:2] == (2, 2), moved  # each step's (B, 2, 3, H, W) pairs
    assert all(non_blocking for _, non_blocking in moved), moved  # every pinned tensor moved asynchronously
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (plain, run))
    for key in a:  # pinning changes where batches live, not what they hold
        assert torch.equal(a[key], b[key]), key
