"""Cutting square patches out of a batch of images at per-image positions, on the device.

The patch-based pretext tasks (jigsaw tiles, relative patch location) draw a few random positions
per image and need the pixels there; one gather does all of them at once, without Python loops
over images, and works the same on CPU and GPU.
"""

from __future__ import annotations

import torch


def crop_patches(images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` x ``size`` patches of every image at the given top-left corners.

    Args:
        images: (N, C, H, W).
        tops, lefts: int64 (N, K) top-left corners of K patches per image, or (N, K, C) to take
            each channel at its own position (jigsaw's colour-channel jitter). Pixels that fall
            outside the image repeat the nearest border pixel.
        size: patch side in pixels.

    Returns:
        (N, K, C, size, size) patches: ``out[n, k, c] == images[n, c, top:top + size, left:left + size]``.
    """
    n, c, h, w = images.shape
    if tops.shape != lefts.shape or tops.shape[0] != n or tops.ndim not in (2, 3):
        raise ValueError(f"tops and lefts must both be (N, K) or (N, K, C) with N={n}, got "
                         f"{tuple(tops.shape)} and {tuple(lefts.shape)}")
    if tops.ndim == 2:
        tops, lefts = tops[..., None].expand(-1, -1, c), lefts[..., None].expand(-1, -1, c)
    offsets = torch.arange(size, device=images.device)
    rows = (tops.to(images.device)[..., None] + offsets).clamp_(0, h - 1)  # (N, K, C, size)
    cols = (lefts.to(images.device)[..., None] + offsets).clamp_(0, w - 1)
    image_index = torch.arange(n, device=images.device).view(n, 1, 1, 1, 1)
    channel_index = torch.arange(c, device=images.device).view(1, 1, c, 1, 1)
    return images[image_index, channel_index, rows[..., :, None], cols[..., None, :]]
