"""Every method under the CUDA defaults, emulated on the CPU: bf16 autocast and channels_last.

On CUDA the trainer runs the step under ``torch.autocast(dtype=torch.bfloat16)`` and converts the
method to channels_last (``amp=true``, ``channels_last=true``); on the CPU it does neither. A
method that mixes dtypes (a float32 queue or centre against bf16 features) or views a
channels_last feature map as if it were contiguous fails only on the GPU. Both are turned on here
for the CPU, which supports bf16 autocast and channels_last convolutions too, and each method
takes two steps through the real loop.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import vidssl.engine.trainer as trainer
from vidssl.engine.trainer import run_config, train
from vidssl.methods import METHODS

TINY = dict(encoder="resnet18", batch_size=2, image_size=48, decode_size=56, workers=0, lr=0.01, log_every=1,
            save_every=10, export=False, steps=2, device="cpu")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_steps_under_bf16_autocast_and_channels_last(name, synth_dir: Path, tmp_path: Path,
                                                                  cache_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_autocast, real_build = torch.autocast, trainer.build_run
    autocast_on: list[bool] = []
    channels_last: list[bool] = []

    def cpu_autocast(device_type: str, dtype=None, enabled: bool = True, **kwargs):
        if dtype != torch.bfloat16:  # a method's own region (e.g. a loss kept in float32): as it asks
            return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)
        autocast_on.append(device_type == "cpu")  # the trainer's step: on, as on CUDA
        return real_autocast(device_type, dtype=dtype, enabled=True, **kwargs)

    def build_channels_last(*args, **kwargs):
        method, optimizer = real_build(*args, **kwargs)
        method.to(memory_format=torch.channels_last)  # what build_run does on CUDA
        conv = next(m for m in method.encoder.modules() if isinstance(m, torch.nn.Conv2d))
        channels_last.append(conv.weight.is_contiguous(memory_format=torch.channels_last))
        return method, optimizer

    monkeypatch.setattr(torch, "autocast", cpu_autocast)
    monkeypatch.setattr(trainer, "build_run", build_channels_last)
    run = train(*run_config(method=name, data=str(synth_dir / "videos"), out=str(tmp_path / name), **TINY,
                            **METHODS[name].smoke()))
    assert autocast_on and all(autocast_on) and channels_last == [True]
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
