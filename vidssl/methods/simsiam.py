"""SimSiam: Exploring Simple Siamese Representation Learning (Chen & He, SimSiam, 2021, arXiv:2011.10566).

One network (encoder + projector) sees two views; a predictor maps one view's projection to the
other's, which is held fixed by a stop-gradient: ``L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`` with
``D`` the negative cosine (Eq. 4), so the loss lies in [-1, 1]. No negatives, no momentum encoder;
the stop-gradient is what prevents collapse (Sec. 4.1, Fig. 2).

Defaults follow the paper (Sec. 3, "Baseline settings") and how they map to vidssl keys:
    projector: 3 layers, Linear 2048 - BN - ReLU, Linear 2048 - BN - ReLU, Linear 2048 - BN
        (output BN without affine, as the official code)        ``simsiam_proj_dim=2048``
    predictor: Linear 2048 -> 512 - BN - ReLU - Linear 512 -> 2048 (bottleneck 512)
        ``simsiam_pred_hidden=512``
    augmentation: the MoCo-v2 / SimCLR recipe (crop scale 0.2-1, flip, colour jitter
        0.4/0.4/0.4/0.1 p 0.8, grayscale p 0.2, blur p 0.5), which is the trainer's default view
        pipeline, so its colour half can run batched on the GPU (``color_on``)
    optimiser: SGD, momentum 0.9, weight decay 1e-4, lr = 0.05 * B / 256, cosine decay, batch 512
        -> ``optimizer=sgd weight_decay=1e-4 lr=<0.05*B/256> min_lr=0`` (the trainer's defaults
        are sgd / 1e-4 / 0.05 / 0: right for B = 256; ``lr`` is the peak per-step rate, not scaled
        by batch, so set ``lr=0.1`` for B = 512).
Deviation: the paper's best setting keeps the predictor's lr fixed (no decay); the trainer has one
schedule for all parameters, so the predictor's lr decays too (the paper reports this also works,
Sec. 4.2). The shared ``proj_hidden`` / ``proj_dim`` keys (SimCLR's head) are not used.

Every frame of a video (or image of an image folder) is an image: one frame, two views.
``embed_std`` (:func:`~vidssl.losses.similarity.embedding_std` of the projections z, Fig. 2:
about 1/sqrt(d) when healthy, 0 when collapsed) and ``embed_std_ratio`` (= that * sqrt(d)) are
logged every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from vidssl.config import option
from vidssl.data.samplers import PairSampler
from vidssl.losses.similarity import embedding_std, negative_cosine
from vidssl.methods.base import DataSpec, Method, StepOutput
from vidssl.models.heads import projection_mlp


class SimSiam(Method):
    """Shared encoder + projector, predictor, stop-gradient, symmetric negative cosine.

    Args:
        encoder: the shared image encoder (pooled output of ``encoder.out_dim``).
        proj_dim: projector hidden and output width (2048).
        pred_hidden: predictor bottleneck width (512).

    ``training_step`` takes ``batch["frames"]``: float (B, 2, 3, H, W), two views per image.
    """

    def __init__(self, encoder: nn.Module, *, proj_dim: int = 2048, pred_hidden: int = 512) -> None:
        super().__init__(encoder)
        self.projector = projection_mlp(encoder.out_dim, proj_dim, proj_dim, num_layers=3, last_bn=True)
        self.predictor = projection_mlp(proj_dim, pred_hidden, proj_dim)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        frames = batch["frames"]  # (B, 2, 3, H, W)
        if frames.shape[1] != 2:
            raise ValueError(f"SimSiam needs two views per sample, got {frames.shape[1]}")
        # One forward per view, as the official code: BatchNorm statistics are per view.
        z1, z2 = (self.projector(self.encoder(frames[:, v])) for v in (0, 1))  # (B, d) each
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2  # z detached inside
        std = embedding_std(z1)
        ratio = std * math.sqrt(z1.shape[1])
        return StepOutput(loss, {"loss": loss.item(), "embed_std": std, "embed_std_ratio": ratio})


@dataclass(frozen=True)
class SimSiamOptions:
    simsiam_proj_dim: int = option(2048, "SimSiam projector hidden and output width (paper: 2048)")
    simsiam_pred_hidden: int = option(512, "SimSiam predictor bottleneck width (paper: 512)")


def build_simsiam(encoder: nn.Module, cfg: Any) -> tuple[SimSiam, DataSpec]:
    """SimSiam from a TrainConfig extended with :class:`SimSiamOptions`: two views of one frame,
    with the trainer's default (MoCo-v2) augmentation."""
    method = SimSiam(encoder, proj_dim=cfg.simsiam_proj_dim, pred_hidden=cfg.simsiam_pred_hidden)
    return method, DataSpec(PairSampler(min_gap=0, max_gap=0))
