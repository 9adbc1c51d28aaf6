"""Frame transforms on uint8 tensors (T, 3, H, W), built from torchvision v2.

torchvision v2 transforms treat leading dimensions as a batch and draw one set of parameters per
call, which is what clip-consistent augmentation needs; per-frame independent augmentation calls
them once per frame (see :class:`vidssl.data.datasets.VideoFrameDataset`).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def random_crop(size: int, *, scale: tuple[float, float] = (0.2, 1.0)) -> v2.Transform:
    """Random resized crop to ``size`` x ``size`` plus horizontal flip; stays uint8."""
    return v2.Compose([v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip()])


def center_crop(size: int) -> v2.Transform:
    """Resize the short side to ``size`` and take the centre square (evaluation)."""
    return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])



def simclr_augment(size: int, *, scale: tuple[float, float] = (0.2, 1.0), blur: float = 0.5) -> v2.Transform:
    """The SimCLR / MoCo-v2 recipe on uint8 frames: random resized crop (MoCo-v2 scale 0.2-1),
    flip, colour jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, Gaussian blur p=``blur``
    (sigma 0.1-2, kernel ~10% of the crop). Chen et al. 2020, arXiv:2002.05709 / 2003.04297."""
    kernel = 2 * (size // 20) + 1
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur),
        ]
    )


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]; float frames (already in [0, 1]) are returned as float."""
    return frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()


def normalize(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] (..., 3, H, W) -> float, ImageNet mean/std (done on the
    training device)."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(3, 1, 1)
    x = frames.float() / 255 if frames.dtype == torch.uint8 else frames
    return (x - mean) / std
