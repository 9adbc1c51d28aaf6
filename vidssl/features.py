"""The one feature source: which encoder, on which device, in which precision, and its features,
dense or pooled, from its own output or from a tapped layer.

    encoder = resolve_encoder("runs/fti")                       # a run folder: its checkpoints/last.pt
    encoder = resolve_encoder("runs/fti/encoder.safetensors")   # an exported encoder (vidssl export)
    encoder = resolve_encoder("random:resnet18", stride=8)      # random initialisation (seeded), a baseline

    pooled = pooled_features(encoder, images, device="cpu")       # (N, 3, H, W) uint8 -> (N, D) float32
    pooled = pooled_features(encoder, images, layer="layer3")     # a module's output, averaged over space
    with pooled_extractor(encoder, device=device) as embed:       # the same, one batch at a time
        batch_features = embed(batch)

    extractor = resolve_features("runs/fti", stride=8)   # dense, for propagation: any resolve_encoder spec
    extractor = resolve_features("random", stride=8)     # random-init ResNet-18, a baseline
    extractor = resolve_features("pixels", stride=8)     # Lab colour averaged per 8 x 8 cell
    extractor = resolve_features("random", layer="res3") # CRW's trunk: ResNet-18 up to layer3, 256-d
    extractor = resolve_features("copy")                 # no features: the first frame's labels repeated
    maps = extractor(frames)    # (B, H, W, 3) uint8 RGB -> (B, ceil(H / 8), ceil(W / 8), C), L2-normalized

Every ``vidssl eval`` (:mod:`vidssl.evaluation`) and ``vidssl propagate``
(:mod:`vidssl.propagation`) read features through this module. It sits beside both packages
rather than inside evaluation so that propagation, which evaluation builds on, never imports
evaluation. Images are uint8 RGB, ImageNet-normalized here (:func:`vidssl.data.transforms.normalize`);
devices follow :func:`vidssl.device.resolve_device`.

Precision. Pooled features are computed under bf16 autocast on CUDA (``autocast=True``, the image
evaluations) or in float32 (``autocast=False``), and returned as float32 on the CPU. Dense maps
are stored in :func:`storage_dtype` (``precision=auto``: float16 on CUDA, where unit vectors lose
nothing that matters at that precision and take half the memory of float32; float32 on CPU, where
half-precision matmuls are slow) and computed under bf16 autocast on CUDA unless they are stored in
float32: ``precision=float32`` runs the encoder in float32 too, as the released propagation codes
do (every propagation preset pins it). On the CPU everything is float32.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.data.transforms import normalize
from vidssl.device import resolve_device
from vidssl.models.encoders import Encoder

BASELINES = ("random", "pixels", "copy")
"""Baselines every ``encoder=`` key takes besides files and ``random:NAME``: ``random`` (a random-init
ResNet-18, ``random:resnet18``), ``pixels`` (CIE Lab colour averaged per cell: dense maps for
propagation, their spatial mean for image tasks) and ``copy`` (propagation only: the first frame's
labels repeated on every frame, the floor every encoder should beat)."""

LAYERS = ("", "res3", "res4")
"""Dense layers of a ResNet for propagation: ``res3`` = the trunk up to torchvision's ``layer3`` (CRW's
ResNet with ``layer4`` removed; 256-d for ResNet-18, 1024-d for ResNet-50, at the encoder's stride
or 16, whichever is finer), ``res4`` = up to ``layer4`` (the encoder's own output), ``''`` = the
encoder's own output (any architecture). mmaction's configs (VFS, Spa-then-Temp) count stages from
0, so their ``out_indices=(2,)`` is ``res3`` here."""


# ------------------------------------------------------------------------------------------------
# Which encoder


def resolve_encoder(spec: str, *, seed: int = 0, stride: int | None = None) -> Encoder:
    """The encoder named by ``spec``, in eval mode on the CPU.

    ``spec`` is a run folder (its ``checkpoints/last.pt``) or a ``.pt`` checkpoint of ``vidssl
    train`` (:func:`vidssl.engine.checkpoint.encoder_from_checkpoint`), an exported ``.safetensors``
    (:func:`vidssl.export.load_encoder`), ``random:NAME``: a random initialisation drawn with
    ``seed``, or a baseline of :data:`BASELINES` (``random``, ``pixels``; ``copy`` has no encoder).

    ``stride`` (None: as built or saved) rebuilds a loaded encoder at another output stride with
    the same weights (:func:`with_stride`): dense tasks read stride-8 maps of an encoder trained
    or exported at stride 32.

    Raises:
        FileNotFoundError: ``spec`` is neither a baseline, ``random:NAME`` nor an existing path.
        ValueError: ``copy``, or the architecture has no such stride (e.g. a ViT's is its patch size).
    """
    from vidssl.models.encoders import build_encoder

    if spec == "copy":
        raise ValueError("encoder=copy is a propagation baseline (the first frame's labels repeated); "
                         "image tasks have no first frame: use random, pixels or an encoder")
    if spec == "pixels":
        return PixelEncoder(stride=stride or 8).eval()
    if spec == "random":
        spec = "random:resnet18"
    if spec.startswith("random:"):
        torch.manual_seed(seed)
        return build_encoder(spec.removeprefix("random:"), stride=stride).eval()
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such encoder file or run folder (or use random, random:NAME, pixels)")
    if path.is_dir() or path.suffix == ".pt":
        from vidssl.engine.checkpoint import encoder_from_checkpoint

        encoder = encoder_from_checkpoint(path)
    else:
        from vidssl.export import load_encoder

        encoder = load_encoder(path)
    return (encoder if stride is None else with_stride(encoder, stride)).eval()


def encoder_input(spec: str) -> str:
    """What the encoder named by ``spec`` was trained to read: ``gray`` or ``rgb``
    (:attr:`vidssl.methods.base.Method.input` of the method that trained it).

    Read without loading weights where possible: an export's ``input`` metadata (or its
    ``method``), a run folder's ``config.yaml``, a checkpoint's config. Baselines, ``random:NAME``,
    files of other origin and paths that do not exist are ``rgb`` (the last fail later, where the
    encoder is loaded, with their own message).
    """
    import json

    from vidssl.methods import METHODS

    path = Path(spec)
    method = None
    if not spec or spec in BASELINES or spec.startswith("random:") or not path.exists():
        return "rgb"
    try:
        if path.is_dir() or path.suffix == ".pt":
            if path.is_dir() and (path / "config.yaml").is_file():
                from vidssl.engine.config import load_run_config

                method = load_run_config(path / "config.yaml")[0].method
            else:
                from vidssl.engine.checkpoint import load_checkpoint, load_latest
                from vidssl.engine.config import from_dict

                found = load_latest(path / "checkpoints") if path.is_dir() else (load_checkpoint(path), path)
                if found and "config" in found[0]:
                    method = from_dict(found[0]["config"])[0].method  # this release's layout, or 0.1's
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            from vidssl.export import METADATA_KEY

            with safe_open(str(path), framework="pt") as handle:
                metadata = json.loads((handle.metadata() or {}).get(METADATA_KEY) or "{}")
            if metadata.get("input") in ("rgb", "gray"):  # a resolved value, never "auto"
                return metadata["input"]
            method = metadata.get("method")
    except Exception:  # noqa: BLE001 - unreadable here: loading the encoder reports it properly
        return "rgb"
    cls = METHODS.get(method) if isinstance(method, str) else None
    return cls.input if cls is not None else "rgb"


Input = Literal["auto", "rgb", "gray"]
"""What an evaluation feeds an encoder: ``rgb``, ``gray`` (Lab lightness) or ``auto``."""
INPUTS: tuple[str, ...] = get_args(Input)


def input_option() -> Any:
    """The ``input`` key every evaluation config shares (resolve it with :func:`resolve_input`)."""
    from vidssl.config import option

    return option("auto", "what the encoder sees: rgb | gray (Lab lightness) | auto = what it was trained on "
                  "(colorization: gray)")


def resolve_input(value: str, spec: str) -> str:
    """``value`` (one of :data:`INPUTS`) with ``auto`` replaced by :func:`encoder_input` of the
    encoder ``spec``; evaluation configs resolve it when built, so their results record what the
    encoder was given. A config changed with ``dataclasses.replace(cfg, encoder=...)`` keeps the
    input resolved for its old encoder: build a new one, or pass ``input="auto"`` with it.

    Raises:
        ConfigError: ``value`` is not one of :data:`INPUTS` (a ValueError: the CLI prints one line).
    """
    if value not in INPUTS:
        from vidssl.config import ConfigError

        raise ConfigError(f"input must be auto, rgb or gray, got {value!r}")
    return encoder_input(spec) if value == "auto" else value


def with_stride(encoder: Encoder, stride: int) -> Encoder:
    """``encoder`` rebuilt at output ``stride`` with its own weights (itself when it already has it).

    Changing a ResNet's stride only changes conv strides (and dilations), never a parameter's
    shape, so the state_dict loads strictly into the rebuilt network (CRW, 2020,
    arXiv:2006.14613, evaluates its stride-32-trained ResNet at stride 8 this way).
    """
    from vidssl.models.encoders import encoder_from_config

    if encoder.stride == stride:
        return encoder
    rebuilt = encoder_from_config({**encoder.config, "stride": stride})
    rebuilt.load_state_dict(encoder.state_dict(), strict=True)
    return rebuilt


class PixelEncoder(Encoder):
    """The ``pixels`` baseline as an encoder (image tasks): CIE Lab colour, scaled to about [-1, 1]
    per channel ((L - 50) / 50, a / 50, b / 50), averaged over ``stride`` x ``stride`` cells; its
    pooled output is the image's mean colour (3-d). Input: ImageNet-normalized RGB. No parameters."""

    def __init__(self, *, stride: int = 8) -> None:
        super().__init__()
        self.stride = stride
        self.out_dim = 3
        self.config = {"name": "pixels", "stride": stride, "in_chans": 3, "kwargs": {}}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        from vidssl.models.color import imagenet_to_rgb, rgb_to_lab

        lab = rgb_to_lab(imagenet_to_rgb(x.float()).clamp(0, 1))
        lab = (lab - torch.tensor([50.0, 0.0, 0.0], device=x.device).view(1, 3, 1, 1)) / 50
        return F.avg_pool2d(lab, self.stride, ceil_mode=True)

    def classifier_prefixes(self) -> tuple[str, ...]:
        return ()


# ------------------------------------------------------------------------------------------------
# Pooled features: image tasks and the invariance measure


def find_module(encoder: Encoder, layer: str) -> nn.Module:
    """The module of ``encoder`` named ``layer`` (a name from ``encoder.named_modules()``).

    Raises:
        ValueError: no such module; the message suggests the closest names.
    """
    modules = dict(encoder.named_modules())
    if layer not in modules:
        close = difflib.get_close_matches(layer, [m for m in modules if m], n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"encoder has no module named {layer!r}{hint}")
    return modules[layer]


def spatial_mean(output: torch.Tensor) -> torch.Tensor:
    """A tapped module's output as (B, C): maps (B, C, H, W) are averaged over H, W, token
    sequences (B, N, C) over N (ViT blocks), and (B, C) outputs kept as they are.

    Raises:
        ValueError: any other shape.
    """
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        return output.mean(dim=1)
    if output.ndim == 2:
        return output
    raise ValueError(f"cannot pool an output of shape {tuple(output.shape)}")


class _LayerTap:
    """A forward hook keeping the :func:`spatial_mean` of the latest output of one module."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.value = spatial_mean(output)


@contextlib.contextmanager
def pooled_extractor(
    encoder: Encoder,
    *,
    device: str | torch.device = "auto",
    layer: str | None = None,
    autocast: bool = True,
    gray: bool = False,
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """A function from (B, 3, H, W) uint8 RGB images to (B, D) float32 features on the CPU.

    Inside the block ``encoder`` is in eval mode on ``device`` (it stays there afterwards; its
    mode is restored). The feature is the encoder's pooled output (``encoder(x)``: see
    :meth:`vidssl.models.encoders.Encoder.forward_head`), or with ``layer`` the
    :func:`spatial_mean` of that module's output, taken by a forward hook so that any encoder
    works without code of its own. Each call runs under ``torch.inference_mode`` and, with
    ``autocast`` on CUDA, bf16 autocast. With ``gray`` the images are first turned into the
    Lab-lightness input a colorization encoder was trained on (as :class:`EncoderFeatures` does
    for propagation; :func:`encoder_input` says which an encoder reads).

    Raises:
        ValueError: ``layer`` names no module of the encoder (with the closest names).
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    tap = _LayerTap()
    handle = find_module(encoder, layer).register_forward_hook(tap) if layer else None
    was_training = encoder.training
    encoder.to(dev).eval()
    bf16 = autocast and dev.type == "cuda"

    from vidssl.models.color import gray_input

    def embed(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            x = normalize(images.to(dev, non_blocking=True))
            output = encoder(gray_input(x) if gray else x)
            if tap.value is not None:
                output, tap.value = tap.value, None
            return output.float().flatten(1).cpu()

    try:
        yield embed
    finally:
        encoder.train(was_training)
        if handle is not None:
            handle.remove()


def pooled_features(
    encoder: Encoder,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    layer: str | None = None,
    autocast: bool = True,
    gray: bool = False,
) -> torch.Tensor:
    """(N, 3, H, W) uint8 images -> (N, D) float32 features on the CPU, ``batch_size`` at a time
    (see :func:`pooled_extractor` for ``device``, ``layer``, ``autocast`` and ``gray``)."""
    with pooled_extractor(encoder, device=device, layer=layer, autocast=autocast, gray=gray) as embed:
        return torch.cat([embed(images[start : start + batch_size]) for start in range(0, images.shape[0], batch_size)])


# ------------------------------------------------------------------------------------------------
# Dense features: label propagation


class FeatureExtractor(Protocol):
    """A dense feature source, as propagation needs it."""

    stride: int  # input pixels per feature cell
    device: torch.device
    dtype: torch.dtype  # of the returned maps
    name: str  # recorded with the results

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, ceil(H / stride), ceil(W / stride), C) L2-normalized."""
        ...


def storage_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of stored dense features: ``auto`` is float16 on CUDA and float32 elsewhere.

    Raises:
        ValueError: not auto, float32, float16 or bfloat16.
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision must be auto, {', '.join(dtypes)}; got {precision!r}")
    return dtypes[precision]


def dense_autocast(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether dense maps stored in ``dtype`` are computed under bf16 autocast: on CUDA, unless
    they are stored in float32 (then the encoder runs in float32, as the released propagation
    protocols do)."""
    return device.type == "cuda" and dtype != torch.float32


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


