"""Frame-temporal invariance (Purushwalkam & Gupta, 2020, arXiv:2007.13916).

Two frames of one video, ``gap`` frames apart and each augmented independently (SimCLR / MoCo-v2
recipe), are a positive pair. ``loss=infonce`` is SimCLR's NT-Xent with in-batch negatives gathered
across DDP ranks (Chen et al. 2020, arXiv:2002.05709; temperature 0.1 [paper: 0.1 at batch 4096],
2-layer projection 2048 -> 128); ``loss=moco`` is MoCo-v2 (Chen et al. 2020, arXiv:2003.04297:
momentum 0.999, queue 65536, temperature 0.2, MLP head 2048 -> 128). With a gap of 0 both are the
image-level methods, exposed as ``simclr`` and ``mocov2``.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.data.samplers import PairSampler
from vidssl.engine.distributed import all_gather_no_grad
from vidssl.losses.info_nce import info_nce, moco_loss
from vidssl.methods.base import DataSpec, Method, StepOutput, ema_update
from vidssl.models.heads import projection_mlp


class FTI(Method):
    """Frame pairs as positives, with an InfoNCE or a MoCo loss.

    Args:
        encoder: the shared image encoder (pooled output of ``encoder.out_dim``).
        loss: ``infonce`` (in-batch negatives) or ``moco`` (momentum encoder + queue).
        proj_hidden, proj_dim: projection MLP widths.
        temperature: softmax temperature.
        queue_size: MoCo negatives kept (a multiple of the global batch is not required).
        momentum: MoCo key-encoder EMA momentum.
        frame_weight, track_weight: with object-track crops in the batch (``batch["crops"]``,
            see :mod:`vidssl.methods.track`), the loss is ``frame_weight * L(frames) +
            track_weight * L(crops)``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        loss: Literal["infonce", "moco"] = "infonce",
        proj_hidden: int = 2048,
        proj_dim: int = 128,
        temperature: float = 0.1,
        queue_size: int = 65536,
        momentum: float = 0.999,
        frame_weight: float = 1.0,
        track_weight: float = 1.0,
    ) -> None:
        super().__init__(encoder)
        if loss not in ("infonce", "moco"):
            raise ValueError(f"loss must be infonce or moco, got {loss!r}")
        self.loss, self.temperature, self.momentum = loss, temperature, momentum
        self.frame_weight, self.track_weight = frame_weight, track_weight
        self.head = projection_mlp(encoder.out_dim, proj_hidden, proj_dim)
        if loss == "moco":
            self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.key_head = copy.deepcopy(self.head).requires_grad_(False)
            self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        loss = self._pair_loss(batch["frames"])
        if "crops" not in batch:
            return StepOutput(loss, {"loss": loss.item()})
        track_loss = self._pair_loss(batch["crops"])
        total = self.frame_weight * loss + self.track_weight * track_loss
        return StepOutput(total, {"loss": total.item(), "frame_loss": loss.item(), "track_loss": track_loss.item()})

    def _pair_loss(self, pairs: torch.Tensor) -> torch.Tensor:
        """``pairs``: (B, 2, 3, H, W), positives along dim 1."""
        a, b = pairs[:, 0], pairs[:, 1]
        if self.loss == "infonce":
            z = self.head(self.encoder(torch.cat([a, b])))
            ids = torch.arange(len(a), device=z.device).repeat(2)
            return info_nce(z, ids, temperature=self.temperature)
        q = self.head(self.encoder(a))
        with torch.no_grad():
            k = self.key_head(self.key_encoder(b))
        loss = moco_loss(q, k, self.queue, temperature=self.temperature)
        self._enqueue(F.normalize(k.float(), dim=1))
        return loss

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = all_gather_no_grad(keys)
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % len(self.queue)
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % len(self.queue))

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        if self.loss == "moco":
            ema_update(self.key_encoder, self.encoder, self.momentum)
            ema_update(self.key_head, self.head, self.momentum)


def fti_data(*, min_gap: float, max_gap: float, gap_unit: Literal["frames", "seconds"]) -> DataSpec:
    """Pairs of frames ``gap`` apart, augmented independently."""
    return DataSpec(PairSampler(min_gap=min_gap, max_gap=max_gap, unit=gap_unit), consistent=False)


def build_fti(encoder: nn.Module, cfg: Any, *, tracks: bool = True) -> tuple[FTI, DataSpec]:
    """FTI from a TrainConfig: pairs ``min_gap..max_gap`` apart (frames or seconds); with
    ``tracks=DIR`` (and ``tracks`` true here) a pair of object-track crops joins every frame pair."""
    temperature = cfg.temperature if cfg.temperature is not None else (0.2 if cfg.loss == "moco" else 0.1)
    method = FTI(encoder, loss=cfg.loss, proj_hidden=cfg.proj_hidden, proj_dim=cfg.proj_dim,
                 temperature=temperature, queue_size=cfg.queue_size, momentum=cfg.moco_momentum,
                 frame_weight=getattr(cfg, "frame_weight", 1.0), track_weight=getattr(cfg, "track_weight", 1.0))
    spec = fti_data(min_gap=cfg.min_gap, max_gap=cfg.max_gap, gap_unit=cfg.gap_unit)
    if tracks and getattr(cfg, "tracks", ""):
        from vidssl.methods.track import with_tracks

        spec = with_tracks(spec, cfg)
    return method, spec


def build_simclr(encoder: nn.Module, cfg: Any) -> tuple[FTI, DataSpec]:
    """SimCLR: FTI with InfoNCE and gap 0 (two augmentations of one frame)."""
    temperature = cfg.temperature if cfg.temperature is not None else 0.1
    method = FTI(encoder, loss="infonce", proj_hidden=cfg.proj_hidden, proj_dim=cfg.proj_dim, temperature=temperature)
    return method, fti_data(min_gap=0, max_gap=0, gap_unit="frames")


def build_mocov2(encoder: nn.Module, cfg: Any) -> tuple[FTI, DataSpec]:
    """MoCo-v2: FTI with the MoCo loss and gap 0."""
    temperature = cfg.temperature if cfg.temperature is not None else 0.2
    method = FTI(encoder, loss="moco", proj_hidden=cfg.proj_hidden, proj_dim=cfg.proj_dim, temperature=temperature,
                 queue_size=cfg.queue_size, momentum=cfg.moco_momentum)
    return method, fti_data(min_gap=0, max_gap=0, gap_unit="frames")
