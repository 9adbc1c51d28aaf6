"""The two halves of a training run's configuration, and how ``key=value`` finds its half.

``TrainConfig`` holds the engine's keys (data, encoder, optimisation, loader, device, logging);
each method's ``Config`` holds the method's own (:mod:`vidssl.methods`). The command line stays flat
(``vidssl train method=byol lr=0.1 proj_dim=256``): :func:`resolve` sends every key to the engine or
to the chosen method, and a key that belongs to another method is an error that names it.
``config.yaml`` and checkpoints store the halves apart (``{"train": ..., "method": ...}``);
:func:`upgrade_flat` reads the flat, prefixed files of release 0.1.

A recipe (``vidssl train RECIPE.yaml key=value ...``) is a YAML file of keys, flat or in the
``train:`` / ``method:`` layout of ``config.yaml``; one per method ships in ``vidssl/recipes/`` (the
papers' settings) and the CPU-scale ones in ``vidssl/recipes/cpu/`` (``vidssl train cpu/fti ~/videos``:
what the demo and the learning benchmark train).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from vidssl.config import ConfigError, check_values, fields_help, option, parse_overrides, to_dict, typed_values
from vidssl.data.backends import backend_help

log = logging.getLogger(__name__)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@dataclass(frozen=True)
class TrainConfig:
    data: str = option("", "folder of videos (or images); empty trains on synthetic videos generated into OUT/synth")
    data_kind: Literal["videos", "images"] = option(
        "videos", "videos: video files and frame folders | images: an image folder (ImageFolder layout, labels ignored)"
    )
    method: str = option("fti", "a training method (vidssl train method=NAME --help lists its own keys too)")
    encoder: str = option("resnet18", "resnet18 | resnet34 | resnet50 | vit_tiny | vit_small | timm:NAME")
    encoder_stride: int | None = option(
        None, "output stride of the encoder: none = the architecture's own (32 ResNet, 16 ViT); 8 or 16 for dense tasks"
    )
    weights: str = option("", "initial encoder weights (local .safetensors or state_dict file)")
    steps: int = option(1000, "optimizer steps (on resume: the run's own unless given, which extends it)", min=1)
    batch_size: int = option(64, "samples per micro-batch per process", min=1)
    accum: int = option(1, "micro-batches accumulated per optimizer step", min=1)
    out: str = option("runs/train", "run folder: config.yaml, checkpoints/, log.jsonl, tb/, encoder.safetensors")
    resume: bool = option(False, "continue the run in OUT from its newest checkpoint (to its own steps unless "
                                 "steps= is given)")
    overwrite: bool = option(False, "replace the run already in OUT (without resume or overwrite, training "
                                    "into a run folder is refused)")
    optimizer: Literal["sgd", "lars", "adamw"] = option("sgd", "sgd | lars | adamw")
    lr: float = option(0.05, "peak learning rate (per optimizer step, not scaled by batch)", min=0)
    min_lr: float = option(0.0, "final learning rate of the cosine schedule", min=0)
    warmup_steps: int = option(0, "linear warmup steps", min=0)
    weight_decay: float = option(1e-4, "weight decay (not on biases and norms unless weight_decay_all)", min=0)
    weight_decay_all: bool = option(False, "weight decay on every parameter, biases and norms too (mmcv's default, "
                                           "as the released VFS)")
    clip_grad: float = option(0.0, "clip the gradient norm to this (0: off)", min=0)
    image_size: int = option(224, "crop size seen by the encoder", min=1)
    color_on: Literal["auto", "loader", "device"] = option(
        "auto", "where colour jitter / grayscale / blur run: loader workers, or batched on the device "
        "(auto: device on CUDA)"
    )
    decode_size: int = option(256, "short side frames are resized to while decoding", min=1)
    backend: str = option("auto", backend_help())
    workers: int = option(4, "DataLoader workers per process", min=0)
    device: str = option("auto", "auto | cpu | cuda")
    amp: bool = option(True, "bf16 autocast on CUDA")
    channels_last: bool = option(True, "channels_last memory format on CUDA")
    compile: bool = option(False, "torch.compile the method")
    seed: int = option(0, "seed of initialisation, sampling and augmentation")
    save_every: int = option(500, "checkpoint every N steps (and at the end); the one before is kept too", min=1)
    log_every: int = option(10, "log every N steps", min=1)
    export: bool = option(True, "write OUT/encoder.safetensors at the end")
    snapshots: tuple[int, ...] = option((), "steps at which the encoder is also written to "
                                            "OUT/snapshots/step_N.safetensors (learning curves); validated there too")
    val_every: int = option(0, "label-free validation every N steps, at the start and the end: the cycle score of "
                               "'vidssl eval cycle' on the val_videos held-out videos, logged to OUT/val.jsonl "
                               "(0 = off)",
                            min=0)
    val_videos: int = option(0, "videos of DATA held out of training (chosen by name, the same in every run) for "
                                "val_every or a later 'vidssl eval cycle held_out=N'; 0 = none, or 4 with val_every",
                             min=0)
    # the names of vidssl.propagation.propagate.PRESETS (not imported here: propagation reads run configs)
    val_preset: Literal["", "default", "crw", "vfs", "dino", "dinov3", "spa-then-temp"] = option(
        "", "with val_every: propagation protocol of the score ('' or default = vidssl's own; crw, ...)")
    val_size: int = option(256, "with val_every: short side of the validation frames", min=16)
    keep_best: bool = option(False, "with val_every: keep OUT/best/encoder.safetensors, the encoder of the best "
                                    "validation score (OUT/best/best.json says which step)")
    keep_best_by: Literal["colour_gain", "cycle_J"] = option(
        "colour_gain", "with keep_best: the score it maximises (colour_gain: measured against DAVIS on "
        "colorization only; cycle_J: the round trip)")

    def __post_init__(self) -> None:
        if self.val_preset == "default":  # vidssl's own protocol, recorded as PropagationConfig records it: ''
            object.__setattr__(self, "val_preset", "")


ENGINE_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))
VAL_VIDEOS = 4  # held out when val_every is given without val_videos


def held_out_count(cfg: TrainConfig) -> int:
    """Videos a run keeps out of training: ``val_videos``, or :data:`VAL_VIDEOS` with ``val_every``."""
    return cfg.val_videos or (VAL_VIDEOS if cfg.val_every else 0)


def method_class(name: str) -> type:
    """The registered method class called ``name``; a one-line error otherwise."""
    from vidssl.methods import METHODS

    if name == "track":
        raise ConfigError("object-track positives are a pair source now, not a method: "
                          "method=fti positives=tracks tracks=DIR (or positives=both for frame and track pairs)")
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown method {name!r}; {hint}choose from {', '.join(METHODS)}")
    return METHODS[name]


def method_keys(name: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(method_class(name).Config))


def engine_defaults(method: str) -> TrainConfig:
    """TrainConfig's defaults with the method's own ``train_defaults`` (e.g. colorization's
    ``encoder_stride=8``)."""
    return TrainConfig(method=method, **method_class(method).train_defaults)


def owners(key: str) -> list[str]:
    """The methods that have ``key``."""
    from vidssl.methods import METHODS

    return [name for name, cls in METHODS.items() if key in {f.name for f in dataclasses.fields(cls.Config)}]


def _unknown(key: str, method: str) -> ConfigError:
    have = owners(key)
    if have:
        return ConfigError(f"{key} is not a key of method {method} (it belongs to {', '.join(have)}); "
                           f"see 'vidssl train method={method} --help'")
    names = [*ENGINE_KEYS, *method_keys(method)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; see 'vidssl train method={method} --help'"
    return ConfigError(f"unknown key '{key}'{hint}")


def split_keys(method: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(engine keys, method keys) of a flat ``{key: value}``; raises ConfigError on a key of neither."""
    own = set(method_keys(method))
    engine, mine = {}, {}
    for key, value in values.items():
        key = key.strip().replace("-", "_")
        if key in ENGINE_KEYS:
            engine[key] = value
        elif key in own:
            mine[key] = value
        else:
            raise _unknown(key, method)
    return engine, mine


