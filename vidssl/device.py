"""Which device a command runs on: the one rule every subcommand shares."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
    """``auto``: this process's CUDA device when CUDA is available, else the CPU. ``cuda`` means
    ``cuda:<local_rank>`` (one GPU per process under torchrun); ``cpu``, ``cuda:1`` and other
    torch device strings are taken as given.

    Raises:
        ValueError: a CUDA device was asked for on a machine without CUDA, or the name is not a
            device torch knows.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
    except RuntimeError as err:
        raise ValueError(f"device={name!r} is not a device (auto, cpu, cuda, cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available on this machine (use device=auto or cpu)")
    return device
