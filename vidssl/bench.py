"""``vidssl bench``: which training recipe learns most from your videos, for the same cost?

    vidssl bench recipes=cpu/fti,cpu/colorization                  # synthetic videos, a few minutes
    vidssl bench recipes=cpu/fti,cpu/simclr videos=~/videos evals=davis,synth davis=~/DAVIS
    vidssl bench report runs/bench/results.json > docs/results.md  # the results page

Every recipe (a YAML file or a shipped name, ``vidssl/recipes/cpu/*.yaml``; one row each, named by
the file) trains the same encoder on the same training videos from **one shared initialisation**
(``init``, saved once as ``OUT/init.safetensors``; also scored as the ``random`` row) for the **same
budget of encoder input pixels** (``budget_mpx`` million: the steps of each recipe are the budget
over its pixels per step, :func:`pixels_per_step`, read from the method's data spec and views, not
from its name). ``overrides`` are given to every recipe (the benchmark's protocol: decode size,
warmup, loader workers); nothing else is changed in a recipe.

Every encoder, and the baselines (``random``, ``pixels``: Lab colour, ``copy``: first labels
repeated), is scored under every protocol of ``preset`` (CRW's by default; ``(crw,default)`` adds
vidssl's own, so no comparison picks its protocol after the fact): ``synth`` (held-out synthetic
videos, ``vidssl eval synth``: J&F and keypoint PCK), ``davis`` (your clips in DAVIS layout: J&F),
``jhmdb`` (JHMDB layout: PCK), ``knn`` / ``linear`` (image probes on synthetic object crops, and with
``images`` also on that ImageFolder root: scores ``knn~images``, ``linear~images``), and ``cycle``
(label-free: ``vidssl eval cycle`` on the ``held_out`` videos every run keeps out).

Seeds and curves: ``seeds=(0,1,2)`` trains every recipe once per seed, each seed from its own
initialisation (rows ``ROW.sN``; the ``random`` row once per seed); the results add each row's mean
and spread over seeds and each recipe against ``random`` and ``pixels`` (:func:`~vidssl.bench_report.comparisons`: a win
must hold beyond the seeds' spread and in a Wilcoxon test over sequences). ``curve=(0.125,0.25,0.5)``
scores snapshots of the first seed's runs along their one schedule (rows ``ROW@0.125`` ...), DAVIS at
``curve_davis_size`` (the end points at both sizes, so the cheap protocol's relation to the full one
is measured); :func:`~vidssl.bench_report.curves` adds how well the label-free score ranks the points against DAVIS J&F.

Caching: ``OUT/train/ROW`` is a ``vidssl train`` run folder (a killed run resumes; a finished one is
reused while its resolved config is the one asked for, and refused with the keys that differ
otherwise), every score is ``OUT/eval/ROW/SCORE/results.json`` (SCORE: ``davis``, ``davis~default``,
``davis@240``, ...: :class:`Score`): a rerun computes only what is
missing (``force=ROW,...`` recomputes those rows' scores; ``cached=true`` computes nothing). The
same command started twice (one per core, ``taskset -c 0`` / ``-c 1``) shares the work: each row's
training and each score is held by an OS lock (``OUT/train/.ROW.lock``, ``OUT/eval/ROW/.SCORE.lock``);
a process skips the rows and scores the other holds and comes back to them (reading the other's
results) after the seed's rest.
Writes ``OUT/results.json`` (with the command, the machine and the date), ``OUT/results.md`` (the
tables), ``OUT/learning.png`` (bars per score) and with ``curve`` ``OUT/curves.png``; ``vidssl bench
report`` makes one page of several results files.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import resource
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidssl.bench_report import (
    IMAGES_METRICS,
    PLOTTED,
    column,
    comparisons,
    curves,
    fraction_steps,
    headline,
    plot_curves,
    row_name,
    section,
    seed_table,
)
from vidssl.config import ConfigError, option, to_dict
from vidssl.engine.config import TrainConfig
from vidssl.engine.validation import snapshot_path
from vidssl.files import atomic_write_json, atomic_write_text, exclusive
from vidssl.methods.base import Method

log = logging.getLogger(__name__)

BASELINES = ("copy", "pixels", "random")
EVALS = ("synth", "davis", "jhmdb", "knn", "linear", "cycle")
PROPAGATION_EVALS = ("synth", "davis", "jhmdb")  # scored under every protocol of ``preset``
# Keys the benchmark sets itself (the budget, the shared start, the row's folder), not a recipe or ``overrides``.
_BENCH_KEYS = ("steps", "data", "out", "weights", "seed", "resume", "overwrite")
# Keys that change how a run is executed, not what it learns: a cached run is reused across them.
_EXECUTION_KEYS = ("workers", "resume", "overwrite", "device", "log_every", "save_every", "snapshots", "val_every",
                   "val_preset", "val_size", "keep_best")


@dataclass(frozen=True)
class BenchConfig:
    recipes: tuple[str, ...] = option(("cpu/fti", "cpu/simclr"), "recipes compared, one row each (files or shipped "
                                      "names: vidssl/recipes/cpu/*.yaml)")
    baselines: tuple[str, ...] = option(("random", "pixels"), "rows without training: random (the shared "
                                        "initialisation) | pixels (Lab colour) | copy (first labels repeated)")
    videos: str = option("", "training videos (searched recursively); '' = synthetic ones written into OUT/synth_train")
    tracks: str = option("", "tracks of 'vidssl tracks' over VIDEOS, given to the recipes with track positives")
    evals: tuple[str, ...] = option(("synth",), "scores: synth (held-out synthetic videos) | davis (needs davis=) | "
                                    "jhmdb (needs jhmdb=) | knn | linear (image probes on synthetic crops, and on "
                                    "images=) | cycle (label-free, on the held_out videos)")
    davis: str = option("", "labelled clips in DAVIS layout (JPEGImages/480p, Annotations/480p)")
    split: str = option("", "DAVIS sequences file ('' = eval davis's default)")
    davis_size: int = option(0, "short side of the DAVIS frames (0 = as they are)")
    jhmdb: str = option("", "labelled clips in JHMDB layout (Rename_Images, joint_positions)")
    images: str = option("", "an ImageFolder root (train/<class>/*, val/<class>/*; e.g. 'vidssl tracks crops') "
                         "that the knn and linear evals also score: knn~images, linear~images")
    synth: str = option("", "held-out synthetic videos ('' = OUT/synth_held_out, written with the synth_ keys)")
    preset: tuple[str, ...] = option(("crw",), "propagation protocols of every mask and keypoint score (eval davis "
                                     "preset=); the first is the main one; 'default' is vidssl's own: (crw,default) "
                                     "scores both")
    init: str = option("random:resnet18", "the shared initialisation: random:NAME or a weights file")
    budget_mpx: float = option(50.0, "training budget of every recipe: million encoder input pixels", min=1e-6)
    overrides: tuple[str, ...] = option((), "key=value given to every recipe, e.g. (decode_size=96,warmup_steps=10); "
                                        "the budget sets steps")
    synth_videos: int = option(12, "synthetic training videos written when videos=''", min=1)
    synth_held_out: int = option(6, "held-out synthetic videos written when synth=''", min=1)
    synth_frames: int = option(40, "frames per synthetic video", min=2)
    synth_height: int = option(240, "height of the synthetic videos", min=16)
    synth_width: int = option(320, "width of the synthetic videos", min=16)
    title: str = option("", "heading of this comparison on results pages ('' = from the recipes and budget)")
    out: str = option("runs/bench", "benchmark folder (the cache: reruns continue)")
    seed: int = option(0, "seed of the synthetic videos, the shared initialisation and every run")
    seeds: tuple[int, ...] = option((), "training seeds of every recipe and initialisations of the random row; the "
                                    "first seed's rows are ROW, the others' ROW.sN ('()' = (seed,))")
    curve: tuple[float, ...] = option((), "learning curves: fractions of the budget (0 < f < 1) at which each run's "
                                      "encoder is also scored (snapshots of the one run: rows ROW@f)")
    curve_davis_size: int = option(0, "short side of the DAVIS frames of the curve points (0 = davis_size); the "
                                      "end points and baselines are scored at both")
    held_out: int = option(0, "videos of VIDEOS held out of every training run (vidssl train val_videos=) and "
                              "scored label-free by the cycle eval; 0 = none", min=0)
    cycle_clips: int = option(2, "clips per held-out video the cycle eval scores (vidssl eval cycle clips=): "
                                 "more clips, less noise in the colour gain", min=1)
    force: tuple[str, ...] = option((), "rows whose scores are recomputed")
    cached: bool = option(False, "report what is computed already (train and score nothing)")


@dataclass(frozen=True)
class ReportConfig:
    results: tuple[str, ...] = option((), "results.json files of 'vidssl bench', one section each, in order")
    out: str = option("", "page to write ('' = print it)")
    curves: str = option("", "also draw the learning curves of every results file in one picture here (PNG; a "
                         "line per run, named by its budget where the files' budgets differ)")


# --- budget --------------------------------------------------------------------------------------


def method_pixels_per_sample(method: Method) -> int:
    """Encoder input pixels of one training sample of a built ``method``: what its data spec and
    views make of one sample (:func:`vidssl.data.spec.pixels_per_sample`)."""
    from vidssl.data.spec import pixels_per_sample

    return pixels_per_sample(method.data(), image_size=method.image_size)


def build_method(train_cfg: TrainConfig, method_cfg: Any) -> Method:
    """The method of a resolved config with a freshly built encoder (no weights read), for
    inspection; torch's global RNG is left as it was."""
    from vidssl.engine.config import method_class
    from vidssl.models.encoders import build_encoder

    with torch.random.fork_rng(devices=[]):
        encoder = build_encoder(train_cfg.encoder, stride=train_cfg.encoder_stride)
        return method_class(train_cfg.method)(encoder, method_cfg, image_size=train_cfg.image_size,
                                              seed=train_cfg.seed)


