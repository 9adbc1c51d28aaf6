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
from vidssl.losses.colorization import colorization_loss, copy_colors
from vidssl.methods.base import DataSpec, Method, StepOutput
from vidssl.models.color import assign_clusters, fit_color_clusters, imagenet_to_rgb, lightness_input, rgb_to_lab

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColorizationOptions:
    """``vidssl train method=colorization`` keys (besides TrainConfig's; ``temperature`` defaults to 1)."""

    color_clusters: int = option(16, "k-means colour clusters of the ab plane (paper: 16)")
    num_refs: int = option(3, "reference frames before each target (paper: 3)")
    ref_stride: int = option(5, "frames between consecutive references and the target")
    color_embed_dim: int = option(64, "width of the embeddings whose dot products point at colours (paper: 64)")
    kmeans_samples: int = option(100, "training samples (R+1 frames each) whose pixels fit the colour clusters")
    color_any_stride: bool = option(False, "allow an encoder_stride other than 8 (the paper's dense 32x32 grid)")

    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {"encoder_stride": 8}  # dense features, as the paper


class Colorization(Method):
    """Copy quantized colours from reference frames to a gray target frame.

    Args:
        encoder: the shared encoder; its dense features (``forward_features``) are used.
        num_clusters: C colour clusters.
        embed_dim: output width of the embedding head.
        hidden_dim: hidden width of the embedding head.
        temperature: softmax temperature of the pointing.
        kmeans_samples: dataset samples read by :meth:`prepare`.
        kmeans_pixels: random pixels taken from each of those samples.
        seed: seeds the pixel draw and k-means.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        num_clusters: int = 16,
        embed_dim: int = 64,
        hidden_dim: int = 256,
        temperature: float = 1.0,
        kmeans_samples: int = 100,
        kmeans_pixels: int = 4096,
        seed: int = 0,
    ) -> None:
        super().__init__(encoder)
        if num_clusters < 2:
            raise ValueError(f"need at least 2 colour clusters, got {num_clusters}")
        self.num_clusters, self.temperature = num_clusters, temperature
        self.kmeans_samples, self.kmeans_pixels, self.seed = kmeans_samples, kmeans_pixels, seed
        self.head = nn.Sequential(
            nn.Conv2d(encoder.out_dim, hidden_dim, 1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, embed_dim, 1),
        )
        self.register_buffer("centers", torch.zeros(num_clusters, 2))  # (C, 2) ab cluster centres
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

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
        frames = batch["frames"]  # (B, R+1, 3, H, W): references then the target
        if not self.fitted:
            raise RuntimeError("colorization: colour clusters not fitted; call prepare(dataset) or load a checkpoint")
        b, t = frames.shape[:2]
        with torch.no_grad():
            lab = rgb_to_lab(imagenet_to_rgb(frames.flatten(0, 1)))  # (B*T, 3, H, W)
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


def build_colorization(encoder: nn.Module, cfg: Any) -> tuple[Colorization, DataSpec]:
    """Colorization from a TrainConfig holding :class:`ColorizationOptions`."""
    if encoder.stride != 8 and not cfg.color_any_stride:
        raise ValueError(
            f"method=colorization copies colours between dense stride-8 feature maps but the encoder has "
            f"stride {encoder.stride}: pass encoder_stride=8 (or color_any_stride=true to train at this stride)"
        )
    if cfg.num_refs < 1 or cfg.ref_stride < 1:
        raise ValueError(f"need num_refs >= 1 and ref_stride >= 1, got {cfg.num_refs} and {cfg.ref_stride}")
    method = Colorization(
        encoder,
        num_clusters=cfg.color_clusters,
        embed_dim=cfg.color_embed_dim,
        temperature=cfg.temperature if cfg.temperature is not None else 1.0,
        kmeans_samples=cfg.kmeans_samples,
        seed=cfg.seed,
    )
    spec = DataSpec(ReferenceTargetSampler(num_refs=cfg.num_refs, stride=cfg.ref_stride), consistent=True, color=False)
    return method, spec
