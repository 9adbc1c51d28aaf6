"""Which encoder an evaluation runs: an exported file, a training run, or a random baseline.

    resolve_encoder("runs/fti")                     # a run folder: its checkpoints/last.pt
    resolve_encoder("runs/fti/encoder.safetensors") # an exported encoder (vidssl export)
    resolve_encoder("random:resnet18")              # random initialisation (seeded), a baseline
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def resolve_encoder(spec: str, *, seed: int = 0, stride: int | None = None) -> nn.Module:
    """The encoder named by ``spec`` (see module docstring), in eval mode on the CPU.

    Raises:
        FileNotFoundError: ``spec`` is neither ``random:NAME`` nor an existing path.
    """
    from vidssl.models.encoders import build_encoder

    if spec.startswith("random:"):
        torch.manual_seed(seed)
        return build_encoder(spec.removeprefix("random:"), stride=stride).eval()
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such encoder file or run folder (or use random:NAME)")
    if path.is_dir() or path.suffix == ".pt":
        from vidssl.engine.checkpoint import encoder_from_checkpoint

        return encoder_from_checkpoint(path).eval()
    from vidssl.export import load_encoder

    return load_encoder(path).eval()
