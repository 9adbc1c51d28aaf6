"""Frame transforms on uint8 tensors (T, 3, H, W), built from torchvision v2.

torchvision v2 transforms treat leading dimensions as a batch and draw one set of parameters per
call, which is what clip-consistent augmentation needs; per-frame independent augmentation calls
them once per frame (see :class:`vidssl.data.datasets.VideoFrameDataset`).
"""

from __future__ import annotations

from torchvision.transforms import v2


def random_crop(size: int, *, scale: tuple[float, float] = (0.2, 1.0)) -> v2.Transform:
    """Random resized crop to ``size`` x ``size`` plus horizontal flip; stays uint8."""
    return v2.Compose([v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip()])


def center_crop(size: int) -> v2.Transform:
    """Resize the short side to ``size`` and take the centre square (evaluation)."""
    return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])

