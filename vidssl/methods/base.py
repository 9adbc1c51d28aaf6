"""What every method is: an encoder plus heads that turn a batch into a loss.

Methods receive a built encoder (composition, not inheritance: at most this one base class).
Each step returns a :class:`StepOutput`. State that must survive a resume (queues, EMA copies,
centres) lives in the method as parameters or buffers, so the checkpoint's ``state_dict`` holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from vidssl.data.samplers import Sampler

SampleTransform = Callable[[torch.Tensor], "torch.Tensor | dict[str, torch.Tensor]"]
"""uint8 (T, 3, H, W) decoded frames -> uint8 (V, 3, h, w) views, or a dict of such tensors
(e.g. DINO's ``{"frames": global crops, "local": local crops}``)."""

DatasetFactory = Callable[..., Dataset]
"""Called with the keyword arguments of :class:`vidssl.data.datasets.VideoFrameDataset`
(``videos, sampler, backend, size, transform, consistent, samples_per_epoch, seed``)."""


@dataclass
class StepOutput:
    """The loss to minimise and scalars worth logging."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """What a method needs from the loader.

    Attributes:
        sampler: which frames of a video make one sample.
        consistent: the augmentation is drawn once per sample and shared by its frames (CPC,
            colorization) rather than drawn per frame (FTI pairs).
        transform: replaces the default augmentation (random resized crop to ``image_size``,
            flip, then colour): for views that are not a crop of each frame (multi-crop, tiles).
            It runs in the loader workers with torch's RNG seeded per sample, and does its own
            colour augmentation if it wants any.
        color: with the default transform, apply SimCLR colour augmentation (jitter, grayscale,
            blur), in the workers or batched on the device (``color_on``). Off for methods whose
            target is the colour itself (colorization).
        dataset: builds the dataset instead of :class:`~vidssl.data.datasets.VideoFrameDataset`
            (object-track crops); gets the same keyword arguments.

    Every uint8 tensor (B, V, 3, H, W) in a batch is moved to the device and normalized by the
    trainer, whatever its key; the method receives float (B, V, 3, H, W).
    """

    sampler: Sampler
    consistent: bool = False
    transform: SampleTransform | None = None
    color: bool = True
    dataset: DatasetFactory | None = None


class Method(nn.Module):
    """Base class: ``encoder`` is the shared image encoder that export writes out."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        """``batch["frames"]``: float (B, T, 3, H, W), ImageNet-normalized, on the training device
        (other image keys a custom ``DataSpec.transform`` or dataset adds arrive the same way)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> StepOutput:
        """So that DistributedDataParallel (which hooks ``forward``) sees every step."""
        return self.training_step(batch)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step (EMA / momentum updates); nothing by default."""

    @torch.no_grad()
    def prepare(self, dataset: Dataset) -> None:
        """Called once before the first step of a fresh run (not on resume: the checkpoint holds
        whatever this computes) with the training dataset, e.g. to fit colour clusters on a sample
        of frames. Every DDP rank calls it on the same samples, so the results agree. Nothing by
        default."""


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for parameters; buffers copied."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o.detach(), 1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)
