"""Relative patch location (context prediction: Doersch, Gupta & Efros, 2015, arXiv:1505.05192).

A centre patch and one of its 8 neighbours on a 3 x 3 grid of patches separated by a gap, each
patch jittered on its own, go through the shared encoder; their pooled features are concatenated
(centre first) and an MLP predicts which neighbour it was (8 classes, row-major:
0 = top-left, 1 = top, 2 = top-right, 3 = left, 4 = right, 5 = bottom-left, 6 = bottom,
7 = bottom-right; see :data:`NEIGHBOURS`).

Paper settings and what they become here (S = ``image_size``): 96 px patches, 48 px gaps and up to
7 px of jitter, a 3 x 3 arrangement that spans 3 * 96 + 2 * 48 + 2 * 7 = 398 px, scaled by S / 398
and rounded down so that the arrangement fits the frame: at the default S = 224 patches of 54 px,
gaps of 27 px and jitter up to 3 px (``relpatch_patch``, ``relpatch_gap``, ``relpatch_jitter``
override each). The grid is centred in the frame; where in the image it lies comes from the
shared random resized crop (scale 0.2-1, flip), the paper sampled the first patch uniformly.

Chromatic aberration (the paper's main shortcut: colour fringes grow towards the image border and
betray a patch's absolute position), ``relpatch_aberration``:

* ``drop`` (default; the paper's "color dropping"): in every patch two of the three colour channels
  are replaced by Gaussian noise of 1/100 the std of the kept channel;
* ``project`` (the paper's "projection"): colours lose their green-magenta component (the axis
  along which aberration shifts colours), computed in RGB;
* ``gray``: both patches in grayscale; ``none``: off.

The data pipeline's SimCLR colour augmentation is off (``color=False``). The paper's late-fusion
head (fc6 per patch, then fc7 4096 and fc8 on the concatenation) becomes the pooled encoder
output per patch, then an MLP of hidden width ``relpatch_hidden`` (4096). Not implemented: the
paper's random down- and up-sampling of some patches (robustness to pixelation).

Random choices (neighbour, jitter, kept channel, noise) are drawn on the training device from a
generator seeded by (``seed``, the number of micro-batches drawn so far, the DDP rank); that count
is a buffer, so a resumed run draws what the uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.config import option
from vidssl.data.datasets import sample_seed
from vidssl.data.samplers import ClipSampler
from vidssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidssl.engine.distributed import rank
from vidssl.methods.base import DataSpec, Method, StepOutput
from vidssl.models.heads import projection_mlp
from vidssl.models.patches import crop_patches

Aberration = Literal["drop", "project", "gray", "none"]

NEIGHBOURS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""(rows, columns) offset of neighbour k from the centre patch, in grid steps (patch + gap)."""

PAPER_SPAN = 3 * 96 + 2 * 48 + 2 * 7  # px: three patches, two gaps, jitter on both sides
_LUMA = (0.299, 0.587, 0.114)
_GREEN_MAGENTA = (1.0, -2.0, 1.0)  # magenta minus green, in RGB


