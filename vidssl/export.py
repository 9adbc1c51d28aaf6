"""Encoder-only export and load: the trained trunk without the method, heads or optimizer.

    save_encoder(encoder, Path("r18.safetensors"))                        # weights + how to rebuild
    encoder = load_encoder("r18.safetensors")                             # nothing else needed
    save_encoder(encoder, Path("r18.pth"), format="torchvision")          # torchvision.models.resnet18()
    save_encoder(encoder, Path("r18.onnx"), format="onnx")                # outputs "pooled" and "features"

Every file is written through :func:`vidssl.files.atomic_path` (a hidden temporary sibling moved
into place), so an interrupted export never leaves a half-written file under the final name. This
module imports only :mod:`vidssl.models.encoders` (and :mod:`vidssl.files`): exported files are
usable without the training code.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import torch
import torchvision
from torch import nn

from vidssl.files import atomic_path
from vidssl.models.encoders import Encoder, ResNetEncoder, check_weights, encoder_from_config

CONFIG_KEY = "vidssl_encoder"
"""safetensors metadata key holding ``json.dumps(encoder.config)``."""
METADATA_KEY = "vidssl_metadata"
"""safetensors (and ONNX) metadata key holding ``json.dumps(metadata)`` of :func:`save_encoder`."""


def _config_json(encoder: Encoder) -> str:
    try:
        return json.dumps(encoder.config)
    except TypeError as err:
        raise ValueError(
            f"encoder config {encoder.config!r} is not JSON-serializable, so the export could not be "
            f"rebuilt; build the encoder with plain keyword values ({err})"
        ) from err


def _tensors(encoder: Encoder) -> dict[str, torch.Tensor]:
    # contiguous() also turns channels_last weights into the standard layout that safetensors and
    # torchvision expect; clone() so no two entries share storage (safetensors refuses that).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in encoder.state_dict().items()}


def _check_torchvision(encoder: Encoder) -> None:
    """Raise ValueError unless a plain torchvision ResNet can represent ``encoder`` exactly."""
    if not isinstance(encoder, ResNetEncoder):
        raise ValueError(
            f"format='torchvision' needs a torchvision ResNet encoder, not {encoder.config['name']!r}; "
            "use format='safetensors' or 'onnx'"
        )
    if encoder.config["in_chans"] != 3:
        raise ValueError(
            f"format='torchvision': torchvision's {encoder.config['name']} takes 3 input channels, this encoder "
            f"{encoder.config['in_chans']}; use format='safetensors' or 'onnx'"
        )
    if encoder.stride != 32:
        raise ValueError(
            f"format='torchvision': torchvision's {encoder.config['name']} has stride 32, this encoder "
            f"{encoder.stride} (same weights, different network); use format='safetensors' or 'onnx'"
        )
    if encoder.config["kwargs"].get("padding", "zeros") != "zeros":
        raise ValueError(
            f"format='torchvision': torchvision's {encoder.config['name']} pads its convolutions with zeros, this "
            f"encoder with {encoder.config['kwargs']['padding']} (same weights, different network); use "
            "format='safetensors' or 'onnx'"
        )
    # Builder kwargs such as groups or width_per_group change the shapes: compare with the real thing.
    reference = getattr(torchvision.models, encoder.config["name"])(weights=None).state_dict()
    ours = encoder.state_dict()
    mismatched = [k for k, v in ours.items() if k not in reference or reference[k].shape != v.shape]
    if mismatched:
        raise ValueError(
            f"format='torchvision': torchvision's default {encoder.config['name']} does not match this "
            f"encoder (built with {encoder.config['kwargs']}): {', '.join(mismatched[:5])}"
        )


class _PooledAndDense(nn.Module):
    """Both outputs of the encoder contract from one forward, for a two-output ONNX graph: ``pooled``
    is what ``encoder(images)`` gives (the class token for a ViT), ``features`` its dense maps."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, pooled = self.encoder.forward_dense_and_pooled(images)
        return pooled, features


