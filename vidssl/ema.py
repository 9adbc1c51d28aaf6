"""Exponential moving averages of modules (MoCo key encoders, BYOL targets, DINO teachers).

A method declares its EMA copies (:meth:`vidssl.methods.base.Method.ema`); the trainer updates them
after every optimizer step with :func:`ema_update`, on the momentum schedule the method names
(:func:`momentum_at`). This module sits below both: methods declare, the engine updates, neither
imports the other for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

MomentumSchedule = Literal["constant", "cosine"]


@dataclass(frozen=True)
class EMA:
    """EMA copies a method keeps.

    Attributes:
        pairs: ``(target, online)`` modules of identical structure; ``target`` follows ``online``.
        momentum: the base momentum (the share of the target kept per step).
        schedule: ``constant`` (MoCo) or ``cosine`` from ``momentum`` to 1 over the run (BYOL, DINO).
    """

    pairs: Sequence[tuple[nn.Module, nn.Module]]
    momentum: float
    schedule: MomentumSchedule = "constant"


@torch.no_grad()
def ema_update(pairs: Sequence[tuple[nn.Module, nn.Module]], momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for every parameter of every pair,
    in one fused ``torch._foreach_lerp_``; buffers (BatchNorm statistics) are copied."""
    targets: list[torch.Tensor] = []
    onlines: list[torch.Tensor] = []
    target_buffers: list[torch.Tensor] = []
    online_buffers: list[torch.Tensor] = []
    for target, online in pairs:
        targets += list(target.parameters())
        onlines += [p.detach() for p in online.parameters()]
        target_buffers += list(target.buffers())
        online_buffers += list(online.buffers())
    if len(targets) != len(onlines) or len(target_buffers) != len(online_buffers):
        raise ValueError("EMA pairs must have the same parameters and buffers")
    if targets:
        torch._foreach_lerp_(targets, onlines, 1.0 - momentum)
    if target_buffers:
        torch._foreach_copy_(target_buffers, online_buffers)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL / DINO target momentum after ``step`` of ``total_steps``: ``base`` at 0, 1 at the end,
    ``1 - (1 - base) (cos(pi step / total) + 1) / 2`` (BYOL, 2020, arXiv:2006.07733, Sec. 3.2)."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2


def momentum_at(base: float, schedule: MomentumSchedule, step: int, total_steps: int) -> float:
    """The EMA momentum of ``step``: ``base`` throughout (MoCo) or :func:`cosine_momentum` (BYOL, DINO).
    A value of the step alone (never state), so a resumed run continues on the same curve."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return cosine_momentum(base, step, total_steps)
    raise ValueError(f"unknown momentum schedule {schedule!r}: constant or cosine")
