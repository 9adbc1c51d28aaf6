"""``vidssl eval invariance``: the invariance measure of Purushwalkam & Gupta 2020 on one encoder.

    vidssl eval invariance ENCODER data=runs/synth out=runs/inv
    vidssl eval invariance ENCODER data=~/videos tracks=runs/tracks protocol=paper out=runs/inv

Builds the sets (:mod:`~vidssl.evaluation.invariance.sets`) from a ``vidssl synth`` folder (made in
``OUT/synth`` when ``data`` is empty) or from the ``vidssl tracks`` output on real videos, measures
them (:mod:`~vidssl.evaluation.invariance.measure`) under ``protocol=vidssl`` (:func:`score_sets`)
or ``protocol=paper`` (:func:`paper_scores`, the authors' released code), and writes
``OUT/results.json`` (:func:`vidssl.evaluation.results.save_results`) and the bar chart
``OUT/invariance.png`` (:mod:`~vidssl.evaluation.invariance.plot`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidssl.config import option, to_dict
from vidssl.device import resolve_device
from vidssl.evaluation.invariance.measure import paper_scores, score_sets, sets_features
from vidssl.evaluation.invariance.plot import plot_invariance
from vidssl.evaluation.invariance.sets import (
    TRANSFORMATIONS,
    build_labelled_sets,
    tracks_from_folder,
    tracks_from_synth,
)
from vidssl.evaluation.results import save_results
from vidssl.features import Input, input_option, resolve_input

log = logging.getLogger(__name__)

PROTOCOLS = ("vidssl", "paper")

PAPER_CLASSES = {"viewpoint": "set", "illumination": "set", "occlusion": "object", "instance": "object"}
"""What a class is under ``classes=auto``, as in the paper's datasets: ALOI (viewpoint,
illumination) has no class labels, so the released code uses each set (object) as its own class;
GOT-10k (occlusion) and PASCAL3D+ (instance) have object classes."""


@dataclass(frozen=True)
class InvarianceConfig:
    """``vidssl eval invariance``: the invariance measure of Purushwalkam & Gupta 2020."""

    encoder: str = option("", "encoder: exported .safetensors, run folder, or random:NAME (e.g. random:resnet18)")
    data: str = option("", "a 'vidssl synth' folder ('' makes a small one in OUT/synth), or with tracks= the videos")
    tracks: str = option("", "a 'vidssl tracks' folder: sets from real video (data='' takes the folder in tracks.json)")
    protocol: str = option("vidssl", "vidssl (L in [0, 1], rate=) or paper (the authors' released code, 0-100)")
    classes: str = option("auto", "protocol=paper's classes: auto (as the paper's data), object (its class) or set")
    min_box: float = option(32.0, "tracks: drop boxes whose shorter side is below this many pixels (counted)")
    min_track: int = option(8, "tracks: drop tracks left with fewer boxes than this (counted)")
    out: str = option("runs/invariance", "output folder: results.json and invariance.png")
    transformations: tuple[str, ...] = option(TRANSFORMATIONS, "which to measure, e.g. viewpoint,occlusion")
    image_size: int = option(64, "object crops are resized to this square size")
    rate: float = option(0.01, "protocol=vidssl: global firing rate G, each neuron fires on this fraction of images")
    topk: tuple[int, ...] = option((10, 25), "report the mean over the k most invariant neurons, for each k")
    sets: int = option(64, "at most this many sets per transformation (fewer if the tracks run out of frames)")
    images_per_set: int = option(8, "images per set (illumination sets have one per lighting change: 8)")
    seed: int = option(0, "seed of the sets, the occluders and a random:NAME encoder")
    batch_size: int = option(64, "images per forward pass")
    device: str = option("auto", "cuda, cpu, or auto (CUDA when available)")
    layer: str | None = option(None, "measure this module's output (e.g. layer3), averaged over space; None: pooled")
    input: Input = input_option()

    def __post_init__(self) -> None:  # resolved here, so results.json records what the encoder was given
        object.__setattr__(self, "input", resolve_input(self.input, self.encoder))


def _transformation_names(cfg: InvarianceConfig) -> list[str]:
    # A bare `transformations=viewpoint,occlusion` arrives as one string (it is not a Python
    # literal), so items are split on commas: the form people type should simply work.
    names = [n.strip(" '\"()[]") for item in cfg.transformations for n in item.split(",")]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in TRANSFORMATIONS]
    if unknown or not names:
        raise ValueError(f"unknown transformation {unknown}; choose from {', '.join(TRANSFORMATIONS)}")
    return names


def _synthetic_data(cfg: InvarianceConfig) -> Path:
    """``cfg.data``, or a small synthetic set made once in ``OUT/synth`` (reused when complete)."""
    if cfg.data:
        return Path(cfg.data)
    import dataclasses

    from vidssl.data.synth import SynthConfig, generate

    root = Path(cfg.out) / "synth"
    # 12 videos of 2-3 objects over 5 classes: every class almost surely has two objects.
    synth = SynthConfig(out=str(root), num_videos=12, num_frames=32, seed=cfg.seed)
    record = root / "synth.json"
    if not record.exists() or json.loads(record.read_text())["config"] != dataclasses.asdict(synth):
        generate(root, synth, progress=False)
    return root


def _cell(value: float | int) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def format_table(results: Mapping[str, Mapping[str, float | int]], *, topk: Sequence[int]) -> str:
    """The per-transformation numbers of :func:`run_invariance` as an aligned text table (the
    columns of either protocol: ``ratio_top{k}`` for vidssl's, ``firing_rate`` and ``classes``
    for the paper's)."""
    first = next(iter(results.values()))
    extra = [f"ratio_top{k}" for k in topk] if f"ratio_top{topk[0]}" in first else ["firing_rate", "classes"]
    columns = [f"top{k}" for k in topk] + extra + ["sets", "images", "neurons_scored"]
    width = max(len(name) for name in results)
    lines = [f"{'transformation':<{max(width, 14)}}  " + "  ".join(f"{c:>{max(len(c), 7)}}" for c in columns)]
    for name, row in results.items():
        cells = [f"{_cell(row[c]):>{max(len(c), 7)}}" for c in columns]
        lines.append(f"{name:<{max(width, 14)}}  " + "  ".join(cells))
    return "\n".join(lines)


def paper_set_labels(transformation: str, classes: list[str], mode: str) -> list[str]:
    """The ``protocol=paper`` class of each set of ``transformation``: its object class
    (``classes``, from :func:`build_labelled_sets`) or the set itself, as ``mode`` (``auto``:
    :data:`PAPER_CLASSES`, ``object`` or ``set``) says."""
    kind = PAPER_CLASSES[transformation] if mode == "auto" else mode
    return classes if kind == "object" else [str(i) for i in range(len(classes))]


def run_invariance(cfg: InvarianceConfig) -> dict:
    """Measure ``cfg.encoder`` on sets built from ``cfg.data`` (and ``cfg.tracks``); write
    ``OUT/results.json`` and ``OUT/invariance.png``.

    Returns:
        ``{transformation: row, ..., "settings": {every config key, "data", "device", "neurons",
        "images", "class_labels"; with tracks also "track_counts"}}``. ``protocol=vidssl`` rows:
        ``top10``, ``top25`` (mean L in [0, 1]), ``ratio_top10``, ``ratio_top25``, ``sets``,
        ``images``, ``neurons_scored``; NaN (``null`` in the JSON) where no neuron fired.
        ``protocol=paper`` rows: :func:`paper_scores` (``top{k}`` on its 0-100 scale,
        ``firing_rate``, ``classes``, ``sets``, ``sets_scored``, ``images``, ``neurons_scored``).
        Keys follow ``cfg.topk``.

    Raises:
        ValueError: an empty ``encoder``, an unknown transformation, protocol, classes or layer,
            or data that cannot make the requested sets.
        FileNotFoundError: a missing tracks folder, data folder or video (named).
    """
    from vidssl.features import resolve_encoder

    if not cfg.encoder:
        raise ValueError("eval invariance needs an encoder: vidssl eval invariance ENCODER (e.g. random:resnet18)")
    names = _transformation_names(cfg)
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{cfg.protocol}'; choose from {', '.join(PROTOCOLS)}")
    if cfg.classes not in ("auto", "object", "set"):
        raise ValueError(f"unknown classes '{cfg.classes}'; choose from auto, object, set")
    if not cfg.topk or min(cfg.topk) < 1:
        raise ValueError(f"topk must list positive integers, got {cfg.topk}")
    if cfg.images_per_set < 2:
        raise ValueError(f"images_per_set must be 2 or more (L compares images of one set), got {cfg.images_per_set}")
    device = resolve_device(cfg.device)
    extra: dict = {}
    if cfg.tracks:
        source = tracks_from_folder(cfg.tracks, data=cfg.data, min_box=cfg.min_box, min_track=cfg.min_track)
        tracks, root, data = source.tracks, source.root, source.root
        extra["track_counts"] = source.counts
        log.info("%s: %s", cfg.tracks, ", ".join(f"{k} {v}" for k, v in source.counts.items()))
        if not tracks:
            raise ValueError(f"{cfg.tracks}: no track has {cfg.min_track} boxes of {cfg.min_box:g} pixels or more"
                             f" ({source.counts}); lower min_track / min_box")
    else:
        data, root = _synthetic_data(cfg), Path()
        tracks = tracks_from_synth(data)
        log.info("%d object tracks in %s", len(tracks), data)
    sets, classes = {}, {}
    for name in names:
        sets[name], classes[name] = build_labelled_sets(
            tracks,
            transformation=name,
            sets=cfg.sets,
            images_per_set=cfg.images_per_set,
            image_size=cfg.image_size,
            seed=cfg.seed,
            root=root,
        )
    encoder = resolve_encoder(cfg.encoder, seed=cfg.seed)
    features = sets_features(encoder, sets, batch_size=cfg.batch_size, device=device, layer=cfg.layer,
                             gray=cfg.input == "gray")
    if cfg.protocol == "paper":
        scores = {
            name: paper_scores(features[name], paper_set_labels(name, classes[name], cfg.classes), topk=cfg.topk)
            for name in names
        }
    else:
        scores = score_sets(features, rate=cfg.rate, topk=cfg.topk)
    settings = {
        **to_dict(cfg),
        "transformations": names,
        "data": str(data),
        "device": str(device),
        "neurons": features[names[0]][0].shape[1],
        "images": sum(row["images"] for row in scores.values()),
        "class_labels": {name: sorted(set(classes[name])) for name in names},
        **extra,
    }
    results: dict = {**scores, "settings": settings}
    out = Path(cfg.out)
    save_results(out, results)  # NaN (neurons that never fired) is written as null
    plot_invariance(scores, out / "invariance.png", topk=cfg.topk, label=f"{cfg.encoder} ({cfg.protocol})",
                    ymax=100.0 if cfg.protocol == "paper" else 1.0)
    return results
