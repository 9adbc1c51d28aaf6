"""Colour spaces and colour quantization for colorization (Vondrick et al. 2018, arXiv:1806.09594).

Everything here runs in torch on the training device, on batches, without gradients being needed:

    rgb = unit_float(batch["frames"])           # uint8 pixels -> RGB in [0, 1] (vidssl.data.transforms)
    lab = rgb_to_lab(rgb)                       # CIE Lab (D65), as skimage.color.rgb2lab
    x = lightness_input(lab[..., :1, :, :])     # what a colorization encoder sees
    centers = fit_color_clusters(ab_pixels, 16) # k-means of the ab plane, (16, 2)
    labels = assign_clusters(ab, centers)       # nearest centre per pixel

Encoder input convention. A colorization encoder sees the lightness ``L / 100`` (in [0, 1])
copied into three channels and ImageNet-normalized like an RGB image: an ordinary 3-channel encoder
fed a gray image. Code that uses such an encoder (label propagation) should feed frames through
:func:`gray_input`, which applies exactly this conversion to ImageNet-normalized RGB frames.
"""

from __future__ import annotations

import torch

from vidssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

# sRGB (linear) -> XYZ and the D65 2-degree white point, the constants of skimage.color.
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65 = (0.95047, 1.0, 1.08883)


def _channels(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """(3,) constants shaped (3, 1, 1) to broadcast over (..., 3, H, W)."""
    return torch.tensor(values, device=like.device, dtype=like.dtype).view(3, 1, 1)


def imagenet_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Undo :func:`vidssl.data.transforms.normalize`: (..., 3, H, W) -> float RGB in [0, 1]."""
    x = x.float()
    return (x * _channels(IMAGENET_STD, x) + _channels(IMAGENET_MEAN, x)).clamp_(0, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (..., 3, H, W) -> CIE Lab (..., 3, H, W) under D65.

    Same formulas and constants as ``skimage.color.rgb2lab``: L in [0, 100], a and b roughly in
    [-128, 127]. Elementwise arithmetic only (no matmul), so bf16 autocast leaves it in float32.
    """
    rgb = rgb.float()
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)
    matrix = torch.tensor(_XYZ_FROM_RGB, device=rgb.device).view(3, 3, 1, 1)
    xyz = (linear.unsqueeze(-4) * matrix).sum(-3) / _channels(_D65, rgb)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856).pow(1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lightness_input(lightness: torch.Tensor) -> torch.Tensor:
    """Lab lightness (..., 1, H, W) in [0, 100] -> encoder input (..., 3, H, W): ``L / 100``
    in three channels, ImageNet-normalized (the module docstring says why)."""
    gray = (lightness.float() / 100).expand(*lightness.shape[:-3], 3, *lightness.shape[-2:])
    return (gray - _channels(IMAGENET_MEAN, gray)) / _channels(IMAGENET_STD, gray)


def gray_input(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalized RGB frames (..., 3, H, W) -> the gray input a colorization encoder was
    trained on (:func:`lightness_input` of their Lab lightness)."""
    return lightness_input(rgb_to_lab(imagenet_to_rgb(x))[..., :1, :, :])


def assign_clusters(ab: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Nearest colour cluster of every pixel.

    Args:
        ab: (..., 2, H, W) the a and b channels.
        centers: (C, 2) cluster centres in the ab plane.

    Returns:
        int64 (..., H, W) cluster indices in [0, C).
    """
    points = ab.float().movedim(-3, -1)  # (..., H, W, 2)
    distances = (points.unsqueeze(-2) - centers.float()).square().sum(-1)  # (..., H, W, C)
    return distances.argmin(-1)


@torch.no_grad()
def fit_color_clusters(points: torch.Tensor, num_clusters: int, *, iters: int = 50, seed: int = 0) -> torch.Tensor:
    """k-means (k-means++ seeding, then Lloyd iterations) of ab colours; deterministic given ``seed``.

    Vondrick et al. quantize the ab plane into 16 clusters fitted by k-means on training frames.

    Args:
        points: (N, 2) ab values, N >= ``num_clusters``.
        num_clusters: C.
        iters: at most this many Lloyd iterations (stops early once assignments are stable).
        seed: seeds the k-means++ draws.

    Returns:
        float32 (C, 2) centres on ``points``' device, sorted by a then b so the order does not
        depend on the draw.
    """
    points = points.float()
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < num_clusters:
        raise ValueError(f"need (N, 2) points with N >= {num_clusters}, got {tuple(points.shape)}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    cpu = points.cpu()
    centers = cpu[torch.randint(len(cpu), (1,), generator=g)]
    for _ in range(1, num_clusters):  # k-means++: draw proportionally to squared distance
        d2 = torch.cdist(cpu, centers).square().min(1).values
        if d2.sum() > 0:
            pick = torch.multinomial(d2 / d2.sum(), 1, generator=g)
        else:  # fewer distinct colours than clusters: duplicates are harmless
            pick = torch.randint(len(cpu), (1,), generator=g)
        centers = torch.cat([centers, cpu[pick]])
    centers = centers.to(points.device)
    labels = None
    for _ in range(iters):
        new_labels = torch.cdist(points, centers).argmin(1)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        counts = torch.bincount(labels, minlength=num_clusters).float()
        sums = torch.zeros_like(centers).index_add_(0, labels, points)
        filled = counts > 0  # an empty cluster keeps its centre
        centers[filled] = sums[filled] / counts[filled, None]
    order = sorted(range(num_clusters), key=lambda i: (float(centers[i, 0]), float(centers[i, 1])))
    return centers[order].contiguous()
