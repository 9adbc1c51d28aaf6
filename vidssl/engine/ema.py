"""Exponential moving averages of modules (MoCo key encoders, BYOL targets, DINO teachers).

A method declares its EMA copies (:meth:`vidssl.methods.base.Method.ema`); the trainer updates them
after every optimizer step with :func:`ema_update`, on the momentum schedule the method names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vidssl.engine.schedules import MomentumSchedule


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