def pixels_per_step(train_cfg: TrainConfig, method_cfg: Any) -> int:
    """Encoder input pixels of one optimizer step of a resolved config (micro-batch x accumulation x
    :func:`method_pixels_per_sample`)."""
    per_sample = method_pixels_per_sample(build_method(train_cfg, method_cfg))
    return train_cfg.batch_size * train_cfg.accum * per_sample


def budget_steps(budget_mpx: float, per_step: int) -> int:
    """Steps that spend ``budget_mpx`` million pixels, rounded up to a whole step."""
    return max(1, math.ceil(budget_mpx * 1e6 / per_step))


# --- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the benchmark: a baseline, a trained recipe at one seed, or a point of its curve."""

    name: str  # ROW, ROW.sN (seed N, not the first), ROW@F / ROW.sN@F (a curve point)
    base: str  # the baseline or recipe row it belongs to
    seed: int
    recipe: str = ""  # '' for baselines
    fraction: float = 1.0  # of the budget (curve points < 1)


def seeds_of(cfg: BenchConfig) -> tuple[int, ...]:
    return cfg.seeds or (cfg.seed,)


def seeded(name: str, seed: int, cfg: BenchConfig) -> str:
    return name if seed == seeds_of(cfg)[0] else f"{name}.s{seed}"