def _export_onnx(encoder: Encoder, path: Path, *, metadata: dict[str, Any] | None, image_size: int) -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:  # torch's exporter needs both; say so before tracing rather than deep inside it
        raise ImportError(f"format='onnx' needs {' and '.join(missing)}: pip install onnx onnxscript")
    param = next(encoder.parameters())
    example = torch.randn(2, encoder.config["in_chans"], image_size, image_size, device=param.device, dtype=param.dtype)
    dim = torch.export.Dim
    modes = {module: module.training for module in encoder.modules()}  # some may be frozen in eval
    wrapper = _PooledAndDense(encoder).eval()  # BatchNorm with running statistics, not the batch's
    try:
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["pooled", "features"],
            # Batch is always dynamic; AUTO keeps height / width dynamic where the model allows it
            # (fully convolutional ResNets) and fixes them where it does not (a ViT without
            # dynamic_img_size).
            dynamic_shapes=({0: dim("batch"), 2: dim.AUTO, 3: dim.AUTO},),
            verbose=False,
        )
    finally:
        for module, training in modes.items():
            module.train(training)
    assert program is not None  # with no file argument the exporter returns the program
    # AUTO dimensions get names like "s14"; readers of the graph (and its output shapes, which are
    # written in terms of the input's) should see what they are.
    images_shape: Any = program.model.graph.inputs[0].shape
    spatial = zip(images_shape[2:], ("height", "width"), strict=True)
    program.rename_axes({axis: name for axis, name in spatial if not isinstance(axis, int)})
    program.model.metadata_props[CONFIG_KEY] = _config_json(encoder)
    if metadata is not None:
        program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
    # Weights inside the .onnx file (one file to move atomically); ONNX caps that at 2 GB.
    with atomic_path(path) as tmp:
        program.save(str(tmp), external_data=False)


def save_encoder(
    encoder: Encoder,
    path: str | Path,
    *,
    format: Literal["safetensors", "torchvision", "onnx"] = "safetensors",  # noqa: A002 - the user-facing word
    metadata: dict[str, Any] | None = None,
    image_size: int = 224,
) -> Path:
    """Write ``encoder`` alone to ``path`` atomically; returns ``path``.

    Formats:
        safetensors: the encoder's state_dict; metadata ``vidssl_encoder`` = ``json.dumps(encoder.config)``
            and ``vidssl_metadata`` = ``json.dumps(metadata)``. :func:`load_encoder` rebuilds from it.
        torchvision: ``torch.save`` of a plain dict of tensors that ``torchvision.models.<name>()``
            loads with ``strict=False`` missing only ``fc.weight`` / ``fc.bias``. Only for ResNets
            with 3 input channels and stride 32; it cannot hold ``metadata``.
        onnx: ONE graph with input ``images`` (B, in_chans, H, W) and two outputs, ``pooled``
            (B, C) and ``features`` (B, C, H / stride, W / stride), so a single file serves image
            tasks and dense ones. Batch is dynamic, and height / width too for ResNets; traced in
            eval mode at ``image_size``. Config and metadata go into the model's metadata_props.
            Needs the ``onnx`` and ``onnxscript`` packages.

    Raises:
        ValueError: a format that cannot represent the encoder, or a config that is not JSON.
    """
    path = Path(path)
    if format == "safetensors":
        from safetensors.torch import save_file

        header = {CONFIG_KEY: _config_json(encoder)}
        if metadata is not None:
            header[METADATA_KEY] = json.dumps(metadata)
        tensors = _tensors(encoder)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=header)
    elif format == "torchvision":
        _check_torchvision(encoder)
        if metadata is not None:
            raise ValueError("format='torchvision' holds tensors only; use format='safetensors' to keep metadata")
        tensors = _tensors(encoder)
        with atomic_path(path) as tmp:
            torch.save(tensors, tmp)
    elif format == "onnx":
        _export_onnx(encoder, path, metadata=metadata, image_size=image_size)
    else:
        raise ValueError(f"unknown export format {format!r}; use safetensors, torchvision or onnx")
    return path


def load_encoder(path: str | Path) -> Encoder:
    """Rebuild an encoder from a ``.safetensors`` file written by :func:`save_encoder` (on CPU).

    The architecture comes from the file's ``vidssl_encoder`` metadata and the weights load
    strictly. For a bare state_dict (e.g. torchvision's) use ``build_encoder(name, weights=path)``.

    Raises:
        ValueError: the file is not safetensors, or carries no ``vidssl_encoder`` metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such encoder file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except SafetensorError as err:
        raise ValueError(f"{path}: not a safetensors file written by save_encoder ({err})") from err
    if CONFIG_KEY not in header:
        raise ValueError(
            f"{path}: no '{CONFIG_KEY}' metadata, so the architecture is unknown; it was not written by "
            "vidssl.export.save_encoder (for a bare state_dict use build_encoder(name, weights=path))"
        )
    encoder = encoder_from_config(json.loads(header[CONFIG_KEY]))
    tensors = load_file(path)
    check_weights(tensors, encoder.state_dict(), path)
    encoder.load_state_dict(tensors, strict=True)
    return encoder
