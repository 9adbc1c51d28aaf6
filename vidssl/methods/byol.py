"""BYOL: Bootstrap Your Own Latent (Grill et al., BYOL, 2020, arXiv:2006.07733).

An online network (encoder, projector, predictor) predicts the projection that a target network
(encoder, projector: an exponential moving average of the online ones, never trained by gradient)
gives for another view of the same image. Loss: ``2 - 2 cos(q, sg(z'))`` for each view predicting
the other, summed (the paper's ``L + L~``, Eq. 2), so it lies in [0, 8].

Defaults follow the paper (Sec. 3.3 and App. B, C):
    projector and predictor: Linear 4096 - BN - ReLU - Linear 256   ``proj_hidden``,
        ``proj_dim``, ``pred_hidden``
    target EMA: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, tau_base 0.996 -> 1
        ``momentum``
    views: random resized crop (scale 0.08-1, bicubic) + flip, colour jitter 0.4/0.4/0.2/0.1 with
        p 0.8, grayscale p 0.2, Gaussian blur p 1.0 / 0.1 and solarization p 0 / 0.2 for the
        first / second view (App. B, Table 6)  ``augment=byol``
Optimisation is the trainer's: the paper used LARS, lr 0.2 * B / 256, weight decay 1.5e-6,
10 warm-up epochs, cosine decay, batch 4096 -> ``optimizer=lars lr=<0.2*B/256> weight_decay=1.5e-6
warmup_steps=<10 epochs> min_lr=0`` (the trainer's defaults are SGD, lr 0.05, weight decay 1e-4;
note ``lr`` is the peak per-step rate, not scaled by batch). LARS-excluded biases and norms follow
the trainer's parameter groups.

``augment=simclr`` uses the trainer's default symmetric augmentation instead (SimCLR recipe,
blur p 0.5, no solarization), whose colour half runs batched on the GPU: faster end to end when
the loader workers are the bottleneck, at the cost of the paper's asymmetry.

By default every frame of a video (or image of an image folder) is an image: one frame is sampled
and both views are cut from it. Any positive pair works instead (:mod:`vidssl.data.pairs`:
``max_gap`` > 0 gives frame pairs, the temporal setting of VFS, Xu & Wang 2021; ``positives=tracks``
object-track crops), each frame of the pair giving one view.

The collapse monitor ``embed_std`` (:func:`~vidssl.losses.similarity.embedding_std` of the online
projections; ``embed_std_ratio`` = that * sqrt(d), about 1 when healthy, 0 when
collapsed) is logged every step.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from vidssl.config import option
from vidssl.data.pairs import PairOptions
from vidssl.data.views import PerFrameViews, byol_views
from vidssl.ema import EMA
from vidssl.losses.similarity import embedding_std, normalized_mse
from vidssl.methods.base import PairMethod
from vidssl.models.encoders import Encoder
from vidssl.models.heads import projection_mlp


class BYOL(PairMethod):
    """Online encoder + projector + predictor, EMA target encoder + projector.

    Config (:class:`BYOL.Config`): the pair source (default: two views of one frame), ``proj_hidden``,
    ``proj_dim`` (projector, 4096 and 256), ``pred_hidden`` (predictor, 4096), ``momentum`` (base
    target momentum tau_base 0.996, raised to 1 on a cosine schedule) and ``augment``.
    ``pair_loss`` takes (B, 2, 3, H, W), two views per sample.
    """

    @dataclass(frozen=True)
    class Config(PairOptions):
        max_gap: float = option(0, "largest gap between the frames of a pair (0: two views of one frame)")
        proj_hidden: int = option(4096, "projector and predictor hidden width (paper: 4096)")
        proj_dim: int = option(256, "projection dimension (paper: 256)")
        pred_hidden: int = option(4096, "predictor hidden width (paper: 4096)")
        momentum: float = option(0.996, "base target momentum, raised to 1 on a cosine schedule (paper: 0.996)")
        augment: Literal["byol", "simclr"] = option(
            "byol", "byol: the paper's asymmetric views (blur 1.0/0.1, solarize 0/0.2, in the loader) | "
            "simclr: the trainer's symmetric default (colour batched on the GPU)"
        )

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        self.projector, self.predictor = byol_heads(encoder.out_dim, cfg.proj_hidden, cfg.proj_dim, cfg.pred_hidden)
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"proj_hidden": 32, "proj_dim": 16, "pred_hidden": 32}

    def views(self) -> PerFrameViews | None:
        return byol_views(self.image_size) if self.cfg.augment == "byol" else None

    def pair_loss(self, pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return byol_loss(self.encoder, self.target_encoder, self.projector, self.predictor, self.target_projector,
                         self.normalize(pairs))

    def ema(self) -> EMA:
        pairs = [(self.target_encoder, self.encoder), (self.target_projector, self.projector)]
        return EMA(pairs, self.cfg.momentum, "cosine")


def byol_heads(in_dim: int, proj_hidden: int, proj_dim: int, pred_hidden: int) -> tuple[nn.Sequential, nn.Sequential]:
    """BYOL's projector and predictor (Linear - BN - ReLU - Linear), shared with
    :mod:`vidssl.methods.vfs`."""
    return projection_mlp(in_dim, proj_hidden, proj_dim), projection_mlp(proj_dim, pred_hidden, proj_dim)


def byol_loss(encoder: nn.Module, target_encoder: nn.Module, projector: nn.Module, predictor: nn.Module,
              target_projector: nn.Module, pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """BYOL's symmetric loss on (B, 2, 3, H, W) normalized pairs: each view's prediction against the
    other's target projection, ``2 - 2 cos`` each; returns (loss, collapse logs)."""
    if pairs.shape[1] != 2:
        raise ValueError(f"BYOL needs two views per sample, got {pairs.shape[1]}")
    views = [pairs[:, v] for v in (0, 1)]
    # One forward per view, as the paper's code: BatchNorm statistics are per view.
    z1, z2 = (projector(encoder(v)) for v in views)  # (B, d) each
    q1, q2 = predictor(z1), predictor(z2)
    with torch.no_grad():
        t1, t2 = (target_projector(target_encoder(v)) for v in views)
    loss = normalized_mse(q1, t2) + normalized_mse(q2, t1)  # each view predicts the other's target
    std = embedding_std(z1)
    return loss, {"embed_std": std, "embed_std_ratio": std * math.sqrt(z1.shape[1])}
