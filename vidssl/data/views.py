"""View recipes: how a sample's frames become the views a method sees.

Each recipe is a picklable callable run in the loader workers, once per sample (see
:class:`vidssl.data.spec.DataSpec`), on uint8 frames. The symmetric SimCLR / MoCo-v2 recipe is the
trainer's default (:func:`vidssl.data.transforms.simclr_augment`, or crop here and colour batched on
the device); the recipes below are the ones that are not a per-frame crop:

* :func:`byol_view` / :class:`PerFrameViews`: BYOL's asymmetric pair (blur 1.0 / 0.1, solarize
  0 / 0.2), one view per frame of a positive pair (or both from one frame);
* :class:`MultiCrop`: DINO's two global and N local crops of one frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2


def byol_view(
    size: int, *, blur: float, solarize: float, scale: tuple[float, float] = (0.08, 1.0)
) -> v2.Transform:
    """One of BYOL's view augmentations on uint8 (..., 3, H, W) (BYOL, 2020, arXiv:2006.07733,
    App. B, Table 6; DINO's too): random resized crop (bicubic) to ``size`` and flip, colour jitter
    0.4/0.4/0.2/0.1 with p 0.8, grayscale p 0.2, Gaussian blur (sigma 0.1-2, kernel ~10% of the
    crop: 23 px at 224) with p ``blur``, solarization (threshold 128) with p ``solarize``."""
    kernel = 2 * (size // 20) + 1
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur),
            v2.RandomSolarize(128, p=solarize),
        ]
    )


class PerFrameViews:
    """View ``i`` is ``transforms[i]`` of frame ``i`` of the sample; a one-frame sample gives every
    view from that frame. Frames are a uint8 (T, 3, H, W) tensor or a list of (3, h, w) crops of
    different sizes; returns uint8 (len(transforms), 3, S, S)."""

    def __init__(self, transforms: Sequence[v2.Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, frames: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        frames = list(frames)
        if len(frames) not in (1, len(self.transforms)):
            raise ValueError(f"{len(self.transforms)} views need 1 or {len(self.transforms)} frames, got {len(frames)}")
        sources = frames if len(frames) > 1 else frames * len(self.transforms)
        return torch.cat([t(f[None]) for t, f in zip(self.transforms, sources, strict=True)])


def byol_views(size: int) -> PerFrameViews:
    """BYOL's asymmetric pair: blur p 1.0 and no solarization for the first view, blur p 0.1 and
    solarization p 0.2 for the second."""
    return PerFrameViews([byol_view(size, blur=1.0, solarize=0.0), byol_view(size, blur=0.1, solarize=0.2)])


class MultiCrop:
    """uint8 frames (T, 3, H, W) -> ``{"frames": (2, 3, G, G) global crops, "local": (N, 3, L, L)}``
    of the first frame (``local`` absent when N = 0): DINO's augmentation (Caron et al. 2021,
    arXiv:2104.14294), BYOL's colour recipe with blur p 1.0 / 0.1 / 0.5 and solarization
    p 0 / 0.2 / 0 for global 1 / global 2 / locals."""

    def __init__(self, *, global_size: int, local_size: int, local_crops: int,
                 global_scale: tuple[float, float], local_scale: tuple[float, float]) -> None:
        self.global1 = byol_view(global_size, blur=1.0, solarize=0.0, scale=global_scale)
        self.global2 = byol_view(global_size, blur=0.1, solarize=0.2, scale=global_scale)
        self.local = byol_view(local_size, blur=0.5, solarize=0.0, scale=local_scale)
        self.local_crops = local_crops

    def __call__(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        frame = frames[:1]
        views = {"frames": torch.cat([self.global1(frame), self.global2(frame)])}
        if self.local_crops:
            views["local"] = torch.cat([self.local(frame) for _ in range(self.local_crops)])
        return views


class PatchGrid:
    """CRW's ``grid`` frame augmentation (Jabri et al. 2020, arXiv:2006.14613; videowalk
    ``utils/augs.py``): each frame independently gets a random resized crop to ``size`` (area
    ``frame_scale``, aspect ``frame_ratio``), is cut into ``patch``-px windows ``stride`` px apart,
    and each window gets its own random resized crop back to ``patch`` px (area ``jitter_scale``).

    uint8 frames (T, 3, H, W) -> uint8 (T * P, 3, patch, patch), frame-major, P = :attr:`per_frame`
    patches per frame in row-major order (49 at the defaults).
    """

    def __init__(self, *, size: int = 256, patch: int = 64, stride: int = 32,
                 frame_scale: tuple[float, float] = (0.8, 0.95), frame_ratio: tuple[float, float] = (0.7, 1.3),
                 jitter_scale: tuple[float, float] = (0.7, 0.9)) -> None:
        if not 0 < patch <= size or stride < 1:
            raise ValueError(f"need 0 < patch <= size and stride >= 1, got patch={patch}, size={size}, stride={stride}")
        self.patch, self.stride = patch, stride
        self.side = (size - patch) // stride + 1
        self.frame = v2.RandomResizedCrop(size, scale=frame_scale, ratio=frame_ratio, antialias=True)
        self.jitter = v2.RandomResizedCrop(patch, scale=jitter_scale, antialias=True)

    @property
    def per_frame(self) -> int:
        return self.side * self.side

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        patches = []
        for frame in frames:
            grid = self.frame(frame).unfold(1, self.patch, self.stride).unfold(2, self.patch, self.stride)
            patches += [self.jitter(w) for w in grid.permute(1, 2, 0, 3, 4).reshape(-1, 3, self.patch, self.patch)]
        return torch.stack(patches)
