"""Dense features that propagation compares: an encoder's feature maps, or Lab pixels.

    extractor = resolve_features("runs/fti", stride=8)      # any resolve_encoder spec
    extractor = resolve_features("random", stride=8)        # random-init ResNet-18, a baseline
    extractor = resolve_features("pixels", stride=8)        # Lab colour averaged per 8 x 8 cell
    maps = extractor(frames)    # (B, H, W, 3) uint8 RGB -> (B, ceil(H / 8), ceil(W / 8), C), L2-normalized

Every extractor returns channels-last, L2-normalized maps on its device, in its storage dtype
(float16 on CUDA: unit vectors lose nothing that matters at that precision and take half the
memory of float32; float32 on CPU, where half-precision matmuls are slow).
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.data.transforms import normalize
from vidssl.evaluation.features import resolve_device

BASELINES = ("pixels", "random")
"""Feature names besides encoder specs: ``pixels`` (Lab colour) and ``random`` (random:resnet18)."""


class FeatureExtractor(Protocol):
    """What propagation needs from a feature source."""

    stride: int  # input pixels per feature cell
    device: torch.device
    dtype: torch.dtype  # of the returned maps
    name: str  # recorded with the results

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, ceil(H / stride), ceil(W / stride), C) L2-normalized."""
        ...


def storage_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of stored features: ``auto`` is float16 on CUDA and float32 elsewhere."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision must be auto, {', '.join(dtypes)}; got {precision!r}")
    return dtypes[precision]


class LabPixels:
    """CIE Lab colour averaged over ``stride`` x ``stride`` cells, centred and scaled to about
    [-1, 1] per channel ((L - 50) / 50, a / 50, b / 50), then L2-normalized: propagation by colour
    alone, the baseline every learned feature should beat."""

    def __init__(
        self, *, stride: int = 8, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        self.stride = stride
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = "pixels"

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        lab = np.stack([cv2.cvtColor(f.astype(np.float32) / 255, cv2.COLOR_RGB2LAB) for f in frames])
        x = torch.from_numpy(lab).to(self.device).permute(0, 3, 1, 2)
        x = (x - torch.tensor([50.0, 0.0, 0.0], device=self.device).view(1, 3, 1, 1)) / 50
        # ceil_mode: the last partial cell averages the pixels it has, as an encoder's last cell sees them.
        x = F.avg_pool2d(x, self.stride, ceil_mode=True)
        return F.normalize(x, dim=1).permute(0, 2, 3, 1).to(self.dtype)


class EncoderFeatures:
    """An encoder's ``forward_features`` on ImageNet-normalized frames (bf16 autocast on CUDA),
    L2-normalized over channels. ``gray``: the frames are first turned into the Lab-lightness
    input a colorization encoder was trained on (:func:`vidssl.models.color.gray_input`)."""

    def __init__(self, encoder: nn.Module, *, name: str, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, gray: bool = False) -> None:
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.stride = int(encoder.stride)
        self.dtype = dtype
        self.name = name
        self.gray = gray
        in_chans = getattr(encoder, "config", {}).get("in_chans", 3)
        if in_chans != 3:
            raise ValueError(f"encoder {name!r} takes {in_chans} input channels; propagation feeds 3 (RGB or gray)")

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        x = normalize(torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2))
        if self.gray:
            from vidssl.models.color import gray_input

            x = gray_input(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            maps = self.encoder.forward_features(x)
        height, width = x.shape[2:]
        allowed = {(-(-height // self.stride), -(-width // self.stride)), (height // self.stride, width // self.stride)}
        if tuple(maps.shape[2:]) not in allowed:
            raise ValueError(
                f"encoder {self.name!r} gives {tuple(maps.shape[2:])} feature maps for {height}x{width} frames, "
                f"not size / stride {self.stride}; propagation needs maps aligned with the pixel grid"
            )
        return F.normalize(maps.float(), dim=1).permute(0, 2, 3, 1).to(self.dtype)


def resolve_features(spec: str, *, stride: int | None = 8, device: str = "auto", precision: str = "auto",
                     seed: int = 0, gray: bool = False) -> FeatureExtractor:
    """The feature extractor named by ``spec``: ``pixels``, ``random`` (= ``random:resnet18``), or
    anything :func:`vidssl.evaluation.encoders.resolve_encoder` takes (a run folder, an exported
    ``.safetensors``, ``random:NAME``), rebuilt at ``stride`` (weights fit every stride; None keeps
    the encoder's own, and means 8 for ``pixels``)."""
    from vidssl.evaluation.encoders import resolve_encoder

    dev = resolve_device(device)
    dtype = storage_dtype(precision, dev)
    if spec == "pixels":
        return LabPixels(stride=stride or 8, device=dev, dtype=dtype)
    if not spec:
        raise ValueError("no encoder given: encoder=pixels | random | RUN_FOLDER | FILE.safetensors | random:NAME")
    name = "random:resnet18" if spec == "random" else spec
    encoder = resolve_encoder(name, seed=seed, stride=stride)
    return EncoderFeatures(encoder, name=name, device=dev, dtype=dtype, gray=gray)
