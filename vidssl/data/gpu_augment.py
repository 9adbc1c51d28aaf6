"""The colour half of the SimCLR / MoCo-v2 augmentation, batched on the training device.

Loader workers then only decode, crop and flip (cheap, uint8); colour jitter, grayscale and blur
run here on whole batches, with parameters drawn per image. On a GPU this removes the per-image
CPU cost that would otherwise cap throughput well below the model's speed.

Differences from torchvision's per-image ColorJitter, stated so results can be compared: the four
jitters are applied in a fixed order (brightness, contrast, saturation, hue) rather than a random
one, and hue is rotated in YIQ space (a linear map) rather than shifted in HSV.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# RGB -> YIQ (NTSC); hue rotation is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_GRAY = torch.tensor([0.299, 0.587, 0.114])


def _hue_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(N,) angles in radians -> (N, 3, 3) RGB -> RGB hue rotations."""
    rgb2yiq = _RGB2YIQ.to(angles.device)
    yiq2rgb = torch.linalg.inv(rgb2yiq)
    cos, sin = angles.cos(), angles.sin()
    rot = torch.zeros(len(angles), 3, 3, device=angles.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return yiq2rgb @ rot @ rgb2yiq


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur with a different sigma per image: x (N, 3, H, W), sigma (N,)."""
    n, c, h, w = x.shape
    r = torch.arange(kernel, device=x.device, dtype=x.dtype) - kernel // 2
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*3, K)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (kernel // 2, kernel // 2, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, kernel // 2, kernel // 2), mode="reflect"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


@torch.no_grad()
def color_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    p_jitter: float = 0.8,
    p_gray: float = 0.2,
    p_blur: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    share: int = 1,
) -> torch.Tensor:
    """SimCLR colour augmentation of a batch, parameters drawn per image.

    Args:
        x: float (N, 3, H, W) in [0, 1] (any device; channels_last is fine).
        generator: on ``x``'s device; seed it per step for reproducible, resumable runs.
        jitter: brightness, contrast, saturation, hue strengths as torchvision's ColorJitter.
        share: consecutive groups of ``share`` images get the same parameters (the T frames of
            one clip, for clip-consistent augmentation); N must be a multiple of it.

    Returns:
        float (N, 3, H, W) in [0, 1].
    """
    n, dev = x.shape[0], x.device
    if n % share:
        raise ValueError(f"{n} images do not split into groups of {share}")
    b, c, s, h = jitter

    def rand() -> torch.Tensor:  # (N,): one draw per group of ``share`` images
        return torch.rand(n // share, generator=generator, device=dev).repeat_interleave(share)

    def uniform(low: float, high: float) -> torch.Tensor:
        return rand() * (high - low) + low

    on = (rand() < p_jitter)[:, None, None, None]
    gray_w = _GRAY.to(dev, x.dtype).view(1, 3, 1, 1)

    y = x * uniform(1 - b, 1 + b).view(n, 1, 1, 1)
    mean = (y * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = mean + (y - mean) * uniform(1 - c, 1 + c).view(n, 1, 1, 1)
    gray = (y * gray_w).sum(1, keepdim=True)
    y = gray + (y - gray) * uniform(1 - s, 1 + s).view(n, 1, 1, 1)
    m = _hue_matrices(uniform(-h, h) * 2 * math.pi).to(x.dtype)
    y = torch.einsum("nij,njhw->nihw", m, y).clamp_(0, 1)
    x = torch.where(on, y, x)

    to_gray = (rand() < p_gray)[:, None, None, None]
    x = torch.where(to_gray, (x * gray_w).sum(1, keepdim=True).expand_as(x), x)

    blur = rand() < p_blur
    sigma = uniform(*blur_sigma)
    kernel = 2 * (x.shape[-1] // 20) + 1  # ~10% of the image side, as SimCLR
    if blur.any() and kernel > 1:
        x = torch.where(blur[:, None, None, None], _gaussian_blur(x.contiguous(), sigma, kernel), x)
    return x.clamp_(0, 1)
