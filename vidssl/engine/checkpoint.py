"""Atomic checkpoints that load without unpickling arbitrary objects.

A checkpoint is a dict of tensors, numbers, strings and plain containers written with
``torch.save`` to a temporary file in the same folder and moved into place with ``os.replace``:
a run killed mid-write keeps its previous checkpoint intact. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from vidssl.models.encoders import Encoder


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`vidssl.files.atomic_path`); returns ``path``."""
    from vidssl.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
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


def encoder_from_checkpoint(path: Path) -> Encoder:
    """The encoder of a training run (a run folder or a checkpoint file), weights loaded strictly.

    The architecture comes from, in order:

    * ``state["encoder"]``: the encoder's own ``encoder.config`` (what the trainer stores from
      release 0.2 on, the same dict :func:`vidssl.export.save_encoder` writes);
    * ``state["config"]["train"]``: ``encoder`` (registry name) and ``encoder_stride``, for a
      checkpoint with the split config but no ``encoder`` entry;
    * ``state["config"]``: the flat config of release 0.1 with ``encoder`` and ``encoder_stride``
      (None: the architecture's own stride).

    The weights are ``state["model"]``'s ``encoder.*`` entries (the method's trunk; EMA copies
    live under other names).

    Raises:
        FileNotFoundError: no such file (or run folder without ``checkpoints/last.pt``).
        ValueError: not a vidssl training checkpoint, or weights that do not fit the architecture.
    """
    from vidssl.models.encoders import encoder_from_config

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    if "model" not in state or ("encoder" not in state and "config" not in state):
        raise ValueError(f"{path}: not a vidssl training checkpoint (no model, or no encoder / config)")
    if isinstance(state.get("encoder"), dict):
        config = state["encoder"]
    else:
        train = state["config"].get("train", state["config"])  # split config, or release 0.1's flat one
        if "encoder" not in train:
            raise ValueError(f"{path}: the checkpoint's config names no encoder")
        config = {"name": train["encoder"], "stride": train.get("encoder_stride")}
    encoder = encoder_from_config(config)
    weights = {k.removeprefix("encoder."): v for k, v in state["model"].items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: the encoder weights do not fit {config['name']!r}: {err}") from err
    return encoder
