"""Atomic checkpoints that load without unpickling arbitrary objects, and survive faults.

A checkpoint is a dict of tensors, numbers, strings and plain containers written with
``torch.save`` to a temporary file in the same folder and moved into place with ``os.replace``
(:func:`vidssl.files.atomic_path`): a run killed mid-write keeps its previous checkpoint intact.
Loading uses ``weights_only=True``.

A run folder keeps two: ``checkpoints/last.pt`` and the one before it, ``checkpoints/previous.pt``
(:func:`keep_previous`, then :func:`save_checkpoint`). :func:`load_latest` reads the newest one that loads and
says loudly when it had to fall back, so one damaged file (a truncated copy, a bad sector) costs
``save_every`` steps, not the run. Free space is checked before writing, and a failed write is one
line naming the file and the cause (:class:`CheckpointWriteError`), never torch's
``inline_container.cc`` message.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from vidssl.models.encoders import Encoder

log = logging.getLogger(__name__)

MiB = 1 << 20


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions, ...); the previous one is kept."""


def state_bytes(state: Any) -> int:
    """Bytes of tensor data in a (nested) checkpoint dict: about what ``torch.save`` writes."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def is_intact(path: Path) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file: its zip directory reads and every member's
    CRC-32 matches (a truncated copy or a flipped bit fails). Reads the file once, without
    unpickling; just after a save it is in the page cache."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def keep_previous(path: Path, previous: Path) -> None:
    """Make ``previous`` hold what ``path`` holds now, before ``path`` is overwritten.

    A hard link (no copy, no space) made under a temporary name and moved over ``previous``: at
    every moment both names hold a complete checkpoint. Where the file system has no hard links,
    an atomic copy. A damaged ``path`` is never linked over ``previous``: after a resume that fell
    back to ``previous`` (``last`` damaged), ``previous`` is the only good checkpoint, and a kill
    during the next write of ``last`` would otherwise leave none."""
    from vidssl.files import atomic_path

    path, previous = Path(path), Path(previous)
    if not path.exists():
        return
    if not is_intact(path):
        log.warning("checkpoint: %s is damaged; keeping %s as the previous checkpoint", path, previous)
        return
    with atomic_path(previous) as tmp:
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`vidssl.files.atomic_path`); returns ``path``.
    (The trainer first keeps the one before with :func:`keep_previous`.)

    Raises:
        CheckpointWriteError: too little free space (checked first), or the write failed; the
            message names the file and the cause, and the checkpoints already on disk are intact.
    """
    from vidssl.files import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    need = state_bytes(state) + MiB  # pickled structure, zip headers
    free = _free_bytes(path.parent)
    if free is not None and free < need:
        raise CheckpointWriteError(
            f"{path}: not enough free space for the checkpoint (about {need / MiB:.0f} MiB needed, "
            f"{free / MiB:.0f} MiB free); the previous checkpoint is kept")
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as err:
        free = _free_bytes(path.parent)
        if getattr(err, "errno", None) == errno.ENOSPC or (free is not None and free < need):
            left = 0 if free is None else free / MiB
            cause = f"the disk is full ({left:.0f} MiB free, about {need / MiB:.0f} MiB needed)"
        else:
            cause = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'}"
        note = "; the previous checkpoint is kept" if path.exists() else ""
        raise CheckpointWriteError(f"{path}: could not write the checkpoint ({cause}){note}") from err
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


def load_latest(folder: Path, *, map_location: str | torch.device = "cpu",
                names: tuple[str, ...] = ("last.pt", "previous.pt")) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint of a ``checkpoints/`` folder and its path; None if it holds
    none. A damaged or missing ``last.pt`` falls back to ``previous.pt`` with a warning naming both.

    Raises:
        ValueError: checkpoints exist but none of them can be read (each one's cause named).
    """
    folder = Path(folder)
    errors: list[str] = []
    for name in names:
        path = folder / name
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path, map_location=map_location)
            if not isinstance(state, dict) or "model" not in state or "step" not in state:
                raise ValueError(f"{path}: not a vidssl training checkpoint (no model or step)")
        except ValueError as err:
            errors.append(str(err))
            continue
        if path.name != names[0]:
            lost = "; ".join(errors) if errors else f"{folder / names[0]} is missing"
            log.warning("checkpoint: %s; falling back to %s (step %s)", lost, path, state["step"])
        return state, path
    if errors:
        raise ValueError(f"{folder}: no readable checkpoint ({'; '.join(errors)})")
    return None


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
    from vidssl.models.encoders import check_weights, encoder_from_config

    path = Path(path)
    if path.is_dir():  # a run folder: its newest readable checkpoint
        found = load_latest(path / "checkpoints")
        if found is None:
            raise FileNotFoundError(f"{path}: no checkpoints/last.pt (not a run folder, or no checkpoint written yet)")
        state, path = found
    else:
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
        check_weights(weights, encoder.state_dict(), path)
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: the encoder weights do not fit {config['name']!r}: {err}") from err
    return encoder
