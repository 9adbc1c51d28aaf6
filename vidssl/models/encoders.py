"""Image encoders behind one contract, and the ``ENCODERS`` registry.

Every encoder is an :class:`Encoder` (timm's contract):

    encoder = build_encoder("resnet18", stride=8)
    dense = encoder.forward_features(images)   # (B, 3, H, W) -> (B, C, H / stride, W / stride)
    pooled = encoder.forward_head(dense)       # (B, C): the global average of ``dense``
    pooled = encoder(images)                   # the same: forward = forward_head(forward_features(x))
    encoder.out_dim, encoder.stride            # C, and 8 / 16 / 32 for the ResNets
    encoder_from_config(encoder.config)        # the same architecture, freshly initialised

ResNets come from torchvision with random weights (nothing is ever downloaded) and keep
torchvision's parameter names, so an encoder's state_dict loads into ``torchvision.models.resnet50()``
with only ``fc.weight`` / ``fc.bias`` missing (the same network when built at stride 32 with the
default ``padding="zeros"``; ``padding="reflect"`` is CRW's). ``vit_tiny`` / ``vit_small`` are
torchvision ViTs with patch (= stride) 16 whose pooled output is the class token rather than the
mean of the dense map (the one exception to ``forward = forward_head(forward_features(x))``: see :class:`ViTEncoder`).
``timm:<name>`` wraps any timm model (timm is optional).
Weights come from local files only: ``build_encoder(name, weights="trunk.safetensors")``.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

TIMM_PREFIX = "timm:"
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
PADDING_MODES = ("zeros", "reflect")


class Encoder(nn.Module):
    """Base of every encoder (timm's contract): dense maps from :meth:`forward_features`, the
    pooled vector from :meth:`forward_head`, and ``forward(x) = forward_head(forward_features(x))``.

    Attributes:
        out_dim: channels C of both outputs.
        stride: input pixels per feature-map cell (H' = H / stride).
        config: the :func:`build_encoder` arguments that rebuild this architecture
            (``name``, ``stride``, ``in_chans``, ``kwargs``); JSON-serializable when ``kwargs`` are.
            :func:`encoder_from_config` builds it again (export and checkpoints store it).
    """

    out_dim: int
    stride: int
    config: dict[str, Any]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) float images -> (B, C, H / stride, W / stride) feature maps."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """(B, C, H', W') maps of :meth:`forward_features` -> (B, C): their global average.

        ``pre_logits`` is timm's flag for "stop before the classifier"; encoders carry no
        classifier (timm's ``num_classes=0``), so both values give the same vector.
        """
        return features.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, C): ``forward_head(forward_features(x))``."""
        return self.forward_head(self.forward_features(x))

    def forward_dense_and_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_chans, H, W) -> ((B, C, H', W') maps, (B, C) pooled) from one forward pass: what
        ``forward_features(x)`` and ``forward(x)`` give, for code that needs both (ONNX export)."""
        features = self.forward_features(x)
        return features, self.forward_head(features)

    def classifier_prefixes(self) -> tuple[str, ...]:
        """Key prefixes of the classification head that a classification checkpoint carries and
        this encoder drops (``fc.`` for torchvision ResNets); ignored when loading weights."""
        raise NotImplementedError


class ResNetEncoder(Encoder):
    """A torchvision ResNet without ``avgpool`` / ``fc``, its modules adopted under their own names.

    The modules are attributes of this object (not of a wrapped child) so that the state_dict keys
    are exactly torchvision's: ``conv1.weight``, ``layer1.0.conv1.weight``, ... ``forward_head`` is
    the global average of the layer4 map (torchvision's ``avgpool``), at any stride.
    """

    def __init__(self, trunk: torchvision.models.ResNet, *, stride: int, config: dict[str, Any]) -> None:
        super().__init__()
        self.conv1 = trunk.conv1
        self.bn1 = trunk.bn1
        self.relu = trunk.relu
        self.maxpool = trunk.maxpool
        self.layer1 = trunk.layer1
        self.layer2 = trunk.layer2
        self.layer3 = trunk.layer3
        self.layer4 = trunk.layer4
        self.out_dim = trunk.fc.in_features
        self.stride = stride
        self.config = config

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, out_dim, H / stride, W / stride) (rounded up for odd sizes)."""
        return self.forward_stage(x, "layer4")

    def forward_stage(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """(B, in_chans, H, W) -> the dense output of ``stage`` (``layer1`` .. ``layer4``), later
        stages not run (CRW's label propagation reads ``layer3``, 256-d for ResNet-18, of the
        stride-8 trunk it trained through ``layer4``). Channels: :meth:`stage_dim`."""
        if stage not in RESNET_STAGES:
            raise ValueError(f"stage must be one of {', '.join(RESNET_STAGES)}, got {stage!r}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in RESNET_STAGES[: RESNET_STAGES.index(stage) + 1]:
            x = getattr(self, name)(x)
        return x

    def set_padding(self, mode: str) -> None:
        """Pad every convolution that pads (``padding > 0``: conv1 and the 3x3 convs, not the 1x1
        downsample convs, not the max pool) with ``mode``: ``zeros`` (torchvision's) or ``reflect``
        (CRW's ``--model-type scratch``, Jabri et al. 2020, arXiv:2006.14613). Weights are unchanged;
        the mode is recorded in ``config["kwargs"]["padding"]`` (only when not ``zeros``, so existing
        configs stay as they were) so checkpoints and exports rebuild the same network.

        Raises:
            ValueError: a mode other than ``zeros`` / ``reflect``.
        """
        if mode not in PADDING_MODES:
            raise ValueError(f"{self.config['name']}: padding must be one of {', '.join(PADDING_MODES)}, got {mode!r}")
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and sum(module.padding) > 0:
                module.padding_mode = mode
        kwargs = {k: v for k, v in self.config["kwargs"].items() if k != "padding"}
        self.config = {**self.config, "kwargs": kwargs if mode == "zeros" else {**kwargs, "padding": mode}}

    @property
    def padding(self) -> str:
        """The padding mode of the convolutions that pad: ``zeros`` or ``reflect`` (:meth:`set_padding`)."""
        return str(self.config["kwargs"].get("padding", "zeros"))

    def stage_dim(self, stage: str) -> int:
        """Channels of :meth:`forward_stage`'s output for ``stage``."""
        block = getattr(self, stage)[-1]
        return (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels

    def classifier_prefixes(self) -> tuple[str, ...]:
        return ("fc.",)


class TimmEncoder(Encoder):
    """A timm model (``num_classes=0``) held as ``.model``, with dense maps in (B, C, h, w).

    ViT-like models return tokens: the class / register tokens (``num_prefix_tokens``) are dropped
    and the patch tokens laid back on their grid; models that return channels-last maps (Swin)
    are permuted. ``stride`` is timm's reduction of the last feature map (the patch size for ViTs).
    ``forward_head`` is the global average of that dense map for every family, timm ViTs included
    (whose own timm head would read the class token instead).
    """

    model: Any  # a timm model: its attributes (patch_embed, pretrained_cfg, ...) vary by family

    def __init__(self, model: nn.Module, *, config: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        feature_info = getattr(model, "feature_info", None)
        if not feature_info:
            raise ValueError(f"timm model {config['name']!r} has no feature_info: its output stride is unknown")
        self.out_dim = int(self.model.num_features)
        self.stride = int(feature_info[-1]["reduction"])
        self.config = config

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, out_dim, h, w), h = H / stride for fully convolutional models."""
        features = self.model.forward_features(x)
        if features.ndim == 3:  # (B, prefix + h * w, C) tokens
            patch_embed = self.model.patch_embed
            if getattr(self.model, "dynamic_img_size", False):
                height, width = patch_embed.dynamic_feat_size(x.shape[-2:])
            else:
                height, width = patch_embed.grid_size
            tokens = features[:, self.model.num_prefix_tokens :]
            return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)
        if getattr(self.model, "output_fmt", "NCHW") == "NHWC":
            return features.permute(0, 3, 1, 2)
        return features

    def classifier_prefixes(self) -> tuple[str, ...]:
        # timm names its head in pretrained_cfg: "fc", "head", "head.fc", ("head", "head_dist") ...
        classifier = self.model.pretrained_cfg.get("classifier") or ()
        names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        return tuple(f"model.{name}." for name in names)


def _replace_input_conv(trunk: torchvision.models.ResNet, in_chans: int) -> None:
    """Give ``trunk`` a ``conv1`` for ``in_chans`` channels (1 for the L channel in colorization)."""
    old = trunk.conv1
    conv = nn.Conv2d(in_chans, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                     padding=old.padding, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    trunk.conv1 = conv


def _resnet(name: str, *, stride: int, in_chans: int, padding: str, kwargs: dict[str, Any]) -> ResNetEncoder:
    if stride not in (8, 16, 32):
        raise ValueError(f"{name}: stride must be 8, 16 or 32, got {stride}")
    if "weights" in kwargs:
        raise ValueError(f"{name}: weights are local files only: build_encoder({name!r}, weights='path/to/file')")
    reduce = {32: 0, 16: 1, 8: 2}[stride]  # how many of layer4, layer3 lose their stride of 2
    bottleneck = name == "resnet50"
    if bottleneck and reduce:
        # torchvision dilates the Bottleneck's 3x3 conv so the receptive field is kept.
        kwargs = {**kwargs, "replace_stride_with_dilation": [False, reduce == 2, True]}
    trunk = getattr(torchvision.models, name)(weights=None, **kwargs)
    if not bottleneck:
        # torchvision's BasicBlock refuses dilation, so resnet18/34 use the "stride-reduced" trick of
        # CRW / videowalk (Jabri et al., 2020, arXiv:2006.14613): the first block of layer4 (and
        # layer3 for stride 8) gets stride 1 in its first conv and its downsample conv, without
        # dilation. Parameter shapes and names are unchanged.
        for layer in [trunk.layer4, trunk.layer3][:reduce]:
            layer[0].conv1.stride = (1, 1)
            layer[0].downsample[0].stride = (1, 1)
    if in_chans != 3:
        _replace_input_conv(trunk, in_chans)
    recorded = {k: v for k, v in kwargs.items() if k != "replace_stride_with_dilation"}  # from stride
    config = {"name": name, "stride": stride, "in_chans": in_chans, "kwargs": recorded}
    encoder = ResNetEncoder(trunk, stride=stride, config=config)
    encoder.set_padding(padding)  # records a non-default mode in config["kwargs"]
    return encoder


def resnet18(*, stride: int = 32, in_chans: int = 3, padding: str = "zeros", **kwargs: Any) -> ResNetEncoder:
    """torchvision ResNet-18 trunk, random init, out_dim 512. Stride 16 / 8 by the stride-reduced
    trick (no dilation: BasicBlock does not support it). ``padding``: ``zeros`` | ``reflect``
    (:meth:`ResNetEncoder.set_padding`). Other ``kwargs`` go to torchvision's builder."""
    return _resnet("resnet18", stride=stride, in_chans=in_chans, padding=padding, kwargs=kwargs)


def resnet34(*, stride: int = 32, in_chans: int = 3, padding: str = "zeros", **kwargs: Any) -> ResNetEncoder:
    """torchvision ResNet-34 trunk, random init, out_dim 512. Stride 16 / 8 by the stride-reduced
    trick (no dilation: BasicBlock does not support it). ``padding`` as :func:`resnet18`; other
    ``kwargs`` go to torchvision's builder."""
    return _resnet("resnet34", stride=stride, in_chans=in_chans, padding=padding, kwargs=kwargs)


def resnet50(*, stride: int = 32, in_chans: int = 3, padding: str = "zeros", **kwargs: Any) -> ResNetEncoder:
    """torchvision ResNet-50 trunk, random init, out_dim 2048. Stride 16 / 8 by torchvision's
    ``replace_stride_with_dilation`` (dilated layer4, and layer3 for 8). ``padding`` as :func:`resnet18`;
    other ``kwargs`` go to torchvision."""
    return _resnet("resnet50", stride=stride, in_chans=in_chans, padding=padding, kwargs=kwargs)


class ViTEncoder(Encoder):
    """A torchvision VisionTransformer without ``heads``, its modules adopted under their own names.

    The pooled output is the final-layer-normed class token (B, C), the representation DINO
    evaluates; it is NOT a pooling of the dense patch map. ``forward_features`` lays the patch
    tokens on their grid, (B, C, H / 16, W / 16), for dense use (propagation); that grid no longer
    holds the class token, so:

    * ``forward(x)`` is the one exception to ``forward_head(forward_features(x))``: it is
      ``forward_head(forward_tokens(x))``, one pass that keeps the class token.
    * ``forward_head`` takes the token sequence (B, 1 + h * w, C) of :meth:`forward_tokens` and
      returns its class token; given a (B, C, h, w) grid it raises instead of quietly averaging
      patches into a vector that is not this encoder's pooled output.
    * ``forward_dense_and_pooled(x)`` gives the grid and the class token from one pass.

    Why not keep the class token inside what ``forward_features`` returns (an extra attribute, a
    tensor subclass, a cached value on the module): the grid must stay a plain (B, C, h, w) tensor
    that survives ``.float()``, autocast, DDP and ONNX tracing, and a value cached on the module
    would tie ``forward_head`` to whichever batch ran last.

    Any input size works: the position embedding of the build size (``image_size``, 224 by
    default) is bicubically interpolated to the input's grid, as DINO does for its 96 px local
    crops (DINO, 2021, arXiv:2104.14294). State_dict keys are torchvision's (``conv_proj.weight``,
    ``class_token``, ``encoder.pos_embedding``, ``encoder.layers.*``), so a torchvision ViT
    checkpoint loads with only ``heads.*`` ignored.
    """

    def __init__(self, trunk: torchvision.models.VisionTransformer, *, config: dict[str, Any]) -> None:
        super().__init__()
        self.conv_proj = trunk.conv_proj
        self.class_token = trunk.class_token
        self.encoder = trunk.encoder
        self.patch_size = trunk.patch_size
        self.grid = trunk.image_size // trunk.patch_size  # the position embedding's grid side
        self.out_dim = trunk.hidden_dim
        self.stride = trunk.patch_size
        self.config = config

    def _position_embedding(self, height: int, width: int) -> torch.Tensor:
        """(1, 1 + height * width, C): the class position and the grid resized to height x width."""
        pos = self.encoder.pos_embedding
        if (height, width) == (self.grid, self.grid):
            return pos
        grid = pos[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(grid.float(), size=(height, width), mode="bicubic", align_corners=False)
        return torch.cat([pos[:, :1], grid.to(pos.dtype).flatten(2).transpose(1, 2)], dim=1)

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(B, in_chans, H, W) -> (B, 1 + h * w, C) tokens after the last layer norm, h, w."""
        x = self.conv_proj(x)  # (B, C, h, w); sizes not divisible by the patch lose the remainder
        batch, _, height, width = x.shape
        x = torch.cat([self.class_token.expand(batch, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self._position_embedding(height, width)
        return self.encoder.ln(self.encoder.layers(self.encoder.dropout(x))), height, width

    @staticmethod
    def _grid(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, 1 + h * w, C) tokens -> (B, C, h, w): the patch tokens on their grid."""
        patches = tokens[:, 1:]
        return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], height, width)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 1 + (H // 16) * (W // 16), out_dim): the class token, then the
        patch tokens row by row, after the final layer norm."""
        return self._tokens(x)[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, out_dim, H // 16, W // 16) patch tokens (no class token)."""
        return self._grid(*self._tokens(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """(B, 1 + h * w, C) tokens of :meth:`forward_tokens` -> (B, C): the final-layer-normed
        class token (not a pooling of the patches; ``pre_logits`` as in :class:`Encoder`).

        Raises:
            ValueError: a (B, C, h, w) grid from :meth:`forward_features`, which has no class token.
        """
        if features.ndim != 3:
            raise ValueError(
                f"{self.config['name']}: forward_head takes the tokens of forward_tokens (B, 1 + h * w, C), not "
                f"{tuple(features.shape)}: the pooled output is the class token, which the patch grid of "
                "forward_features does not hold (use encoder(x) or forward_dense_and_pooled(x))"
            )
        return features[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, out_dim): the class token, ``forward_head(forward_tokens(x))``."""
        return self.forward_head(self.forward_tokens(x))

    def forward_dense_and_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_chans, H, W) -> ((B, C, H // 16, W // 16) patch grid, (B, C) class token), one pass."""
        tokens, height, width = self._tokens(x)
        return self._grid(tokens, height, width), self.forward_head(tokens)

    def classifier_prefixes(self) -> tuple[str, ...]:
        return ("heads.",)


def _vit(
    name: str, *, dim: int, depth: int, heads: int, stride: int, in_chans: int, kwargs: dict[str, Any]
) -> ViTEncoder:
    if stride != 16:
        raise ValueError(f"{name}: the stride is the patch size, 16, not {stride} (train with encoder_stride=16)")
    if "weights" in kwargs:
        raise ValueError(f"{name}: weights are local files only: build_encoder({name!r}, weights='path/to/file')")
    trunk = torchvision.models.VisionTransformer(
        image_size=kwargs.get("image_size", 224), patch_size=16, num_layers=depth, num_heads=heads, hidden_dim=dim,
        mlp_dim=4 * dim, **{k: v for k, v in kwargs.items() if k != "image_size"},
    )
    if in_chans != 3:
        conv = nn.Conv2d(in_chans, dim, kernel_size=16, stride=16)
        nn.init.trunc_normal_(conv.weight, std=(1.0 / (in_chans * 16 * 16)) ** 0.5)  # torchvision's init
        nn.init.zeros_(conv.bias)
        trunk.conv_proj = conv
    return ViTEncoder(trunk, config={"name": name, "stride": 16, "in_chans": in_chans, "kwargs": kwargs})


def vit_tiny(*, stride: int = 16, in_chans: int = 3, **kwargs: Any) -> ViTEncoder:
    """ViT-Ti/16 (dim 192, depth 12, 3 heads, MLP 768; DeiT, 2021, arXiv:2012.12877) from
    torchvision's VisionTransformer, random init, out_dim 192. ``image_size`` (default 224) sets
    the position-embedding grid; other ``kwargs`` (dropout, attention_dropout) go to torchvision."""
    return _vit("vit_tiny", dim=192, depth=12, heads=3, stride=stride, in_chans=in_chans, kwargs=kwargs)


def vit_small(*, stride: int = 16, in_chans: int = 3, **kwargs: Any) -> ViTEncoder:
    """ViT-S/16 (dim 384, depth 12, 6 heads, MLP 1536; as in DINO) from torchvision's
    VisionTransformer, random init, out_dim 384. ``kwargs`` as :func:`vit_tiny`."""
    return _vit("vit_small", dim=384, depth=12, heads=6, stride=stride, in_chans=in_chans, kwargs=kwargs)


ENCODERS: dict[str, Callable[..., Encoder]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
}
"""Built-in encoders by name; ``timm:<name>`` (handled by :func:`build_encoder`) adds timm's."""


def _timm_encoder(name: str, *, stride: int | None, in_chans: int, kwargs: dict[str, Any]) -> TimmEncoder:
    model_name = name[len(TIMM_PREFIX) :]
    if importlib.util.find_spec("timm") is None:
        raise ImportError(f"encoder {name!r} needs timm: pip install timm")
    import timm

    if kwargs.get("pretrained"):
        raise ValueError(f"{name}: pretrained weights are never downloaded; pass weights='path/to/file'")
    kwargs = {k: v for k, v in kwargs.items() if k != "pretrained"}
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {model_name!r}{hint}")
    model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    encoder = TimmEncoder(model, config={"name": name, "stride": stride, "in_chans": in_chans, "kwargs": kwargs})
    if stride is not None and stride != encoder.stride:
        raise ValueError(
            f"{name} has stride {encoder.stride}, not {stride}; timm CNNs that support it take "
            f"output_stride={stride} as a keyword (build_encoder({name!r}, output_stride={stride}))"
        )
    encoder.config["stride"] = encoder.stride
    return encoder


def build_encoder(
    name: str,
    *,
    stride: int | None = None,
    weights: str | Path | None = None,
    in_chans: int = 3,
    **kwargs: Any,
) -> Encoder:
    """Build an encoder by registry name or ``timm:<name>``, optionally loading local weights.

    Args:
        name: a key of :data:`ENCODERS` or ``timm:<model name>``.
        stride: output stride; None means the architecture's own (32 for ResNets, the patch size
            for ViTs). ResNets take 8, 16 or 32; timm models must already have it (timm CNNs take
            ``output_stride=`` in ``kwargs``).
        weights: a local ``.safetensors`` file or torch state_dict; see :func:`load_weights`.
        in_chans: input channels (1 for grayscale / L input).
        **kwargs: passed to the builder (torchvision's or ``timm.create_model``); recorded in
            ``encoder.config`` so :func:`vidssl.export.load_encoder` can rebuild it.

    Raises:
        ValueError: an unknown name (with a "did you mean"), an unsupported stride, or weights
            whose keys or shapes do not fit (the message names the file).
        ImportError: ``timm:`` names without timm installed.
    """
    if name.startswith(TIMM_PREFIX):
        encoder: Encoder = _timm_encoder(name, stride=stride, in_chans=in_chans, kwargs=kwargs)
    elif name in ENCODERS:
        own_stride = {} if stride is None else {"stride": stride}  # None: each builder's default
        encoder = ENCODERS[name](**own_stride, in_chans=in_chans, **kwargs)
    else:
        close = difflib.get_close_matches(name, list(ENCODERS), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown encoder {name!r}; {hint}known: {', '.join(ENCODERS)}, or {TIMM_PREFIX}<model name> (needs timm)"
        )
    if weights is not None:
        load_weights(encoder, weights)
    return encoder


def encoder_from_config(config: Mapping[str, Any]) -> Encoder:
    """A freshly initialised encoder of the architecture an ``encoder.config`` dict describes.

    ``config`` holds ``name``, ``stride`` (None: the architecture's own), ``in_chans`` (default 3)
    and ``kwargs`` (default none), as every :class:`Encoder` records it and as
    :func:`vidssl.export.save_encoder` and the training checkpoints store it; loading the saved
    state_dict into the result is then strict.

    Raises:
        ValueError: a config without ``name``, or one :func:`build_encoder` refuses.
    """
    if "name" not in config:
        raise ValueError(f"not an encoder config (no 'name'): {dict(config)!r}")
    return build_encoder(
        config["name"], stride=config.get("stride"), in_chans=config.get("in_chans", 3), **config.get("kwargs", {})
    )


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a torch file loaded with ``weights_only=True``.

    A torch checkpoint that keeps its weights under ``"state_dict"`` or ``"model"`` is unwrapped,
    and the ``module.`` prefix that DistributedDataParallel adds is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or damaged files
        raise ValueError(f"{path}: not a torch state_dict ({type(err).__name__}: {err})") from err
    while isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in ("state_dict", "model") if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def check_weights(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: object) -> None:
    """Refuse weights that would load without error and then compute garbage: a floating-point
    parameter stored as an integer type (a quantized or int8 export: ``load_state_dict`` casts it
    silently), or one holding NaN / inf (a diverged run: propagation then scores J&F 0 without a
    word). Integer buffers (``num_batches_tracked``) are left alone.

    Raises:
        ValueError: naming ``source`` (the file) and the first bad tensor.
    """
    for key, value in state.items():
        want = expected.get(key)
        if want is None or not want.is_floating_point():
            continue
        if not value.is_floating_point():
            raise ValueError(f"{source}: {key} is {str(value.dtype).removeprefix('torch.')}, expected floating-point "
                             "weights (quantized or integer weights are not supported)")
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise ValueError(f"{source}: {key} holds {bad} non-finite values (NaN or inf): the run that wrote it "
                             "diverged, or the file is damaged")


def load_weights(encoder: Encoder, path: str | Path) -> None:
    """Load a local weights file into ``encoder`` in place.

    Accepts the encoder's own state_dict (as :func:`vidssl.export.save_encoder` writes it), a
    classification state_dict of the same architecture (its head, e.g. torchvision's ``fc.*``,
    is ignored), or either under a ``"state_dict"`` / ``"model"`` key. For timm encoders the keys
    may also be timm's own (without the ``model.`` prefix). A 3-channel input conv loads into a
    1-channel encoder by summing over RGB (timm's rule: a gray image gives the same response as
    the RGB image with that gray in every channel).

    Raises:
        ValueError: any other missing or unexpected key, or a shape mismatch; the message names
            the file.
    """
    path = Path(path)
    state = _read_state_dict(path)
    expected = encoder.state_dict()
    if isinstance(encoder, TimmEncoder) and not any(k.startswith("model.") for k in state):
        state = {f"model.{k}": v for k, v in state.items()}
    head = encoder.classifier_prefixes()
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"{label} {len(keys)} keys ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ValueError(f"{path}: weights do not fit encoder {encoder.config['name']!r}: {'; '.join(parts)}")
    for key, value in state.items():
        want = expected[key].shape
        if value.shape == want:
            continue
        if len(want) == 4 and want[1] == 1 and value.shape == (want[0], 3, *want[2:]):
            state[key] = value.sum(dim=1, keepdim=True)  # an RGB input conv into a 1-channel encoder
        else:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, encoder expects {tuple(want)}")
    check_weights(state, expected, path)
    encoder.load_state_dict(state, strict=True)
