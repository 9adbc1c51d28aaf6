"""Per-step schedules of the training loop: the learning rate.

Schedules are values of the step alone (never state), so a resumed run continues on the same curve.
The EMA momentum schedule lives with the EMA (:func:`vidssl.ema.momentum_at`): methods name it.
"""

from __future__ import annotations

import math

import numpy as np


def cosine_schedule(base: float, final: float, steps: int, *, warmup_steps: int = 0, start: float = 0.0) -> np.ndarray:
    """Per-step values: linear warmup from ``start`` to ``base``, then cosine to ``final``."""
    warmup_steps = min(warmup_steps, steps)
    warm = np.linspace(start, base, warmup_steps, endpoint=False)
    t = np.arange(steps - warmup_steps) / max(1, steps - warmup_steps)
    cos = final + 0.5 * (base - final) * (1 + np.cos(math.pi * t))
    return np.concatenate([warm, cos])
