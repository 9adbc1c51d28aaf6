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

    ``stride`` (None: as built or saved) rebuilds a loaded encoder at another output stride with
    the same weights (:func:`with_stride`): dense tasks read stride-8 maps of an encoder trained
    or exported at stride 32.

    Raises:
        FileNotFoundError: ``spec`` is neither ``random:NAME`` nor an existing path.
        ValueError: the architecture has no such stride (e.g. a ViT's is its patch size).
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

        encoder = encoder_from_checkpoint(path)
    else:
        from vidssl.export import load_encoder

        encoder = load_encoder(path)
    return (encoder if stride is None else with_stride(encoder, stride)).eval()


def with_stride(encoder: nn.Module, stride: int) -> nn.Module:
    """``encoder`` rebuilt at output ``stride`` with its own weights (itself when it already has it).

    Changing a ResNet's stride only changes conv strides (and dilations), never a parameter's
    shape, so the state_dict loads strictly into the rebuilt network (CRW, 2020,
    arXiv:2006.14613, evaluates its stride-32-trained ResNet at stride 8 this way).
    """
    from vidssl.models.encoders import build_encoder

    if encoder.stride == stride:
        return encoder
    config = encoder.config
    rebuilt = build_encoder(config["name"], stride=stride, in_chans=config["in_chans"], **config["kwargs"])
    rebuilt.load_state_dict(encoder.state_dict(), strict=True)
    return rebuilt
