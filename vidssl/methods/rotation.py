"""Rotation prediction (RotNet: Gidaris, Singh & Komodakis, 2018, arXiv:1803.07728).

Every image of the batch is shown at all four rotations (0, 90, 180, 270 degrees, counter-
clockwise as :func:`torch.rot90`) and a classifier on the pooled encoder output predicts which;
the paper found feeding all four rotations of each image in one batch better than sampling one.

Defaults from the paper: the usual random crop and flip, no colour augmentation (``color=False``),
and a linear classifier on the globally pooled last features (RotNet's NIN head; ``hidden > 0``
adds a hidden layer). Nothing depends on the pixel size, so there is no scaling rule. Frames
are images: each of the T frames of a sample is rotated and classified on its own; the default data
is one frame per sample, (B, 1, 3, S, S), which the encoder sees as 4B images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vidssl.config import option
from vidssl.data.samplers import ClipSampler
from vidssl.data.spec import DataSpec
from vidssl.methods.base import Method, StepOutput
from vidssl.models.encoders import Encoder
from vidssl.models.heads import projection_mlp

NUM_ROTATIONS = 4


def rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image, and their labels.

    Args:
        images: (N, C, S, S) square images.

    Returns:
        views: (4N, C, S, S), ``views[k * N + i] == torch.rot90(images[i], k, dims=(-2, -1))``;
        labels: int64 (4N,), ``k`` for those rows.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images (rotating by 90 degrees swaps H and W), got "
                         f"{tuple(images.shape[-2:])}")
    views = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=images.device).repeat_interleave(len(images))
    return views, labels


class Rotation(Method):
    """RotNet: a 4-way rotation classifier on the pooled encoder output.

    Config: ``hidden``, the hidden width of the classifier; 0 makes it linear (RotNet's NIN head).
    """

    @dataclass(frozen=True)
    class Config:
        hidden: int = option(0, "hidden width of the rotation classifier (0: linear, RotNet's NIN head)")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        hidden = self.cfg.hidden
        self.head = projection_mlp(encoder.out_dim, hidden, NUM_ROTATIONS, num_layers=2 if hidden else 1)

    def data(self) -> DataSpec:
        """One frame per sample, random crop and flip, no colour jitter."""
        return DataSpec(ClipSampler(length=1), color=False)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        """``batch["frames"]``: (B, T, 3, S, S); the encoder sees 4BT images."""
        views, labels = rotations(self.normalize(batch["frames"].flatten(0, 1)))
        logits = self.head(self.encoder(views)).float()
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return StepOutput(loss, {"loss": loss.item(), "acc": acc.item()})
