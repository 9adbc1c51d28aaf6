"""Video frame-level similarity (VFS: Xu & Wang, "Rethinking Self-supervised Correspondence
Learning: A Video Frame-level Similarity Perspective", ICCV 2021, arXiv:2103.17263).

Two frames of one video, far apart in time and each augmented on its own, are the two views of a
negative-free image-level method: SimSiam (``loss=simsiam``, the released models) or BYOL
(``loss=byol``). The loss sees pooled frame features only, yet the paper finds that fine-grained
correspondence emerges in the earlier stage: train on res5 (``layer4``, the encoder's pooled
output), propagate labels with res4 in the paper's counting, torchvision's ``layer3`` rebuilt at
stride 8, as the released evaluation (``vidssl eval davis ... preset=vfs``, i.e. ``layer=res3``).

This is :class:`~vidssl.methods.simsiam.SimSiam` / :class:`~vidssl.methods.byol.BYOL` (their heads
and losses, :func:`simsiam_heads` / :func:`simsiam_loss`, :func:`byol_heads` / :func:`byol_loss`)
on the shared pair source (:mod:`vidssl.data.pairs`) with VFS's defaults, from the released
``configs/r18_nc_sgd_cos_100e_r2_1xNx8_k400.py`` (ResNet-18, "nc": no colour augmentation; J&F 66.7
on DAVIS-2017 after 100 epochs of Kinetics-400):

* frames: anywhere in the video (the released sampler takes 8 frames from 8 uniform segments of
  the whole clip): ``max_gap=10`` seconds (Kinetics clips are 10 s), ``gap_unit=seconds``;
* views: random resized crop (area 0.2-1) to 224, flip, each frame independently; no colour
  jitter, grayscale or blur (``color=false``; ``color=true`` adds the SimCLR recipe, as the
  released non-"nc" configs do);
* SimSiam head: projector 3 x 512 (``proj_dim``), predictor bottleneck 128 (``pred_hidden``);
  BYOL: projector 512 -> 512 (``proj_hidden``, ``proj_dim``), predictor 128, EMA target from
  ``momentum`` 0.996 to 1 (cosine, BYOL's; VFS released no BYOL config);
* optimiser: SGD lr 0.05, momentum 0.9, weight decay 1e-4, cosine to 0, batch 32 videos per GPU on
  8 GPUs (the trainer's defaults: sgd, 0.05, 1e-4; recipe ``vfs.yaml``).

Deviations: the released code pairs 2 x 4 frames of a video and sums the 16 cross-pair losses
(weight 1/4 each: ``intra_video``); here each sample is one pair, so a batch holds more videos for
the same cost. ResNets are not built with ``zero_init_residual``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch

from vidssl.config import option
from vidssl.data.pairs import PairOptions, pair_data
from vidssl.data.spec import DataSpec
from vidssl.ema import EMA
from vidssl.methods.base import PairMethod
from vidssl.methods.byol import byol_heads, byol_loss
from vidssl.methods.simsiam import simsiam_heads, simsiam_loss
from vidssl.models.encoders import Encoder


class VFS(PairMethod):
    """SimSiam or BYOL on two frames of one video (see the module docstring).

    Config (:class:`VFS.Config`): the pair source (default: any two frames of the video), ``loss``,
    ``proj_dim``, ``proj_hidden`` (BYOL), ``pred_hidden``, ``momentum`` (BYOL), ``color``.
    """

    @dataclass(frozen=True)
    class Config(PairOptions):
        max_gap: float = option(10, "largest gap between the two frames (released: anywhere in a 10 s clip)")
        gap_unit: Literal["frames", "seconds"] = option("seconds", "unit of min_gap / max_gap")
        loss: Literal["simsiam", "byol"] = option("simsiam", "simsiam (the released models) | byol (EMA target)")
        proj_dim: int = option(512, "projection width (released SimSiam head: 3 layers of 512)")
        proj_hidden: int = option(512, "loss=byol: projector hidden width")
        pred_hidden: int = option(128, "predictor bottleneck width (released: 128)")
        momentum: float = option(0.996, "loss=byol: base target momentum, raised to 1 on a cosine schedule")
        color: bool = option(False, "SimCLR colour augmentation of each frame (the released 'nc' models: none)")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        if cfg.loss == "simsiam":
            self.projector, self.predictor = simsiam_heads(encoder.out_dim, cfg.proj_dim, cfg.pred_hidden)
        elif cfg.loss == "byol":
            self.projector, self.predictor = byol_heads(encoder.out_dim, cfg.proj_hidden, cfg.proj_dim,
                                                        cfg.pred_hidden)
            self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        else:
            raise ValueError(f"loss must be simsiam or byol, got {cfg.loss!r}")

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"proj_dim": 16, "proj_hidden": 16, "pred_hidden": 8, "max_gap": 20, "gap_unit": "frames"}

    def data(self) -> DataSpec:
        return pair_data(self.cfg, color=self.cfg.color)

    def pair_loss(self, pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        views = self.normalize(pairs)
        if self.cfg.loss == "simsiam":
            return simsiam_loss(self.encoder, self.projector, self.predictor, views)
        return byol_loss(self.encoder, self.target_encoder, self.projector, self.predictor, self.target_projector,
                         views)

    def ema(self) -> EMA | None:
        if self.cfg.loss != "byol":
            return None
        return EMA([(self.target_encoder, self.encoder), (self.target_projector, self.projector)], self.cfg.momentum,
                   "cosine")
