"""SimSiam: Exploring Simple Siamese Representation Learning (Chen & He, SimSiam, 2021, arXiv:2011.10566).

One network (encoder + projector) sees two views; a predictor maps one view's projection to the
other's, which is held fixed by a stop-gradient: ``L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`` with
``D`` the negative cosine (Eq. 4), so the loss lies in [-1, 1]. No negatives, no momentum encoder;
the stop-gradient is what prevents collapse (Sec. 4.1, Fig. 2).

Defaults follow the paper (Sec. 3, "Baseline settings") and how they map to vidssl keys:
    projector: 3 layers, Linear 2048 - BN - ReLU, Linear 2048 - BN - ReLU, Linear 2048 - BN
        (output BN without affine, as the official code)        ``proj_dim=2048``
    predictor: Linear 2048 -> 512 - BN - ReLU - Linear 512 -> 2048 (bottleneck 512)
        ``pred_hidden=512``
    augmentation: the MoCo-v2 / SimCLR recipe (crop scale 0.2-1, flip, colour jitter
        0.4/0.4/0.4/0.1 p 0.8, grayscale p 0.2, blur p 0.5), which is the trainer's default view
        pipeline, so its colour half can run batched on the GPU (``color_on``)
    optimiser: SGD, momentum 0.9, weight decay 1e-4, lr = 0.05 * B / 256, cosine decay, batch 512
        -> ``optimizer=sgd weight_decay=1e-4 lr=<0.05*B/256> min_lr=0`` (the trainer's defaults
        are sgd / 1e-4 / 0.05 / 0: right for B = 256; ``lr`` is the peak per-step rate, not scaled
        by batch, so set ``lr=0.1`` for B = 512).
Deviation: the paper's best setting keeps the predictor's lr fixed (no decay); the trainer has one
schedule for all parameters, so the predictor's lr decays too (the paper reports this also works,
Sec. 4.2).

By default every frame of a video (or image of an image folder) is an image: one frame, two views;
any positive pair works instead (:mod:`vidssl.data.pairs`: frame pairs with ``max_gap`` > 0, as
VFS's negative-free setting, or object-track crops).
``embed_std`` (:func:`~vidssl.losses.similarity.embedding_std` of the projections z, Fig. 2:
about 1/sqrt(d) when healthy, 0 when collapsed) and ``embed_std_ratio`` (= that * sqrt(d)) are
logged every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vidssl.config import option
from vidssl.data.pairs import PairOptions
from vidssl.losses.similarity import embedding_std, negative_cosine
from vidssl.methods.base import PairMethod
from vidssl.models.encoders import Encoder
from vidssl.models.heads import projection_mlp


class SimSiam(PairMethod):
    """Shared encoder + projector, predictor, stop-gradient, symmetric negative cosine.

    Config (:class:`SimSiam.Config`): the pair source (default: two views of one frame),
    ``proj_dim`` (projector hidden and output width, 2048) and ``pred_hidden`` (predictor
    bottleneck, 512). ``pair_loss`` takes (B, 2, 3, H, W), two views per sample.
    """

    @dataclass(frozen=True)
    class Config(PairOptions):
        max_gap: float = option(0, "largest gap between the frames of a pair (0: two views of one frame)")
        proj_dim: int = option(2048, "projector hidden and output width (paper: 2048)")
        pred_hidden: int = option(512, "predictor bottleneck width (paper: 512)")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        self.projector, self.predictor = simsiam_heads(encoder.out_dim, self.cfg.proj_dim, self.cfg.pred_hidden)

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"proj_dim": 32, "pred_hidden": 16}

    def pair_loss(self, pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return simsiam_loss(self.encoder, self.projector, self.predictor, self.normalize(pairs))


def simsiam_heads(in_dim: int, proj_dim: int, pred_hidden: int) -> tuple[nn.Sequential, nn.Sequential]:
    """SimSiam's projector (3 layers of ``proj_dim``, output BN) and predictor (bottleneck
    ``pred_hidden``), shared with :mod:`vidssl.methods.vfs`."""
    projector = projection_mlp(in_dim, proj_dim, proj_dim, num_layers=3, last_bn=True)
    return projector, projection_mlp(proj_dim, pred_hidden, proj_dim)


def simsiam_loss(encoder: nn.Module, projector: nn.Module, predictor: nn.Module,
                 pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """SimSiam's symmetric negative cosine with stop-gradient on (B, 2, 3, H, W) normalized pairs;
    returns (loss, collapse logs)."""
    if pairs.shape[1] != 2:
        raise ValueError(f"SimSiam needs two views per sample, got {pairs.shape[1]}")
    # One forward per view, as the official code: BatchNorm statistics are per view.
    z1, z2 = (projector(encoder(pairs[:, v])) for v in (0, 1))  # (B, d) each
    p1, p2 = predictor(z1), predictor(z2)
    loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2  # z detached inside
    std = embedding_std(z1)
    return loss, {"embed_std": std, "embed_std_ratio": std * math.sqrt(z1.shape[1])}
