"""Contrastive predictive coding on frame sequences (CPC, van den Oord et al., 2018,
arXiv:1807.03748; its video form, dense predictive coding: DPC, Han et al., 2019, arXiv:1909.04656).

A sequence of T frames, ``seq_stride`` apart and augmented consistently (one crop and colour per
sequence, so appearance cannot tell the steps apart), goes through the shared image encoder and a
linear projection, giving z_1..z_T: pooled vectors (D,), or with ``dense=true`` grids (D, H, W).
A GRU (a ConvGRU over the grid in dense mode) summarizes z_1..z_t into c_t, and for each offset
k = 1..K a linear map W_k predicts z_{t+k} from c_t, for every t = 1..T-K. Each prediction is scored
against every encoding of the global batch (the same sequence's other steps, and every step of the
other sequences, gathered from all DDP ranks; in dense mode every position too) by a dot product,
and InfoNCE asks it to pick its true future (:func:`vidssl.losses.cpc.cpc_loss`).

Defaults and why:
    seq_len T=8, pred_steps K=3: DPC's 8 steps of which the last 3 are predicted; CPC predicts
        from every context, so each sequence gives (T - K) * K = 15 predictions.
    seq_stride s=4: DPC's step is a 5-frame block spanning 15 frames (0.5 s); our steps are single
        frames, and at 25-30 fps frames 1-2 apart are near-duplicates (the same sequence's other
        steps would be negatives indistinguishable from the positive), while 0.5 s apart objects
        often leave the frame. 4 frames is 0.13-0.17 s per step, 8 steps span about 1 s (29
        frames), so most clips hold many sequences and K=3 looks 0.4-0.5 s ahead.
    temperature 1 with unnormalized vectors: CPC's (and DPC's) raw dot product ``z^T W_k c_t``.
    proj_dim D=128, context_dim 256: CPC's c_t is 256-wide (its z is 512).
    ConvGRU kernel 1: DPC's; at stride 32 the encoder already sees the whole frame.
Departures from the papers: W_k is linear in both modes (DPC uses a 2-layer 1x1-conv predictor
and feeds its predictions back into the ConvGRU); the encoder is a 2D image encoder on single
frames (DPC encodes 5-frame blocks with a 3D ResNet), since the point is an image encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vidssl.config import option
from vidssl.data.samplers import SequenceSampler
from vidssl.data.spec import DataSpec
from vidssl.losses.cpc import cpc_loss
from vidssl.methods.base import Method, StepOutput
from vidssl.models.context import ConvGRUContext, GRUContext
from vidssl.models.encoders import Encoder


class CPC(Method):
    """Predict the encodings of future frames from a GRU context over past ones.

    Config (:class:`CPC.Config`): ``seq_len`` T, ``seq_stride`` s, ``pred_steps`` K, ``dense``
    (DPC's grids rather than pooled vectors), ``proj_dim`` D (width of the projected encodings z
    and the predictions), ``context_dim`` (GRU / ConvGRU width), ``temperature`` (scores are
    ``<W_k c_t, z> / temperature``).
    """

    @dataclass(frozen=True)
    class Config:
        seq_len: int = option(8, "T: frames per sequence (>= 2)")
        seq_stride: int = option(4, "s: frames between consecutive steps (>= 1); a sequence spans (T-1)*s+1 frames")
        pred_steps: int = option(3, "K: future steps predicted from each context (1 <= K < T)")
        dense: bool = option(False, "predict every position of the encoder's grid (DPC), not pooled vectors (CPC)")
        proj_dim: int = option(128, "D: width of the projected encodings and of the predictions")
        context_dim: int = option(256, "hidden width of the GRU (ConvGRU in dense mode) context")
        temperature: float = option(1.0, "scores are dot products / temperature (papers: 1, raw dot products)")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        if cfg.seq_len < 2:
            raise ValueError(f"seq_len must be >= 2 (at least one context step and one future step), got {cfg.seq_len}")
        if not 1 <= cfg.pred_steps < cfg.seq_len:
            raise ValueError(f"pred_steps must satisfy 1 <= pred_steps < seq_len (a context step before the "
                             f"predicted ones), got pred_steps={cfg.pred_steps}, seq_len={cfg.seq_len}")
        if cfg.seq_stride < 1:
            raise ValueError(f"seq_stride must be >= 1, got {cfg.seq_stride}")
        if cfg.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
        self.seq_len, self.pred_steps, self.dense = cfg.seq_len, cfg.pred_steps, cfg.dense
        self.temperature = cfg.temperature
        self.embed_dim = cfg.proj_dim
        self.project = nn.Linear(encoder.out_dim, self.embed_dim)  # per position in dense mode (a 1x1 conv)
        ctx = ConvGRUContext if cfg.dense else GRUContext
        self.context = ctx(self.embed_dim, cfg.context_dim)
        self.predictor = nn.Linear(cfg.context_dim, cfg.pred_steps * self.embed_dim, bias=False)  # W_1..W_K stacked

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"seq_len": 4, "seq_stride": 2, "pred_steps": 2, "proj_dim": 16, "context_dim": 16}

    def data(self) -> DataSpec:
        """Sequences of ``seq_len`` frames ``seq_stride`` apart, one crop and colour per sequence.
        Videos shorter than ``(seq_len - 1) * seq_stride + 1`` frames are left out (and counted)."""
        return DataSpec(SequenceSampler(length=self.cfg.seq_len, stride=self.cfg.seq_stride), consistent=True)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) frames -> z: (B, T, D) pooled, or (B, T, D, h, w) dense."""
        batch, length = frames.shape[:2]
        x = self.normalize(frames.flatten(0, 1))
        if not self.dense:
            return self.project(self.encoder(x)).view(batch, length, -1)
        grid = self.project(self.encoder.forward_features(x).permute(0, 2, 3, 1))  # (BT, h, w, D)
        return grid.view(batch, length, *grid.shape[1:]).permute(0, 1, 4, 2, 3)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, T, D[, h, w]) -> predictions (B, T-K, K, D[, h, w]): row p holds W_k c_{p+1} for
        k = 1..K (1-based times), i.e. the guesses of z_{p+2}..z_{p+K+1}. The context of the first
        T-K steps is all that is used, and it is causal, so the last K steps are not fed to it."""
        starts = z.shape[1] - self.pred_steps
        c = self.context(z[:, :starts])
        if not self.dense:
            return self.predictor(c).view(*c.shape[:2], self.pred_steps, self.embed_dim)
        batch, _, _, height, width = c.shape
        pred = self.predictor(c.permute(0, 1, 3, 4, 2))  # (B, P, h, w, K*D)
        return pred.view(batch, starts, height, width, self.pred_steps, self.embed_dim).permute(0, 1, 4, 5, 2, 3)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        frames = batch["frames"]  # (B, T, 3, H, W)
        if frames.shape[1] != self.seq_len:
            raise ValueError(f"expected sequences of seq_len={self.seq_len} frames, got {frames.shape[1]}")
        z = self.encode(frames)
        out = cpc_loss(self.predict(z), z, temperature=self.temperature)
        return StepOutput(out.loss, {"loss": out.loss.item(), "cpc_acc": out.accuracy.item()})