def patch_positions(
    labels: torch.Tensor, *, height: int, width: int, patch: int, gap: int, jitter: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners of the centre patch and of neighbour ``labels[n]`` on a centred grid.

    Args:
        labels: int64 (N,) neighbour indices into :data:`NEIGHBOURS`.
        height, width: frame size; ``3 * patch + 2 * gap + 2 * jitter`` must fit in both.
        jitter: each patch moves by a uniform integer in [-jitter, jitter] along each axis.

    Returns:
        tops, lefts: int64 (N, 2), column 0 the centre patch, column 1 the neighbour.
    """
    span = 3 * patch + 2 * gap + 2 * jitter
    if min(height, width) < span or patch < 1 or gap < 0 or jitter < 0:
        raise ValueError(f"3 patches of {patch} px, 2 gaps of {gap} px and {jitter} px of jitter on both sides "
                         f"({span} px) must fit in the {height}x{width} frames")
    step = patch + gap
    offsets = torch.tensor(NEIGHBOURS, device=labels.device)[labels]  # (N, 2)
    grid = torch.stack([torch.zeros_like(offsets), offsets], dim=1)  # (N, 2 patches, (row, col)), centre = 0
    origin = torch.tensor([(height - 3 * patch - 2 * gap) // 2 + step, (width - 3 * patch - 2 * gap) // 2 + step],
                          device=labels.device)  # the centre patch's unjittered corner
    shake = torch.randint(-jitter, jitter + 1, grid.shape, generator=generator, device=labels.device)
    corners = origin + grid * step + shake
    return corners[..., 0], corners[..., 1]


def _to_rgb(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalized (..., 3, h, w) -> [0, 1] RGB."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return x * std + mean


def _from_rgb(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def suppress_aberration(patches: torch.Tensor, mode: Aberration, generator: torch.Generator) -> torch.Tensor:
    """The chromatic-aberration counter-measure ``mode`` on ImageNet-normalized patches.

    Args:
        patches: float (N, K, 3, h, w), ImageNet-normalized.
        mode: ``drop``: keep one random channel per patch, the two others become Gaussian noise of
            1/100 its std; ``project``: remove the green-magenta component in RGB; ``gray``:
            luminance in all three channels; ``none``: unchanged.

    Returns:
        (N, K, 3, h, w), ImageNet-normalized.
    """
    if mode == "none":
        return patches
    if mode == "drop":
        keep = torch.randint(3, patches.shape[:2], generator=generator, device=patches.device)  # (N, K)
        kept = patches.gather(2, keep[..., None, None, None].expand(-1, -1, 1, *patches.shape[-2:]))
        noise = torch.randn(patches.shape, generator=generator, device=patches.device, dtype=patches.dtype)
        noise = noise * kept.std(dim=(-2, -1), keepdim=True) / 100
        channel = torch.arange(3, device=patches.device).view(1, 1, 3, 1, 1)
        return torch.where(channel == keep[..., None, None, None], patches, noise)
    rgb = _to_rgb(patches)
    if mode == "project":
        axis = torch.tensor(_GREEN_MAGENTA, device=patches.device)
        axis = (axis / axis.norm()).view(3, 1, 1)
        rgb = rgb - (rgb * axis).sum(-3, keepdim=True) * axis
    elif mode == "gray":
        rgb = (rgb * torch.tensor(_LUMA, device=patches.device).view(3, 1, 1)).sum(-3, keepdim=True).expand_as(rgb)
    else:
        raise ValueError(f"relpatch_aberration must be drop, project, gray or none, got {mode!r}")
    return _from_rgb(rgb)


class RelPatch(Method):
    """Context prediction: (centre, neighbour) patches through the shared encoder -> 8 classes.

    Args:
        encoder: the shared image encoder (pooled output of ``encoder.out_dim``).
        image_size: side S of the frames; the paper's sizes are scaled by S / 398.
        patch, gap, jitter: override the scaled sizes (px).
        hidden: hidden width of the classifier on the concatenated pair.
        aberration: chromatic-aberration counter-measure (see :func:`suppress_aberration`).
        seed: base seed of the random choices (the run's seed).
    """

    draws: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        *,
        image_size: int,
        patch: int | None = None,
        gap: int | None = None,
        jitter: int | None = None,
        hidden: int = 4096,
        aberration: Aberration = "drop",
        seed: int = 0,
    ) -> None:
        super().__init__(encoder)
        scale = image_size / PAPER_SPAN
        self.patch = int(96 * scale) if patch is None else patch
        self.gap = int(48 * scale) if gap is None else gap
        self.jitter = int(7 * scale) if jitter is None else jitter
        span = 3 * self.patch + 2 * self.gap + 2 * self.jitter
        if span > image_size or self.patch < 1 or self.gap < 0 or self.jitter < 0:
            raise ValueError(f"relpatch: 3 patches of {self.patch} px, 2 gaps of {self.gap} px and {self.jitter} px "
                             f"of jitter on both sides ({span} px) do not fit image_size={image_size}")
        if aberration not in ("drop", "project", "gray", "none"):
            raise ValueError(f"relpatch_aberration must be drop, project, gray or none, got {aberration!r}")
        self.aberration, self.seed = aberration, seed
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))  # micro-batches drawn so far
        self.head = projection_mlp(2 * encoder.out_dim, hidden, len(NEIGHBOURS))

    def _generator(self, device: torch.device) -> torch.Generator:
        """The random stream of this micro-batch on this rank (see the module docstring)."""
        seed = sample_seed(self.seed, int(self.draws), rank())
        self.draws += 1
        return torch.Generator(device).manual_seed(seed)

    @torch.no_grad()
    def pairs(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(centre, neighbour) patches and the neighbour's index.

        Args:
            images: (N, 3, H, W) ImageNet-normalized.

        Returns:
            patches: float (N, 2, 3, patch, patch), centre first; labels: int64 (N,) in 0..7.
        """
        n, _, h, w = images.shape
        labels = torch.randint(len(NEIGHBOURS), (n,), generator=generator, device=images.device)
        tops, lefts = patch_positions(labels, height=h, width=w, patch=self.patch, gap=self.gap, jitter=self.jitter,
                                      generator=generator)
        patches = crop_patches(images.float(), tops, lefts, self.patch)
        return suppress_aberration(patches, self.aberration, generator), labels

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        """``batch["frames"]``: (B, T, 3, S, S), one pair per frame; the encoder sees 2BT patches."""
        images = batch["frames"].flatten(0, 1)
        patches, labels = self.pairs(images, self._generator(images.device))
        features = self.encoder(patches.flatten(0, 1)).reshape(len(images), -1)  # [centre, neighbour]
        logits = self.head(features).float()
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return StepOutput(loss, {"loss": loss.item(), "acc": acc.item()})


@dataclass(frozen=True)
class RelPatchOptions:
    relpatch_patch: int | None = option(None, "patch side in px (None: 96 * image_size / 398, rounded down)")
    relpatch_gap: int | None = option(None, "gap between neighbouring patches in px (None: 48 * image_size / 398)")
    relpatch_jitter: int | None = option(None, "largest shift of each patch in px (None: 7 * image_size / 398)")
    relpatch_hidden: int = option(4096, "hidden width of the classifier on the concatenated pair (the paper's fc7)")
    relpatch_aberration: Aberration = option("drop", "against chromatic aberration: drop | project | gray | none")


def build_relpatch(encoder: nn.Module, cfg: Any) -> tuple[RelPatch, DataSpec]:
    """Relative patch location from a TrainConfig: one frame per sample, random crop and flip,
    no colour jitter."""
    method = RelPatch(encoder, image_size=cfg.image_size, patch=cfg.relpatch_patch, gap=cfg.relpatch_gap,
                      jitter=cfg.relpatch_jitter, hidden=cfg.relpatch_hidden, aberration=cfg.relpatch_aberration,
                      seed=cfg.seed)
    return method, DataSpec(ClipSampler(length=1), color=False)