def shipped_recipe(name: str | Path) -> Path | None:
    """The shipped recipe file called ``name`` (``byol``, ``byol.yaml``, ``cpu/fti``), or None."""
    text = str(name).replace("\\", "/").strip()
    if not text or text.startswith(("/", ".")):
        return None
    path = RECIPES / (text if text.endswith((".yaml", ".yml")) else f"{text}.yaml")
    return path if path.is_file() else None


def recipe_names() -> list[str]:
    """Every shipped recipe: the papers' (``fti``) and the CPU-scale ones (``cpu/fti``)."""
    return sorted(p.relative_to(RECIPES).with_suffix("").as_posix() for p in RECIPES.rglob("*.yaml"))


def find_recipe(name: str | Path) -> Path:
    """The file of a recipe: ``name`` itself when it is a file, else the shipped one of that name."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_recipe(name)
    if shipped is None:
        raise FileNotFoundError(f"{name}: no such recipe file (shipped recipes: {', '.join(recipe_names())})")
    return shipped


def read_recipe(name: str | Path) -> dict[str, Any]:
    """A recipe as flat keys: a YAML file, or the name of a shipped one (``byol``, ``byol.yaml``,
    ``cpu/fti``: ``vidssl/recipes/cpu/fti.yaml``)."""
    path = find_recipe(name)
    data = _read_yaml(path, "a YAML recipe")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    if isinstance(data.get("train"), dict) or isinstance(data.get("method"), dict):  # config.yaml layout
        _check_layout(data, path)
        data = {**data["train"], **data["method"], "method": data["train"].get("method", "fti")}
    return data


def _read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path``; ConfigError naming the file if it is not UTF-8 YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not {what}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not {what} ({err})") from err


def _check_layout(saved: dict[str, Any], source: object) -> None:
    """The ``{"train": {...}, "method": {...}}`` layout, both halves mappings (a scalar ``train:``
    used to resume silently with every default)."""
    for half in ("train", "method"):
        if not isinstance(saved.get(half), dict):
            got = "missing" if half not in saved else f"a {type(saved[half]).__name__}"
            raise ConfigError(f"{source}: '{half}:' must be a mapping of keys, got {got}")


def resolve(pairs: list[str], *, recipe: dict[str, Any] | None = None,
            source: object = "recipe") -> tuple[TrainConfig, Any]:
    """The engine and method configs of ``key=value`` strings on top of a recipe's keys.

    The method comes from ``method=`` (command line, else recipe, else ``fti``; on ``resume`` without
    one, the run folder's). Recipe values are typed YAML; command-line values are parsed as in
    :func:`vidssl.config.parse_overrides`.
    """
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {pair!r}")
        given[key] = raw
    recipe = dict(recipe or {})
    resumed = _resumed_run(given)
    method = (given.get("method", "").strip() or str(recipe.get("method", ""))
              or (resumed.method if resumed else "") or "fti")
    try:
        recipe_engine, recipe_method = split_keys(method, {k: v for k, v in recipe.items() if k != "method"})
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    recipe_engine = typed_values(TrainConfig, recipe_engine, source)
    cls = method_class(method).Config
    recipe_method = typed_values(cls, recipe_method, source)
    cli_engine, cli_method = split_keys(method, given)
    base = dataclasses.replace(engine_defaults(method), **recipe_engine)
    if resumed is not None and "steps" not in cli_engine and "steps" not in recipe_engine:
        base = dataclasses.replace(base, steps=resumed.steps)  # resume = finish the run, not extend it
    train_cfg = parse_overrides(TrainConfig, [f"{k}={v}" for k, v in cli_engine.items() if k != "method"], base=base)
    train_cfg = dataclasses.replace(train_cfg, method=method)
    method_cfg = parse_overrides(cls, [f"{k}={v}" for k, v in cli_method.items()], base=cls(**recipe_method))
    return check_run(train_cfg, method_cfg)


# Method keys checked by name, since the engine does not know a method's options: sizes of layers
# (``proj_dim``, ``pred_hidden``, ``context_dim``) must be at least 1, temperatures above 0. A method states any other
# bound with ``option(..., min=...)`` or checks it when built (temperatures: each method's own message).
_SIZE_SUFFIXES = ("_dim", "_hidden")


def check_run(train_cfg: TrainConfig, method_cfg: Any) -> tuple[TrainConfig, Any]:
    """Both configs, checked: finite numbers, each key's ``min``, positive layer sizes of the
    method; a ConfigError naming the key otherwise."""
    check_values(train_cfg)
    check_values(method_cfg)
    outside = [s for s in train_cfg.snapshots if not 0 < s <= train_cfg.steps]
    if outside:
        raise ConfigError(f"snapshots={train_cfg.snapshots}: steps {outside} are not within 1..{train_cfg.steps}")
    if train_cfg.image_size > train_cfg.decode_size and train_cfg.data_kind == "videos":
        log.warning("image_size=%d is larger than decode_size=%d: every crop is upsampled from frames decoded "
                    "smaller than it (give decode_size >= image_size for crops of real detail)",
                    train_cfg.image_size, train_cfg.decode_size)
    if train_cfg.data_kind == "images" and (train_cfg.val_every or train_cfg.val_videos):
        raise ConfigError("val_every / val_videos need videos: the label-free score follows regions through clips "
                          "(data_kind=images has none)")
    if train_cfg.keep_best and not train_cfg.val_every:
        raise ConfigError("keep_best=true needs val_every=N: the best checkpoint is the best validation score")
    for f in dataclasses.fields(method_cfg):
        value = getattr(method_cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if f.name.endswith(_SIZE_SUFFIXES) and value < 1:
            raise ConfigError(f"{f.name}={value}: a layer size must be at least 1")
        if ("temperature" in f.name or f.name.endswith("_temp")) and value <= 0:  # logits / T: inverted or inf
            raise ConfigError(f"{f.name}={value}: a temperature must be greater than 0")
    return train_cfg, method_cfg


def _resumed_run(given: dict[str, str]) -> TrainConfig | None:
    """On ``resume=true out=RUN``, the run's saved engine config (its method and steps fill in
    what the command line does not give); None when there is no readable one."""
    if given.get("resume", "").strip().lower() not in ("true", "yes", "on", "1"):
        return None
    saved = Path(given.get("out", TrainConfig.out).strip()) / "config.yaml"
    if not saved.is_file():
        return None
    try:
        return load_run_config(saved)[0]
    except (ConfigError, ValueError, OSError):
        return None


def run_config(**values: Any) -> tuple[TrainConfig, Any]:
    """The two configs from Python values, resolved like the command line:
    ``train(*run_config(method="cpc", steps=10, pred_steps=2))``."""
    method = values.pop("method", "fti")
    engine, mine = split_keys(method, values)
    train_cfg = dataclasses.replace(engine_defaults(method), **engine)
    return train_cfg, method_class(method).Config(**mine)


def help_rows(method: str) -> list[tuple[str, str, str]]:
    """(key, default, help) of the engine keys (with the method's defaults) then the method's."""
    engine = fields_help(TrainConfig)
    overrides = method_class(method).train_defaults
    engine = [(k, str(overrides[k]) if k in overrides else d, h) for k, d, h in engine]
    return engine + fields_help(method_class(method).Config)


def config_dict(train_cfg: TrainConfig, method_cfg: Any) -> dict[str, Any]:
    """What ``config.yaml`` and checkpoints store."""
    return {"train": to_dict(train_cfg), "method": to_dict(method_cfg)}


def from_dict(saved: dict[str, Any], *, source: object = "config") -> tuple[TrainConfig, Any]:
    """The configs a ``config.yaml`` / checkpoint ``config`` holds, of this release or of 0.1, every
    value typed and checked as on the command line (``source``, the file, names it in errors)."""
    if "train" in saved or isinstance(saved.get("method"), dict):
        _check_layout(saved, source)
    else:
        saved = upgrade_flat(saved)
    engine = {k: v for k, v in saved["train"].items() if k in ENGINE_KEYS}
    dropped = sorted(set(saved["train"]) - set(engine))
    train_cfg = TrainConfig(**typed_values(TrainConfig, engine, source))
    method = method_class(train_cfg.method)
    cls = method.Config
    names = {f.name for f in dataclasses.fields(cls)}
    dropped += sorted(set(saved["method"]) - names)
    if dropped:
        log.warning("config: ignoring keys this release does not have: %s", ", ".join(dropped))
    kept = {**method.saved_defaults, **{k: v for k, v in saved["method"].items() if k in names}}
    method_cfg = cls(**typed_values(cls, kept, source))
    try:
        return check_run(train_cfg, method_cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_run_config(path: str | Path) -> tuple[TrainConfig, Any]:
    """Read a run folder's ``config.yaml`` (either layout)."""
    path = Path(path)
    saved = _read_yaml(path, "a vidssl config.yaml")
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: not a vidssl config.yaml")
    return from_dict(saved, source=path)


# --- release 0.1: one flat TrainConfig grafted with prefixed method options ----------------------

_FTI_KEYS_0_1 = ("loss", "temperature", "proj_hidden", "proj_dim", "queue_size", "moco_momentum", "min_gap", "max_gap",
                 "gap_unit")
_TRACK_KEYS_0_1 = ("tracks", "track_min_gap", "track_max_gap", "track_min_length", "track_context", "track_weight",
                   "frame_weight")
_RENAMED_0_1 = {
    "cpc": {"cpc_dense": "dense", "cpc_context_dim": "context_dim", "proj_dim": "proj_dim",
            "temperature": "temperature"},
    "colorization": {"color_clusters": "clusters", "color_embed_dim": "embed_dim", "color_any_stride": "any_stride",
                     "temperature": "temperature"},
}
_PREFIX_0_1 = {"byol": "byol_", "simsiam": "simsiam_", "dino": "dino_", "rotation": "rotation_", "jigsaw": "jigsaw_",
               "relpatch": "relpatch_"}
_DEFAULT_TEMPERATURE_0_1 = {"cpc": 1.0, "colorization": 1.0, "simclr": 0.1, "mocov2": 0.2}


def upgrade_flat(flat: dict[str, Any]) -> dict[str, Any]:
    """A release-0.1 config (one flat dict, method options with prefixes, FTI's keys shared by every
    method, ``method=track``) as ``{"train": ..., "method": ...}`` of this release."""
    flat = dict(flat)
    method = flat.get("method", "fti")
    engine = {k: v for k, v in flat.items() if k in ENGINE_KEYS}
    mine: dict[str, Any] = {}
    if method in ("fti", "track", "simclr", "mocov2"):
        mine = {k: flat[k] for k in (*_FTI_KEYS_0_1, *_TRACK_KEYS_0_1) if k in flat}
        if method == "track":
            engine["method"], mine["positives"] = "fti", "tracks"
        elif method == "fti":
            mine["positives"] = "both" if flat.get("tracks") else "frames"
        else:  # simclr / mocov2 forced a gap of 0 and their own loss; track keys were not theirs
            mine = {k: v for k, v in mine.items() if k not in ("loss", *_TRACK_KEYS_0_1)}
            mine.update(min_gap=0, max_gap=0)
            if method == "simclr":
                mine = {k: v for k, v in mine.items() if k not in ("queue_size", "moco_momentum")}
        if mine.get("temperature") is None:
            loss = mine.get("loss", "moco" if method == "mocov2" else "infonce")
            mine["temperature"] = 0.2 if loss == "moco" else 0.1
    elif method in _RENAMED_0_1:
        mine = {new: flat[old] for old, new in _RENAMED_0_1[method].items() if old in flat}
        if mine.get("temperature") is None:
            mine["temperature"] = _DEFAULT_TEMPERATURE_0_1[method]
        mine.update({k: v for k, v in flat.items() if k in ("seq_len", "seq_stride", "pred_steps", "num_refs",
                                                           "ref_stride", "kmeans_samples")})
    elif method in _PREFIX_0_1:
        prefix = _PREFIX_0_1[method]
        mine = {k.removeprefix(prefix): v for k, v in flat.items() if k.startswith(prefix)}
        if method == "byol":  # byol took frame pairs of gap 0 before pair sources existed
            mine.update(max_gap=0)
    return {"train": engine, "method": mine}


__all__ = ["TrainConfig", "check_run", "config_dict", "find_recipe", "from_dict", "help_rows", "load_run_config",
           "method_class", "read_recipe", "recipe_names", "resolve", "run_config", "shipped_recipe", "split_keys",
           "upgrade_flat"]