def _fraction_text(fraction: float) -> str:
    return f"{fraction:g}"


def rows(cfg: BenchConfig) -> list[Row]:
    """Every line: the baselines (``random`` once per seed: its initialisation), each recipe at each
    seed, then each recipe's curve points (of the first seed)."""
    out = []
    for name in cfg.baselines:
        seeds = seeds_of(cfg) if name == "random" else seeds_of(cfg)[:1]
        out += [Row(seeded(name, s, cfg), name, s) for s in seeds]
    for recipe in cfg.recipes:
        out += [Row(seeded(row_name(recipe), s, cfg), row_name(recipe), s, recipe) for s in seeds_of(cfg)]
    for recipe in cfg.recipes:  # curves of the first seed: the other seeds give the end points' spread
        s = seeds_of(cfg)[0]
        out += [Row(f"{seeded(row_name(recipe), s, cfg)}@{_fraction_text(f)}", row_name(recipe), s, recipe, f)
                for f in sorted(cfg.curve)]
    return out


def check(cfg: BenchConfig) -> None:
    """One-line errors for what is wrong before anything runs."""
    from vidssl.engine.config import find_recipe
    from vidssl.propagation.propagate import PRESETS

    for name in cfg.baselines:
        if name not in BASELINES:
            raise ConfigError(f"baselines: unknown row {name!r}; choose from {', '.join(BASELINES)}")
    for name in cfg.evals:
        if name not in EVALS:
            raise ConfigError(f"evals: unknown score {name!r}; choose from {', '.join(EVALS)}")
    for preset in cfg.preset:
        if preset != "default" and preset not in PRESETS:
            raise ConfigError(f"preset: unknown protocol {preset!r}; choose from default, {', '.join(PRESETS)}")
    if not cfg.preset or len(set(cfg.preset)) != len(cfg.preset):
        raise ConfigError(f"preset={cfg.preset}: give one or more different protocols")
    if len(set(seeds_of(cfg))) != len(seeds_of(cfg)):
        raise ConfigError(f"seeds={cfg.seeds}: a seed twice")
    bad = [f for f in cfg.curve if not 0 < f < 1]
    if bad:
        raise ConfigError(f"curve: {bad} are not fractions of the budget between 0 and 1 (the end, 1, is the row "
                          "itself; 0 is the initialisation, the random row)")
    if cfg.images and not {"knn", "linear"} & set(cfg.evals):
        raise ConfigError(f"images={cfg.images} is scored by the knn and linear evals: add one to evals=")
    if "cycle" in cfg.evals and not cfg.held_out:
        raise ConfigError("evals has cycle but held_out=0: give held_out=N (videos kept out of training and scored "
                          "label-free)")
    names = [r.name for r in rows(cfg)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"recipes: two rows named {', '.join(twice)} (a row is named by its recipe file)")
    unknown = [r for r in cfg.force if r not in names]
    if unknown:
        raise ConfigError(f"force: no row {', '.join(unknown)}; rows are {', '.join(names)}")
    for recipe in cfg.recipes:
        find_recipe(recipe)  # FileNotFoundError naming the shipped ones
    for pair in cfg.overrides:
        key = pair.partition("=")[0].strip()
        if "=" not in pair or key in _BENCH_KEYS:
            raise ConfigError(f"overrides: {pair!r}: give key=value pairs other than {', '.join(_BENCH_KEYS)} "
                              "(the benchmark sets those)")
    if cfg.cached:
        return
    for key in ("videos", "tracks", "synth"):
        folder = getattr(cfg, key)
        if folder and not Path(folder).is_dir():
            raise FileNotFoundError(f"{key}={folder}: no such folder")
    for key in ("davis", "jhmdb"):
        folder = getattr(cfg, key)
        if key in cfg.evals and not (folder and Path(folder).is_dir()):
            raise FileNotFoundError(f"evals has {key} but {key}={folder!r} is no folder (give {key}=PATH)")
    if cfg.images:
        from vidssl.evaluation.image_features import resolve_image_root

        resolve_image_root(cfg.images)  # FileNotFoundError naming the missing train/ or val/


