"""What every method is: an encoder plus heads that turn a batch into a loss.

Methods receive a built encoder (composition, not inheritance: at most this one base class).
Each step returns a :class:`StepOutput`. State that must survive a resume (queues, EMA copies,
centres) lives in the method as parameters or buffers, so the checkpoint's ``state_dict`` holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vidssl.data.samplers import Sampler


@dataclass
class StepOutput:
    """The loss to minimise and scalars worth logging."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """What a method needs from the loader: which frames, and whether augmentation is shared
    across a sample's frames (``consistent``) or drawn per frame."""

    sampler: Sampler
    consistent: bool = False


class Method(nn.Module):
    """Base class: ``encoder`` is the shared image encoder that export writes out."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        """``batch["frames"]``: float (B, T, 3, H, W), normalized, on the training device."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> StepOutput:
        """So that DistributedDataParallel (which hooks ``forward``) sees every step."""
        return self.training_step(batch)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step (EMA / momentum updates); nothing by default."""


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for parameters; buffers copied."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o.detach(), 1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)