class CopyFirst:
    """The ``copy`` baseline: no features; propagation repeats the first frame's labels (masks:
    the annotation itself) on every frame. Called, it returns (B, h, w, 0) maps."""

    def __init__(self, *, stride: int = 8, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                 ) -> None:
        self.stride = stride
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = "copy"

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        b, h, w = frames.shape[:3]
        return torch.zeros(b, -(-h // self.stride), -(-w // self.stride), 0, dtype=self.dtype, device=self.device)


class EncoderFeatures:
    """An encoder's ``forward_features`` on ImageNet-normalized frames, L2-normalized over channels,
    returned in ``dtype``; on CUDA under bf16 autocast unless ``dtype`` is float32 (``autocast``
    says which). ``gray``: the frames are first turned into the Lab-lightness input a colorization
    encoder was trained on (:func:`vidssl.models.color.gray_input`)."""

    def __init__(self, encoder: Encoder, *, name: str, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, gray: bool = False, layer: str = "") -> None:
        from vidssl.models.encoders import ResNetEncoder

        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(repr(x) for x in LAYERS)}, got {layer!r}")
        if layer == "res3" and not isinstance(encoder, ResNetEncoder):
            raise ValueError(f"layer=res3 needs a ResNet encoder; {name!r} is a {type(encoder).__name__} "
                             "(use layer='' for its own output)")
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.layer = layer
        # layer3 keeps its stride of 2 only in a stride-32 ResNet: then res3 is at 16.
        self.stride = min(int(encoder.stride), 16) if layer == "res3" else int(encoder.stride)
        self.dtype = dtype
        self.autocast = dense_autocast(self.device, dtype)
        self.name = name if not layer else f"{name}@{layer}"
        self.gray = gray
        in_chans = encoder.config.get("in_chans", 3)
        if in_chans != 3:
            raise ValueError(f"encoder {name!r} takes {in_chans} input channels; propagation feeds 3 (RGB or gray)")

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        x = normalize(torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2))
        if self.gray:
            from vidssl.models.color import gray_input

            x = gray_input(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            maps = self.encoder.forward_stage(x, "layer3") if self.layer == "res3" else self.encoder.forward_features(x)
        height, width = x.shape[2:]
        allowed = {(-(-height // self.stride), -(-width // self.stride)), (height // self.stride, width // self.stride)}
        if tuple(maps.shape[2:]) not in allowed:
            raise ValueError(
                f"encoder {self.name!r} gives {tuple(maps.shape[2:])} feature maps for {height}x{width} frames, "
                f"not size / stride {self.stride}; propagation needs maps aligned with the pixel grid"
            )
        return F.normalize(maps.float(), dim=1).permute(0, 2, 3, 1).to(self.dtype)


def resolve_features(spec: str, *, stride: int | None = 8, device: str = "auto", precision: str = "auto",
                     seed: int = 0, gray: bool = False, layer: str = "") -> FeatureExtractor:
    """The dense feature extractor named by ``spec``: ``pixels``, ``random`` (= ``random:resnet18``),
    ``copy`` (:class:`CopyFirst`), or anything :func:`resolve_encoder` takes (a run folder, an
    exported ``.safetensors``, ``random:NAME``), rebuilt at ``stride`` (weights fit every stride;
    None keeps the encoder's own, and means 8 for ``pixels``), read at ``layer`` (:data:`LAYERS`),
    on ``device``, storing maps in ``storage_dtype(precision)`` (float32: computed in float32 too).

    Raises:
        ValueError: an empty ``spec``, an unknown precision or device, or a stride the
            architecture lacks.
        FileNotFoundError: a path that does not exist.
    """
    dev = resolve_device(device)
    dtype = storage_dtype(precision, dev)
    if spec == "pixels":
        return LabPixels(stride=stride or 8, device=dev, dtype=dtype)
    if spec == "copy":
        return CopyFirst(stride=stride or 8, device=dev, dtype=dtype)
    if not spec:
        raise ValueError("no encoder given: encoder=random | pixels | copy | RUN_FOLDER | FILE.safetensors | "
                         "random:NAME")
    name = "random:resnet18" if spec == "random" else spec
    encoder = resolve_encoder(name, seed=seed, stride=stride)
    return EncoderFeatures(encoder, name=name, device=dev, dtype=dtype, gray=gray, layer=layer)
