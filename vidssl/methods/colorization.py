"""Colorization as tracking (Vondrick et al. 2018, "Tracking Emerges by Colorizing Videos",
arXiv:1806.09594).

A sample is R reference frames and a target frame (``[t - R*s, ..., t - s, t]``), all cropped
alike and never colour-jittered: colour is what the model predicts. Every frame is converted to
Lab; the encoder sees only the lightness L (copied into three channels, see
:mod:`vidssl.models.color`), its stride-8 features go through a small embedding head, and each
target position copies the colours of the reference positions it attends to (softmax of
embedding dot products over all R*h*w reference positions). Colours are the ab channels
average-pooled to the feature grid and quantized to C k-means clusters fitted in
:meth:`Colorization.prepare` on a sample of training frames; the centres are a buffer, so every
checkpoint of the run holds them. The loss is the cross-entropy of the copied distribution
against the target's true clusters; ``color_acc`` logs how often its most likely cluster is right.

Paper settings: 16 colour clusters, 3 reference frames, 64-d embeddings, temperature 1 in
training, 256 x 256 inputs with 32 x 32 features (stride 8), ResNet-18 followed by a 3D
convolutional network. Deviation: the head here is two 1x1 convolutions per frame (no 3D
convolutions across frames), so the exported encoder's own stride-8 features are what the
copying uses, which is also what label propagation reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vidssl.config import option
from vidssl.data.samplers import ReferenceTargetSampler
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import unit_float
from vidssl.losses.colorization import colorization_loss, copy_colors
from vidssl.methods.base import Method, StepOutput
from vidssl.models.color import assign_clusters, fit_color_clusters, lightness_input, rgb_to_lab
from vidssl.models.encoders import Encoder

log = logging.getLogger(__name__)


class Colorization(Method):
    """Copy quantized colours from reference frames to a gray target frame.

    Config (:class:`Colorization.Config`): ``clusters`` C colour clusters, ``num_refs`` R and
    ``ref_stride`` (the sample), ``embed_dim`` / ``hidden_dim`` (the embedding head),
    ``temperature`` of the pointing softmax, ``kmeans_samples`` dataset samples read by
    :meth:`prepare` (``kmeans_pixels`` random pixels of each), ``any_stride``. The run's seed seeds
    the pixel draw and k-means.
    """

    train_defaults: ClassVar[dict[str, Any]] = {"encoder_stride": 8}  # dense features, as the paper
    input: ClassVar[str] = "gray"  # the target frame is seen in gray only: colour is what it predicts

    @dataclass(frozen=True)
    class Config:
        clusters: int = option(16, "k-means colour clusters of the ab plane (paper: 16)")
        num_refs: int = option(3, "reference frames before each target (paper: 3)")
        ref_stride: int = option(5, "frames between consecutive references and the target")
        embed_dim: int = option(64, "width of the embeddings whose dot products point at colours (paper: 64)")
        hidden_dim: int = option(256, "hidden width of the two-layer 1x1 embedding head")
        temperature: float = option(1.0, "softmax temperature of the pointing (paper: 1 in training)")
        kmeans_samples: int = option(100, "training samples (R+1 frames each) whose pixels fit the colour clusters")
        kmeans_pixels: int = option(4096, "random pixels taken from each of those samples")
        any_stride: bool = option(False, "allow an encoder_stride other than 8 (the paper's dense 32x32 grid)")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        if cfg.clusters < 2:
            raise ValueError(f"need at least 2 colour clusters, got {cfg.clusters}")
        if encoder.stride != 8 and not cfg.any_stride:
            raise ValueError(
                f"method=colorization copies colours between dense stride-8 feature maps but the encoder has "
                f"stride {encoder.stride}: pass encoder_stride=8 (or any_stride=true to train at this stride)"
            )
        if cfg.num_refs < 1 or cfg.ref_stride < 1:
            raise ValueError(f"need num_refs >= 1 and ref_stride >= 1, got {cfg.num_refs} and {cfg.ref_stride}")
        self.num_clusters, self.temperature = cfg.clusters, cfg.temperature
        self.kmeans_samples, self.kmeans_pixels = cfg.kmeans_samples, cfg.kmeans_pixels
        self.head = nn.Sequential(
            nn.Conv2d(encoder.out_dim, cfg.hidden_dim, 1, bias=False),
            nn.BatchNorm2d(cfg.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(cfg.hidden_dim, cfg.embed_dim, 1),
        )
        self.register_buffer("centers", torch.zeros(cfg.clusters, 2))  # (C, 2) ab cluster centres
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"kmeans_samples": 2, "num_refs": 2, "ref_stride": 2, "embed_dim": 16, "hidden_dim": 32}

    def data(self) -> DataSpec:
        """R references and the target, cropped alike, never colour-jittered (colour is the target)."""
        return DataSpec(ReferenceTargetSampler(num_refs=self.cfg.num_refs, stride=self.cfg.ref_stride),
                        consistent=True, color=False)

    @torch.no_grad()
    def prepare(self, dataset: Dataset) -> None:
        """Fit the colour clusters on ``kmeans_pixels`` random pixels of each of the first
        ``kmeans_samples`` samples of ``dataset`` (uint8 frames, as training crops them)."""
        g = torch.Generator().manual_seed(self.seed)
        pixels = []
        for i in range(min(self.kmeans_samples, len(dataset))):  # type: ignore[arg-type]
            frames = dataset[i]["frames"]  # uint8 (T, 3, H, W)
            ab = rgb_to_lab(frames.float() / 255)[:, 1:].movedim(1, -1).reshape(-1, 2)
            pixels.append(ab[torch.randint(len(ab), (self.kmeans_pixels,), generator=g)])
        self.fit_centers(torch.cat(pixels))
        log.info("colorization: %d colour clusters fitted on %d pixels of %d samples", self.num_clusters,
                 sum(len(p) for p in pixels), len(pixels))

    @torch.no_grad()
    def fit_centers(self, ab: torch.Tensor) -> None:
        """Fit the C cluster centres on ab values (N, 2) and mark the method ready to train."""
        self.centers.copy_(fit_color_clusters(ab, self.num_clusters, seed=self.seed))
        self.fitted.fill_(True)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        frames = batch["frames"]  # (B, R+1, 3, H, W) RGB: references then the target
        if not self.fitted:
            raise RuntimeError("colorization: colour clusters not fitted; call prepare(dataset) or load a checkpoint")
        b, t = frames.shape[:2]
        with torch.no_grad():
            lab = rgb_to_lab(unit_float(frames.flatten(0, 1)))  # (B*T, 3, H, W)
        emb = self.head(self.encoder.forward_features(lightness_input(lab[:, :1])))  # (B*T, D, h, w)
        d, h, w = emb.shape[1:]
        with torch.no_grad():
            ab = F.adaptive_avg_pool2d(lab[:, 1:], (h, w))  # colours at the feature resolution
            labels = assign_clusters(ab, self.centers).reshape(b, t, h * w)
        emb = emb.reshape(b, t, d, h * w).transpose(2, 3)  # (B, T, h*w, D)
        refs = emb[:, :-1].reshape(b, (t - 1) * h * w, d)
        probs = copy_colors(emb[:, -1], refs, labels[:, :-1].reshape(b, -1), num_classes=self.num_clusters,
                            temperature=self.temperature)  # (B, h*w, C)
        loss = colorization_loss(probs, labels[:, -1])
        accuracy = (probs.argmax(-1) == labels[:, -1]).float().mean()
        return StepOutput(loss, {"loss": loss.item(), "color_acc": accuracy.item()})

