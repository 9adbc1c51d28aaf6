"""Relative patch location (context prediction: Doersch, Gupta & Efros, 2015, arXiv:1505.05192).

A centre patch and one of its 8 neighbours on a 3 x 3 grid of patches separated by a gap, each
patch jittered on its own, go through the shared encoder; their pooled features are concatenated
(centre first) and an MLP predicts which neighbour it was (8 classes, row-major:
0 = top-left, 1 = top, 2 = top-right, 3 = left, 4 = right, 5 = bottom-left, 6 = bottom,
7 = bottom-right; see :data:`NEIGHBOURS`).

Paper settings and what they become here (S = ``image_size``): 96 px patches, 48 px gaps and up to
7 px of jitter, a 3 x 3 arrangement that spans 3 * 96 + 2 * 48 + 2 * 7 = 398 px, scaled by S / 398
and rounded down so that the arrangement fits the frame: at the default S = 224 patches of 54 px,
gaps of 27 px and jitter up to 3 px (``patch``, ``gap``, ``jitter`` override each). The grid is
centred in the frame; where in the image it lies comes from the
shared random resized crop (scale 0.2-1, flip), the paper sampled the first patch uniformly.

Chromatic aberration (the paper's main shortcut: colour fringes grow towards the image border and
betray a patch's absolute position), ``aberration``:

* ``drop`` (default; the paper's "color dropping"): in every patch two of the three colour channels
  are replaced by Gaussian noise of 1/100 the std of the kept channel, around the channel's mean
  (0 once normalized, as in the paper's mean-subtracted inputs);
* ``project`` (the paper's "projection"): colours lose their green-magenta component (the axis
  along which aberration shifts colours), computed in RGB;
* ``gray``: both patches in grayscale; ``none``: off.

The data pipeline's SimCLR colour augmentation is off (``color=False``). The paper's late-fusion
head (fc6 per patch, then fc7 4096 and fc8 on the concatenation) becomes the pooled encoder
output per patch, then an MLP of hidden width ``hidden`` (4096). Not implemented: the
paper's random down- and up-sampling of some patches (robustness to pixelation).

Random choices (neighbour, jitter, kept channel, noise) are drawn on the training device from
:meth:`~vidssl.methods.base.Method.draw_generator` (seeded by the run's seed, the micro-batches drawn
so far and the DDP rank), so a resumed run draws what the uninterrupted run would have. Patches are
cut and treated in [0, 1] RGB and ImageNet-normalized for the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from vidssl.config import option
from vidssl.data.samplers import ClipSampler
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import IMAGENET_MEAN, unit_float
from vidssl.methods.base import Method, StepOutput
from vidssl.models.encoders import Encoder
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


def suppress_aberration(patches: torch.Tensor, mode: Aberration, generator: torch.Generator) -> torch.Tensor:
    """The chromatic-aberration counter-measure ``mode`` on RGB patches.

    Args:
        patches: float (N, K, 3, h, w), RGB in [0, 1].
        mode: ``drop``: keep one random channel per patch, the two others become Gaussian noise of
            1/100 its std around their ImageNet mean; ``project``: remove the green-magenta component in RGB; ``gray``:
            luminance in all three channels; ``none``: unchanged.

    Returns:
        (N, K, 3, h, w), RGB (``drop``'s noise channels around 0).
    """
    if mode == "none":
        return patches
    if mode == "drop":
        keep = torch.randint(3, patches.shape[:2], generator=generator, device=patches.device)  # (N, K)
        kept = patches.gather(2, keep[..., None, None, None].expand(-1, -1, 1, *patches.shape[-2:]))
        noise = torch.randn(patches.shape, generator=generator, device=patches.device, dtype=patches.dtype)
        # around the channel's ImageNet mean: after normalization a dropped channel is ~0, as in the
        # paper's mean-subtracted inputs (not black, which would be -2 there)
        mean = torch.tensor(IMAGENET_MEAN, device=patches.device, dtype=patches.dtype).view(3, 1, 1)
        noise = mean + noise * kept.std(dim=(-2, -1), keepdim=True) / 100
        channel = torch.arange(3, device=patches.device).view(1, 1, 3, 1, 1)
        return torch.where(channel == keep[..., None, None, None], patches, noise)
    rgb = patches
    if mode == "project":
        axis = torch.tensor(_GREEN_MAGENTA, device=patches.device)
        axis = (axis / axis.norm()).view(3, 1, 1)
        rgb = rgb - (rgb * axis).sum(-3, keepdim=True) * axis
    elif mode == "gray":
        rgb = (rgb * torch.tensor(_LUMA, device=patches.device).view(3, 1, 1)).sum(-3, keepdim=True).expand_as(rgb)
    else:
        raise ValueError(f"aberration must be drop, project, gray or none, got {mode!r}")
    return rgb


class RelPatch(Method):
    """Context prediction: (centre, neighbour) patches through the shared encoder -> 8 classes.

    Config (:class:`RelPatch.Config`): ``patch``, ``gap``, ``jitter`` override the sizes scaled
    from the paper's by image_size / 398 (px); ``hidden``: hidden width of the classifier on the
    concatenated pair; ``aberration``: chromatic-aberration counter-measure (see
    :func:`suppress_aberration`).
    """

    draws: torch.Tensor

    @dataclass(frozen=True)
    class Config:
        patch: int | None = option(None, "patch side in px (None: 96 * image_size / 398, rounded down)")
        gap: int | None = option(None, "gap between neighbouring patches in px (None: 48 * image_size / 398)")
        jitter: int | None = option(None, "largest shift of each patch in px (None: 7 * image_size / 398)")
        hidden: int = option(4096, "hidden width of the classifier on the concatenated pair (the paper's fc7)")
        aberration: Aberration = option("drop", "against chromatic aberration: drop | project | gray | none")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        scale = image_size / PAPER_SPAN
        self.patch = int(96 * scale) if cfg.patch is None else cfg.patch
        self.gap = int(48 * scale) if cfg.gap is None else cfg.gap
        self.jitter = int(7 * scale) if cfg.jitter is None else cfg.jitter
        span = 3 * self.patch + 2 * self.gap + 2 * self.jitter
        if span > image_size or self.patch < 1 or self.gap < 0 or self.jitter < 0:
            raise ValueError(f"relpatch: 3 patches of {self.patch} px, 2 gaps of {self.gap} px and {self.jitter} px "
                             f"of jitter on both sides ({span} px) do not fit image_size={image_size}")
        if cfg.aberration not in ("drop", "project", "gray", "none"):
            raise ValueError(f"aberration must be drop, project, gray or none, got {cfg.aberration!r}")
        self.aberration = cfg.aberration
        self.register_draw_counter()
        self.head = projection_mlp(2 * encoder.out_dim, cfg.hidden, len(NEIGHBOURS))

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"hidden": 32}

    def data(self) -> DataSpec:
        """One frame per sample, random crop and flip, no colour jitter."""
        return DataSpec(ClipSampler(length=1), color=False)

    @torch.no_grad()
    def pairs(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(centre, neighbour) patches and the neighbour's index.

        Args:
            images: (N, 3, H, W) RGB, uint8 or float in [0, 1].

        Returns:
            patches: float (N, 2, 3, patch, patch) RGB, centre first; labels: int64 (N,) in 0..7.
        """
        n, _, h, w = images.shape
        labels = torch.randint(len(NEIGHBOURS), (n,), generator=generator, device=images.device)
        tops, lefts = patch_positions(labels, height=h, width=w, patch=self.patch, gap=self.gap, jitter=self.jitter,
                                      generator=generator)
        patches = crop_patches(unit_float(images), tops, lefts, self.patch)
        return suppress_aberration(patches, self.aberration, generator), labels

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        """``batch["frames"]``: (B, T, 3, S, S), one pair per frame; the encoder sees 2BT patches."""
        images = batch["frames"].flatten(0, 1)
        patches, labels = self.pairs(images, self.draw_generator(images.device))
        features = self.encoder(self.normalize(patches.flatten(0, 1))).reshape(len(images), -1)  # [centre, neighbour]
        logits = self.head(features).float()
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return StepOutput(loss, {"loss": loss.item(), "acc": acc.item()})
