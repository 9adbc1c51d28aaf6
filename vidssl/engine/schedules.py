"""Per-step schedules: the learning rate and the momentum of EMA targets.

Schedules are values of the step alone (never state), so a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

MomentumSchedule = Literal["constant", "cosine"]


def cosine_schedule(base: float, final: float, steps: int, *, warmup_steps: int = 0, start: float = 0.0) -> np.ndarray:
    """Per-step values: linear warmup from ``start`` to ``base``, then cosine to ``final``."""
    warmup_steps = min(warmup_steps, steps)
    warm = np.linspace(start, base, warmup_steps, endpoint=False)
    t = np.arange(steps - warmup_steps) / max(1, steps - warmup_steps)
    cos = final + 0.5 * (base - final) * (1 + np.cos(math.pi * t))
    return np.concatenate([warm, cos])


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL / DINO target momentum after ``step`` of ``total_steps``: ``base`` at 0, 1 at the end,
    ``1 - (1 - base) (cos(pi step / total) + 1) / 2`` (BYOL, 2020, arXiv:2006.07733, Sec. 3.2)."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2


def momentum_at(base: float, schedule: MomentumSchedule, step: int, total_steps: int) -> float:
    """The EMA momentum of ``step``: ``base`` throughout (MoCo) or :func:`cosine_momentum` (BYOL, DINO)."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return cosine_momentum(base, step, total_steps)
    raise ValueError(f"unknown momentum schedule {schedule!r}: constant or cosine")
