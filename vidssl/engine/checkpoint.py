"""Atomic checkpoints that load without unpickling arbitrary objects.

A checkpoint is a dict of tensors, numbers, strings and plain containers written with
``torch.save`` to a temporary file in the same folder and moved into place with ``os.replace``:
a run killed mid-write keeps its previous checkpoint intact. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged or foreign files
        raise ValueError(f"{path}: not a vidssl checkpoint ({type(err).__name__}: {err})") from err


def encoder_from_checkpoint(path: Path) -> torch.nn.Module:
    """The encoder of a training run (a run folder or a checkpoint file), weights loaded."""
    from vidssl.models.encoders import build_encoder

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    if "config" not in state or "model" not in state:
        raise ValueError(f"{path}: not a vidssl training checkpoint (no config / model)")
    cfg = state["config"]
    encoder = build_encoder(cfg["encoder"], stride=cfg.get("encoder_stride", 32))
    weights = {k.removeprefix("encoder."): v for k, v in state["model"].items() if k.startswith("encoder.")}
    encoder.load_state_dict(weights)
    return encoder