def init_path(cfg: BenchConfig, seed: int) -> Path:
    """The shared initialisation of ``seed``'s runs: ``OUT/init.safetensors`` for the first seed,
    ``OUT/init.sN.safetensors`` for the others."""
    out = Path(cfg.out)
    return out / "init.safetensors" if seed == seeds_of(cfg)[0] else out / f"init.s{seed}.safetensors"


def init_weights(cfg: BenchConfig, seed: int | None = None) -> Path:
    """The shared initialisation of ``seed`` (default: the first), written once (a ``.json`` beside
    it records what it is; another ``init`` or seed in the same folder is refused)."""
    from vidssl.export import save_encoder
    from vidssl.features import resolve_encoder

    seed = seeds_of(cfg)[0] if seed is None else seed
    path = init_path(cfg, seed)
    record = path.with_suffix(".json")
    wanted = {"init": cfg.init, "seed": seed}
    if path.exists() and record.exists():
        held = json.loads(record.read_text())
        if held != wanted:
            raise ValueError(f"{path.parent}: its shared initialisation is {held}, not {wanted}; choose another out=")
        return path
    with torch.random.fork_rng(devices=[]):
        encoder = resolve_encoder(cfg.init, seed=seed)
    save_encoder(encoder, path, metadata={"what": f"shared initialisation of vidssl bench: {cfg.init}, seed {seed}"})
    atomic_write_json(record, wanted)
    return path


def training_videos(cfg: BenchConfig, *, progress: bool) -> Path:
    """``cfg.videos``, or synthetic training videos written into ``OUT/synth_train`` once."""
    if cfg.videos:
        return Path(cfg.videos)
    from vidssl.data.synth import SynthConfig, generate

    folder = Path(cfg.out) / "synth_train"
    wanted = dict(num_videos=cfg.synth_videos, num_frames=cfg.synth_frames, height=cfg.synth_height,
                  width=cfg.synth_width, seed=cfg.seed)
    if not check_synth(folder, wanted):
        with exclusive(folder.with_name(".synth_train.lock"), f"{folder}: being written by another process; waiting"):
            if not check_synth(folder, wanted):  # written while this one waited
                generate(folder, SynthConfig(out=str(folder), **wanted), progress=progress)
    return folder / "videos"


def check_synth(folder: Path, wanted: dict[str, Any]) -> bool:
    """Whether ``folder`` holds the synthetic videos of ``wanted`` (SynthConfig keys); False when it
    holds none; a one-line error when it holds others (its encoders and scores would mix two sets)."""
    record = folder / "synth.json"
    if not record.exists():
        return False
    held = json.loads(record.read_text()).get("config", {})
    changed = [f"{k} {held.get(k)!r} -> {v!r}" for k, v in wanted.items() if held.get(k) != v]
    if changed:
        raise ValueError(f"{folder}: holds synthetic videos made with other settings ({'; '.join(changed)}); remove "
                         "the benchmark folder or choose another out=")
    return True


def train_command(cfg: BenchConfig, recipe: str, data: Path, init: Path, steps: int | None,
                  seed: int | None = None) -> list[str]:
    """``vidssl train`` argv of ``recipe``'s row at ``seed`` (default: the first; without ``steps=``
    when None: before the budget is known); ``tracks=`` only for a recipe with track positives;
    with ``held_out``, the videos it keeps out (the cycle eval scores them); with ``curve``, the
    snapshots its points are scored from."""
    seed = seeds_of(cfg)[0] if seed is None else seed
    folder = Path(cfg.out) / "train" / seeded(row_name(recipe), seed, cfg)
    argv = ["vidssl", "train", recipe, str(data), f"out={folder}", f"weights={init}", f"seed={seed}",
            *cfg.overrides]
    if cfg.tracks and getattr(resolve_command(argv)[1], "positives", "frames") != "frames":
        argv.append(f"tracks={cfg.tracks}")
    if steps is None:
        return argv
    if cfg.held_out:  # scored by the cycle eval, on the snapshots too: the run need not validate itself
        argv.append(f"val_videos={cfg.held_out}")
    if cfg.curve:
        argv.append(f"snapshots=({','.join(str(s) for s in sorted(set(fraction_steps(cfg.curve, steps).values())))})")
    return argv + [f"steps={steps}"]


