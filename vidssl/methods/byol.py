"""BYOL: Bootstrap Your Own Latent (Grill et al., BYOL, 2020, arXiv:2006.07733).

An online network (encoder, projector, predictor) predicts the projection that a target network
(encoder, projector: an exponential moving average of the online ones, never trained by gradient)
gives for another view of the same image. Loss: ``2 - 2 cos(q, sg(z'))`` for each view predicting
the other, summed (the paper's ``L + L~``, Eq. 2), so it lies in [0, 8].

Defaults follow the paper (Sec. 3.3 and App. B, C):
    projector and predictor: Linear 4096 - BN - ReLU - Linear 256   ``byol_proj_hidden``,
        ``byol_proj_dim``, ``byol_pred_hidden``
    target EMA: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, tau_base 0.996 -> 1
        ``byol_momentum``
    views: random resized crop (scale 0.08-1, bicubic) + flip, colour jitter 0.4/0.4/0.2/0.1 with
        p 0.8, grayscale p 0.2, Gaussian blur p 1.0 / 0.1 and solarization p 0 / 0.2 for the
        first / second view (App. B, Table 6)  ``byol_augment=byol``
Optimisation is the trainer's: the paper used LARS, lr 0.2 * B / 256, weight decay 1.5e-6,
10 warm-up epochs, cosine decay, batch 4096 -> ``optimizer=lars lr=<0.2*B/256> weight_decay=1.5e-6
warmup_steps=<10 epochs> min_lr=0`` (the trainer's defaults are SGD, lr 0.05, weight decay 1e-4;
note ``lr`` is the peak per-step rate, not scaled by batch). LARS-excluded biases and norms follow
the trainer's parameter groups. The shared ``proj_hidden`` / ``proj_dim`` keys (SimCLR's head) are
not used.

``byol_augment=simclr`` uses the trainer's default symmetric augmentation instead (SimCLR recipe,
blur p 0.5, no solarization), whose colour half runs batched on the GPU: faster end to end when
the loader workers are the bottleneck, at the cost of the paper's asymmetry.

Every frame of a video (or image of an image folder) is an image: one frame is sampled and both
views are cut from it. The collapse monitor ``embed_std`` (:func:`~vidssl.losses.similarity.embedding_std`
of the online projections; ``embed_std_ratio`` = that * sqrt(d), about 1 when healthy, 0 when
collapsed) is logged every step.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torchvision.transforms import v2

from vidssl.config import option
from vidssl.data.samplers import ClipSampler, PairSampler
from vidssl.losses.similarity import embedding_std, normalized_mse
from vidssl.methods.base import DataSpec, Method, StepOutput, ema_update
from vidssl.models.heads import projection_mlp


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL / DINO target momentum after ``step`` of ``total_steps``: ``base`` at 0, 1 at the end,
    ``1 - (1 - base) (cos(pi step / total) + 1) / 2`` (BYOL, 2020, arXiv:2006.07733, Sec. 3.2)."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2


def byol_view(
    size: int, *, blur: float, solarize: float, scale: tuple[float, float] = (0.08, 1.0)
) -> v2.Transform:
    """One of BYOL's view augmentations on uint8 (..., 3, H, W) (BYOL, 2020, App. B, Table 6;
    reused by DINO): random resized crop (bicubic) to ``size`` and flip, colour jitter
    0.4/0.4/0.2/0.1 with p 0.8, grayscale p 0.2, Gaussian blur (sigma 0.1-2, kernel ~10% of the
    crop: 23 px at 224) with p ``blur``, solarization (threshold 128) with p ``solarize``."""
    kernel = 2 * (size // 20) + 1
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur),
            v2.RandomSolarize(128, p=solarize),
        ]
    )


class BYOLViews:
    """uint8 (T, 3, H, W) frames -> uint8 (2, 3, size, size): BYOL's two asymmetric views of the
    first frame (blur p 1.0 / 0.1, solarization p 0 / 0.2). A class, so loader workers can pickle it."""

    def __init__(self, size: int) -> None:
        self.first = byol_view(size, blur=1.0, solarize=0.0)
        self.second = byol_view(size, blur=0.1, solarize=0.2)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        frame = frames[:1]
        return torch.cat([self.first(frame), self.second(frame)])


class BYOL(Method):
    """Online encoder + projector + predictor, EMA target encoder + projector.

    Args:
        encoder: the shared image encoder (pooled output of ``encoder.out_dim``).
        proj_hidden, proj_dim: projector widths (4096, 256).
        pred_hidden: predictor hidden width (4096).
        momentum: base target momentum tau_base (0.996), raised to 1 on a cosine schedule.

    ``training_step`` takes ``batch["frames"]``: float (B, 2, 3, H, W), two views per image.
    """

    def __init__(
        self, encoder: nn.Module, *, proj_hidden: int = 4096, proj_dim: int = 256, pred_hidden: int = 4096,
        momentum: float = 0.996,
    ) -> None:
        super().__init__(encoder)
        self.base_momentum = momentum
        self.projector = projection_mlp(encoder.out_dim, proj_hidden, proj_dim)
        self.predictor = projection_mlp(proj_dim, pred_hidden, proj_dim)
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        frames = batch["frames"]  # (B, 2, 3, H, W)
        if frames.shape[1] != 2:
            raise ValueError(f"BYOL needs two views per sample, got {frames.shape[1]}")
        # One forward per view, as the paper's code: BatchNorm statistics are per view.
        z1, z2 = (self.projector(self.encoder(frames[:, v])) for v in (0, 1))  # (B, d) each
        q1, q2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1, t2 = (self.target_projector(self.target_encoder(frames[:, v])) for v in (0, 1))
        loss = normalized_mse(q1, t2) + normalized_mse(q2, t1)  # each view predicts the other's target
        std = embedding_std(z1)
        ratio = std * math.sqrt(z1.shape[1])
        return StepOutput(loss, {"loss": loss.item(), "embed_std": std, "embed_std_ratio": ratio})

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        momentum = cosine_momentum(self.base_momentum, step, total_steps)
        ema_update(self.target_encoder, self.encoder, momentum)
        ema_update(self.target_projector, self.projector, momentum)


@dataclass(frozen=True)
class BYOLOptions:
    byol_proj_hidden: int = option(4096, "BYOL projector and predictor hidden width (paper: 4096)")
    byol_proj_dim: int = option(256, "BYOL projection dimension (paper: 256)")
    byol_pred_hidden: int = option(4096, "BYOL predictor hidden width (paper: 4096)")
    byol_momentum: float = option(0.996, "BYOL base target momentum, raised to 1 on a cosine schedule (paper: 0.996)")
    byol_augment: Literal["byol", "simclr"] = option(
        "byol", "byol: the paper's asymmetric views (blur 1.0/0.1, solarize 0/0.2, in the loader) | "
        "simclr: the trainer's symmetric default (colour batched on the GPU)"
    )


def build_byol(encoder: nn.Module, cfg: Any) -> tuple[BYOL, DataSpec]:
    """BYOL from a TrainConfig extended with :class:`BYOLOptions`."""
    method = BYOL(encoder, proj_hidden=cfg.byol_proj_hidden, proj_dim=cfg.byol_proj_dim,
                  pred_hidden=cfg.byol_pred_hidden, momentum=cfg.byol_momentum)
    if cfg.byol_augment == "simclr":
        return method, DataSpec(PairSampler(min_gap=0, max_gap=0))
    return method, DataSpec(ClipSampler(length=1), transform=BYOLViews(cfg.image_size))