def resolve_command(argv: list[str]) -> tuple[TrainConfig, Any]:
    """The configs of a :func:`train_command` argv (``vidssl train RECIPE DATA key=value ...``),
    resolved as the command line resolves them."""
    from vidssl.engine.config import read_recipe, resolve

    _, _, recipe, data, *pairs = argv
    return resolve([f"data={data}", *pairs], recipe=read_recipe(recipe))


def _learning_config(train_cfg: TrainConfig, method_cfg: Any) -> dict[str, Any]:
    """What a run learns from: the saved config without the keys of how it executes."""
    from vidssl.engine.config import config_dict, held_out_count

    saved = config_dict(train_cfg, method_cfg)
    train = {k: v for k, v in saved["train"].items() if k not in _EXECUTION_KEYS}
    train["val_videos"] = held_out_count(train_cfg)  # val_every alone holds videos out: what the run learned from
    return {"train": train, "method": saved["method"]}


def _changed(record: dict[str, Any], learned: dict[str, Any], method: str) -> list[str]:
    """The keys in which a cached run's learning config differs from ``learned``; a key the
    record lacks (saved before it existed) counts as its default."""
    from vidssl.engine.config import engine_defaults, method_class

    defaults = _learning_config(engine_defaults(method), method_class(method).Config())
    was = {f"{h}.{k}": v for h in ("train", "method") for k, v in {**defaults[h], **record[h]}.items()}
    now = {f"{h}.{k}": v for h in ("train", "method") for k, v in learned[h].items()}
    return [f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Busy:
    def __repr__(self) -> str:
        return "BUSY"


BUSY: Any = _Busy()
"""What :func:`train_row` and :func:`score_row` return with ``wait=False`` for a row or score
another process is computing (compare with ``is``)."""


def train_row(cfg: BenchConfig, recipe: str, data: Path, seed: int | None = None, *,
              wait: bool = True) -> dict[str, Any] | None:
    """Train (or resume, or reuse) ``recipe``'s row at ``seed``; returns its training record (None:
    ``cached`` and not trained). Two processes on one ``out=`` take turns on a row: the second
    waits, then reuses the first one's run (with ``wait=False`` it gets :data:`BUSY` at once)."""
    seed = seeds_of(cfg)[0] if seed is None else seed
    name = seeded(row_name(recipe), seed, cfg)
    folder = Path(cfg.out) / "train" / name
    record_path = folder / "bench.json"
    if cfg.cached:
        return json.loads(record_path.read_text()) if record_path.exists() else None
    init = init_weights(cfg, seed)
    per_step = pixels_per_step(*resolve_command(train_command(cfg, recipe, data, init, None, seed)))
    steps = budget_steps(cfg.budget_mpx, per_step)
    argv = train_command(cfg, recipe, data, init, steps, seed)
    train_cfg, method_cfg = resolve_command(argv)
    learned = _learning_config(train_cfg, method_cfg)

    def trained() -> dict[str, Any] | None:
        if not ((folder / "encoder.safetensors").exists() and record_path.exists()):
            return None
        record = json.loads(record_path.read_text())
        changed = _changed(record["config"], learned, train_cfg.method)
        missing = [s for s in train_cfg.snapshots if not snapshot_path(folder, s).exists()]
        if not changed and not missing:
            return record
        if changed:
            raise ValueError(f"{folder}: trained with other settings ({'; '.join(changed)}); remove it to retrain, "
                             "or choose another out=")
        raise ValueError(f"{folder}: trained without the snapshots of curve= (steps {missing}); remove it to "
                         "retrain, or choose another out=")

    record = trained()
    if record is not None:
        return record
    with exclusive(folder.with_name(f".{name}.lock"), f"{folder}: trained by another process; waiting for it",
                   wait=wait) as held:
        if not held:
            return BUSY
        return trained() or _train(cfg, train_cfg, method_cfg, argv, name, per_step, learned)


def _train(cfg: BenchConfig, train_cfg: TrainConfig, method_cfg: Any, argv: list[str], name: str, per_step: int,
           learned: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) one row's training and record it; its scores of an earlier encoder go."""
    from vidssl.engine.trainer import train

    folder = Path(train_cfg.out)
    resume = (folder / "config.yaml").exists()  # a killed run continues
    start, cpu = time.perf_counter(), _cpu_seconds()
    train(dataclasses.replace(train_cfg, resume=resume), method_cfg)
    record = {"command": shlex.join(argv), "recipe": argv[2], "seed": train_cfg.seed, "steps": train_cfg.steps,
              "pixels_per_step": per_step, "budget_mpx": cfg.budget_mpx,
              "minutes": round((time.perf_counter() - start) / 60, 2),
              "cpu_minutes": round((_cpu_seconds() - cpu) / 60, 2), "resumed": resume,
              "load_average": round(os.getloadavg()[0], 2), "date": _now(), "config": learned}
    evals = Path(cfg.out) / "eval"
    for stale in evals.iterdir() if evals.is_dir() else ():  # scores of an earlier encoder: gone before the record
        if stale.name == name or stale.name.startswith(name + "@"):
            shutil.rmtree(stale, ignore_errors=True)
    atomic_write_json(folder / "bench.json", record)
    return record


def encoder_spec(cfg: BenchConfig, row: Row, training: dict[str, dict[str, Any]] | None = None) -> str:
    """What ``eval`` reads for ``row``: a baseline's name, a seed's initialisation, a run's encoder
    or the snapshot of a curve point (``training``: the runs' records, for their steps)."""
    if row.base in ("copy", "pixels"):
        return row.base
    if row.base == "random":
        return str(init_path(cfg, row.seed))
    folder = Path(cfg.out) / "train" / seeded(row.base, row.seed, cfg)
    if row.fraction >= 1:
        return str(folder / "encoder.safetensors")
    steps = (training or {}).get(seeded(row.base, row.seed, cfg), {}).get("steps")
    points = fraction_steps(cfg.curve, steps) if steps is not None else {}
    return str(snapshot_path(folder, points[row.fraction])) if row.fraction in points else ""


def synth_protocol(cfg: BenchConfig, preset: str) -> dict[str, Any]:
    """The keys of the synthetic held-out protocol (:class:`vidssl.evaluation.synth.SynthEvalConfig`)
    for this benchmark, all but the encoder and the results folder."""
    return dict(root=cfg.synth or str(Path(cfg.out) / "synth_held_out"), videos=cfg.synth_held_out,
                frames=cfg.synth_frames, height=cfg.synth_height, width=cfg.synth_width, objects=5,
                video_seed=cfg.seed + 1000, preset=preset, seed=cfg.seed)


def protocol(preset: str) -> str:
    """eval's ``preset=`` of a benchmark protocol name (``default`` is vidssl's own: '')."""
    return "" if preset == "default" else preset


@dataclass(frozen=True)
class Score:
    """One score of a row: an eval under one protocol (and, for DAVIS, one frame size)."""

    which: str  # an entry of EVALS
    preset: str = ""  # a protocol name of cfg.preset ('' for knn, linear)
    size: int | None = None  # DAVIS short side (None: davis_size)
    images: bool = False  # knn, linear: on cfg.images instead of the synthetic crops

    def key(self, cfg: BenchConfig) -> str:
        """Its folder under ``OUT/eval/ROW`` and its name in results: ``davis``, ``davis~default``,
        ``davis@240``, ``knn~images``, ...: the main protocol and size carry no suffix."""
        text = self.which
        if self.preset and self.preset != cfg.preset[0]:
            text += f"~{self.preset}"
        if self.images:
            text += "~images"
        if self.size is not None:
            text += f"@{self.size}"
        return text


def scores_of(cfg: BenchConfig, row: Row) -> list[Score]:
    """What is scored for ``row``: every eval under every protocol; the curve points only the
    cheap ones (DAVIS at ``curve_davis_size``, JHMDB, cycle) under the main protocol, and the end
    points and baselines DAVIS at that size too, so the two sizes are compared on the same encoders."""
    cheap = cfg.curve_davis_size if cfg.curve and cfg.curve_davis_size and cfg.curve_davis_size != cfg.davis_size \
        else None
    point = row.fraction < 1
    out = []
    for which in cfg.evals:
        if which in ("knn", "linear"):
            if not point:
                out += [Score(which), *([Score(which, images=True)] if cfg.images else [])]
            continue
        if which == "cycle":
            out.append(Score(which, cfg.preset[0]))
            continue
        if point and which == "synth":
            continue
        for preset in cfg.preset[:1] if point else cfg.preset:
            if which == "davis":
                if not point or cheap is None:
                    out.append(Score(which, preset))
                if cheap is not None:
                    out.append(Score(which, preset, cheap))
            else:
                out.append(Score(which, preset))
    return out


def score_row(cfg: BenchConfig, row: Row, score: Score, *, progress: bool,
              training: dict[str, dict[str, Any]] | None = None, wait: bool = True) -> dict[str, Any] | None:
    """Compute (or read) one score of one row; None where it does not apply or is not computed. Two
    processes on one ``out=`` take turns on a score: the second waits, then reads the first one's
    (with ``wait=False`` it gets :data:`BUSY` at once, to come back to it later)."""
    out = Path(cfg.out) / "eval" / row.name / score.key(cfg)
    done = _held(cfg, row, score, out / "results.json")
    if done is not None or cfg.cached:
        return done
    encoder = encoder_spec(cfg, row, training)
    if not encoder or (row.base == "copy" and score.which in ("jhmdb", "knn", "linear", "cycle")):
        return None  # copy carries masks only; a curve point of a run not trained
    with exclusive(out.with_name(f".{out.name}.lock"), f"{out}: being scored by another process; waiting for it",
                   wait=wait) as held:
        if not held:
            return BUSY
        done = _held(cfg, row, score, out / "results.json", since=_STARTED)  # computed while this one waited
        return done if done is not None else _score(cfg, row, score, out, encoder, progress=progress)


_STARTED = time.time()  # a forced score another process wrote after this one started is not computed again


def _held(cfg: BenchConfig, row: Row, score: Score, results: Path, *,
          since: float | None = None) -> dict[str, Any] | None:
    """The cached ``results`` of ``score`` if they hold this score (None: compute it); for a row in
    ``force`` only results written after ``since`` (None: never)."""
    which, preset = score.which, protocol(score.preset)
    size = (cfg.davis_size if score.size is None else score.size) if which == "davis" else None
    forced = row.name in cfg.force and (since is None or not results.exists() or results.stat().st_mtime < since)
    if results.exists() and not forced:
        done = json.loads(results.read_text())
        held = done.get("settings") or {}
        same = not held or (held.get("preset", "") == preset and (size is None or held.get("size") == size))
        if score.images:  # scored on another folder, or before the balanced figure: computed again
            same = (same and Path(done.get("data", "")).resolve() == Path(cfg.images).expanduser().resolve()
                    and all(m in done for m in IMAGES_METRICS))
        if which == "cycle":  # on other held-out videos or clips: computed again (a record without them: 2 clips)
            same = same and all(held.get(k, d) == v for k, v, d in (("held_out", cfg.held_out, cfg.held_out),
                                                                     ("clips", cfg.cycle_clips, 2)))
        stale = which == "cycle" and "colour gain" not in done  # scored before the colour gain: computed again
        if done.get("complete", True) and same and (not stale or cfg.cached):  # eval davis: complete at the end
            if stale:
                log.warning("%s: no colour gain (scored before it existed); a run without cached=true rescores it",
                            results)
            return done
    return None


def _score(cfg: BenchConfig, row: Row, score: Score, out: Path, encoder: str, *, progress: bool) -> dict[str, Any]:
    """Compute one score into ``out`` (``OUT/eval/ROW/SCORE``) and return its results."""
    which, preset = score.which, protocol(score.preset)
    size = (cfg.davis_size if score.size is None else score.size) if which == "davis" else None
    if which == "synth":
        from vidssl.evaluation.synth import SynthEvalConfig, evaluate_synth

        held = SynthEvalConfig(encoder=encoder, out=str(out), **synth_protocol(cfg, preset))
        if not cfg.synth:  # the benchmark's own held-out set: written once, and only with these settings
            check_synth(Path(held.root), dict(num_videos=held.videos, num_frames=held.frames, height=held.height,
                                              width=held.width, num_objects=held.objects, seed=held.video_seed))
        evaluate_synth(held, progress=progress)
    elif which == "davis":
        from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis

        split = {"split": cfg.split} if cfg.split else {}
        evaluate_davis(DavisEvalConfig(root=cfg.davis, preset=preset, encoder=encoder, size=size, out=str(out),
                                       seed=cfg.seed, **split), progress=progress)
    elif which == "jhmdb":
        from vidssl.evaluation.jhmdb import JhmdbEvalConfig, evaluate_jhmdb

        evaluate_jhmdb(JhmdbEvalConfig(root=cfg.jhmdb, preset=preset, encoder=encoder, out=str(out),
                                       seed=cfg.seed), progress=progress)
    elif which == "cycle":
        from vidssl.evaluation.cycle import CycleConfig, evaluate_cycle

        evaluate_cycle(CycleConfig(root=str(training_videos(cfg, progress=progress)), held_out=cfg.held_out,
                                   preset=preset, encoder=encoder, size=TrainConfig.val_size, out=str(out),
                                   clips=cfg.cycle_clips, seed=cfg.seed), progress=progress)
    elif which == "knn":
        from vidssl.evaluation.knn import KnnEvalConfig, run_knn

        run_knn(KnnEvalConfig(encoder=encoder, data=cfg.images if score.images else "", out=str(out), workers=1,
                              seed=cfg.seed))
    else:
        from vidssl.evaluation.linear import LinearEvalConfig, run_linear

        run_linear(LinearEvalConfig(encoder=encoder, data=cfg.images if score.images else "", out=str(out),
                                    workers=1, seed=cfg.seed))
    return json.loads((out / "results.json").read_text())


def bench_command(cfg: BenchConfig) -> str:
    """``vidssl bench key=value ...`` that re-creates ``cfg`` (the keys that are not defaults)."""
    default = BenchConfig()
    parts = ["vidssl", "bench"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value == getattr(default, f.name) or f.name == "cached":  # cached=true reports the same computation
            continue
        text = f"({','.join(str(v) for v in value)})" if isinstance(value, tuple) else str(value)
        parts.append(f"{f.name}={text}")
    return shlex.join(parts)


def machine() -> str:
    """The machine in words: CPU model and cores, GPU, OS, torch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} CPU threads, {gpu}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")




def run_bench(cfg: BenchConfig, *, progress: bool = False) -> dict[str, Any]:
    """Train every recipe at every seed (or reuse it), score every row, and write
    ``OUT/results.json``, ``OUT/results.md``, ``OUT/learning.png`` and, with ``curve``,
    ``OUT/curves.png``; returns the results record."""
    check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = rows(cfg)
    if not cfg.cached:
        for seed in seeds_of(cfg):
            init_weights(cfg, seed)
    data = training_videos(cfg, progress=progress) if cfg.recipes and not cfg.cached else Path(cfg.videos)
    training: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, Any]] = {}
    for seed in seeds_of(cfg):  # a seed's rows are scored before the next seed trains: a stopped run has whole seeds
        busy = []  # rows another process on this out= is training: the others first, then wait for them
        for recipe in cfg.recipes:
            record = train_row(cfg, recipe, data, seed, wait=False)
            if record is BUSY:
                log.info("%s: being trained by another process; coming back to it", seeded(row_name(recipe), seed, cfg))
                busy.append(recipe)
            elif record is not None:
                training[seeded(row_name(recipe), seed, cfg)] = record
        for recipe in busy:
            record = train_row(cfg, recipe, data, seed)
            if record is not None:
                training[seeded(row_name(recipe), seed, cfg)] = record
        later = []  # scores another process on this out= is computing: the others first, then wait for them
        for row in (r for r in lines if r.seed == seed):
            scores[row.name] = {}
            for score in scores_of(cfg, row):
                result = score_row(cfg, row, score, progress=progress, training=training, wait=False)
                if result is BUSY:
                    log.info("%s %s: being scored by another process; coming back to it", row.name, score.key(cfg))
                    later.append((row, score))
                elif result is not None:
                    scores[row.name][score.key(cfg)] = result
        for row, score in later:
            result = score_row(cfg, row, score, progress=progress, training=training)
            if result is not None:
                scores[row.name][score.key(cfg)] = result
    scores = {r.name: scores.get(r.name, {}) for r in lines}
    table: dict[str, dict[str, Any]] = {}
    for row in lines:
        table[row.name] = headline(scores[row.name], cfg.davis_size)
        if row.fraction >= 1 and row.name in training:
            t = training[row.name]
            table[row.name] |= {"train min": t["minutes"], "train CPU min": t["cpu_minutes"], "steps": t["steps"]}
    plot = out / "learning.png"
    ends = {r.name: table[r.name] for r in lines if r.fraction >= 1}
    plotted = {column("davis", "J&F", cfg.davis_size), *PLOTTED}
    bars = {r: {k: {"v": v} for k, v in vals.items() if v is not None and k in plotted} for r, vals in ends.items()}
    presets = ", ".join(cfg.preset)
    if any(bars.values()):
        from vidssl.evaluation.invariance import plot_comparison

        plot_comparison(bars, plot, key="v", title=f"{cfg.budget_mpx:g} Mpx of training per recipe, one "
                        f"initialisation ({cfg.init}); preset={cfg.preset[0]}")
    command, when, where = bench_command(cfg), _now(), machine()
    previous = out / "results.json"
    if previous.exists():  # a rerun that computed nothing keeps when and where its figures were computed
        try:
            held = json.loads(previous.read_text())
        except json.JSONDecodeError:
            held = {}
        if held.get("command") == command and held.get("table") == json.loads(json.dumps(table)):
            when, where = held.get("date", when), held.get("machine", where)
    record = {"command": command, "machine": where, "date": when, "results": str(previous),
              "plot": str(plot) if any(bars.values()) else "", "config": to_dict(cfg), "table": table,
              "rows": [dataclasses.asdict(r) for r in lines], "training": training, "scores": scores}
    record = json.loads(json.dumps(record))  # the record as it will be read back (tuples as lists)
    record["seeds"] = seed_table(record["config"], table, record["rows"])
    record["comparisons"] = comparisons(record)
    record["curves"] = curves(record)
    curve_plot = plot_curves(record["curves"], table, out / "curves.png",
                             title=f"learning curves, {cfg.budget_mpx:g} Mpx runs; protocols {presets}")
    record["curve_plot"] = str(curve_plot) if curve_plot else ""
    atomic_write_json(out / "results.json", record)
    atomic_write_text(out / "results.md", section(record, level=1) + "\n")
    return record
