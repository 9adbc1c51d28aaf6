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
and spread over seeds and each recipe against ``random`` and ``pixels`` (:func:`comparisons`: a win
must hold beyond the seeds' spread and in a Wilcoxon test over sequences). ``curve=(0.125,0.25,0.5)``
scores snapshots of the first seed's runs along their one schedule (rows ``ROW@0.125`` ...), DAVIS at
``curve_davis_size`` (the end points at both sizes, so the cheap protocol's relation to the full one
is measured); :func:`curves` adds how well the label-free score ranks the points against DAVIS J&F.

Caching: ``OUT/train/ROW`` is a ``vidssl train`` run folder (a killed run resumes; a finished one is
reused while its resolved config is the one asked for, and refused with the keys that differ
otherwise), every score is ``OUT/eval/ROW/SCORE/results.json`` (SCORE: ``davis``, ``davis~default``,
``davis@240``, ...: :class:`Score`): a rerun computes only what is
missing (``force=ROW,...`` recomputes those rows' scores; ``cached=true`` computes nothing). The
same command started twice (one per core, ``taskset -c 0`` / ``-c 1``) shares the work: each row's
training and each score is held by an OS lock (``OUT/train/.ROW.lock``, ``OUT/eval/ROW/.SCORE.lock``);
a process skips the scores the other holds and comes back to them (reading the other's results)
after the seed's rest, and waits for a row the other is training.
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
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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


def row_name(recipe: str) -> str:
    """A recipe's row: its file name without ``.yaml`` (``cpu/fti`` -> ``fti``)."""
    return Path(recipe).name.removesuffix(".yaml").removesuffix(".yml")


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


def curve_steps(cfg: BenchConfig, steps: int) -> dict[float, int]:
    """The step of each curve fraction of a run of ``steps`` (at least 1, at most ``steps - 1``);
    a fraction that lands on the step of a smaller one is left out (one encoder, one point)."""
    out: dict[float, int] = {}
    for f in sorted(cfg.curve):
        step = min(max(1, round(f * steps)), max(1, steps - 1))
        if step not in out.values():
            out[f] = step
    return out


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
        argv.append(f"snapshots=({','.join(str(s) for s in sorted(set(curve_steps(cfg, steps).values())))})")
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


def train_row(cfg: BenchConfig, recipe: str, data: Path, seed: int | None = None) -> dict[str, Any] | None:
    """Train (or resume, or reuse) ``recipe``'s row at ``seed``; returns its training record (None:
    ``cached`` and not trained). Two processes on one ``out=`` take turns on a row (the second
    waits, then reuses the first one's run)."""
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
    with exclusive(folder.with_name(f".{name}.lock"), f"{folder}: trained by another process; waiting for it"):
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
    atomic_write_json(folder / "bench.json", record)
    evals = Path(cfg.out) / "eval"
    for stale in evals.iterdir() if evals.is_dir() else ():  # scores of an earlier encoder of this row
        if stale.name == name or stale.name.startswith(name + "@"):
            shutil.rmtree(stale, ignore_errors=True)
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
    points = curve_steps(cfg, steps) if steps is not None else {}
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


BUSY: dict[str, Any] = {}
"""What :func:`score_row` returns with ``wait=False`` for a score another process is computing."""


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
        done = _held(cfg, row, score, out / "results.json")  # computed while this one waited
        return done if done is not None else _score(cfg, row, score, out, encoder, progress=progress)


def _held(cfg: BenchConfig, row: Row, score: Score, results: Path) -> dict[str, Any] | None:
    """The cached ``results`` of ``score`` if they hold this score (None: compute it; always for a
    row in ``force``)."""
    which, preset = score.which, protocol(score.preset)
    size = (cfg.davis_size if score.size is None else score.size) if which == "davis" else None
    if results.exists() and row.name not in cfg.force:
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


# --- results -------------------------------------------------------------------------------------

METRICS = {"davis": ("DAVIS", ("J&F", "J", "F")), "jhmdb": ("JHMDB", ("PCK@0.1", "PCK@0.2")),
           "synth": ("synth", ("J&F", "PCK@0.1", "PCK@0.2")), "knn": ("kNN", ("top1",)),
           "linear": ("linear", ("top1",)), "cycle": ("cycle", ("colour gain", "cycle J", "cycle accuracy"))}
IMAGES_METRICS = ("top1_balanced",)
"""The table's metric of ``knn~images`` / ``linear~images``: an image folder of real crops is as
unbalanced as the videos it was cut from, so its headline is the mean per-class accuracy (top-1,
and the majority baseline, stay in the score's results)."""
METRIC_NAMES = {"top1": "top-1", "top1_balanced": "balanced top-1"}
PLOTTED = ("DAVIS J&F", "JHMDB PCK@0.2", "synth J&F", "synth PCK@0.2", "kNN top-1", "linear top-1",
           "kNN balanced top-1 [images]", "linear balanced top-1 [images]", "cycle J")  # colour gain < 0 is no bar


def column(key: str, metric: str, davis_size: int = 0) -> str:
    """A table column of score ``key`` (:meth:`Score.key`) and one of its metrics: ``DAVIS J&F``,
    ``DAVIS J&F [default]``, ``DAVIS J&F [240p]``, ``kNN top-1``, ``kNN balanced top-1 [images]``,
    ``cycle J``. A DAVIS score at the run's own size is named with ``davis_size`` where that is not
    0 (the frames as they are), so 240p scores of two runs share a column whichever size was each run's main."""
    which, _, rest = key.partition("@")
    which, _, preset = which.partition("~")
    size = rest or (str(davis_size) if which == "davis" and davis_size else "")
    label = METRICS[which][0]
    name = metric if which == "cycle" else f"{label} {METRIC_NAMES.get(metric, metric)}"
    tags = [t for t in (preset, f"{size}p" if size else "") if t]
    return f"{name} [{', '.join(tags)}]" if tags else name


def headline(scores: dict[str, Any], davis_size: int = 0) -> dict[str, float | None]:
    """The numbers of one row's table line, by column (a score's metrics; absent: not scored)."""
    line: dict[str, float | None] = {}
    for key, result in scores.items():
        which, _, tag = key.partition("@")[0].partition("~")
        for metric in IMAGES_METRICS if tag == "images" else METRICS[which][1]:
            value = result.get(metric)
            line[column(key, metric, davis_size)] = None if value is None else float(value)
    return line


_ORDER = [column(which, metric) for which, (_, metrics) in METRICS.items() for metric in metrics]


def _ordered(columns: set[str]) -> list[str]:
    """Columns grouped by protocol and size (the main ones first), in :data:`METRICS` order within."""

    def key(c: str) -> tuple[str, int, str]:
        base, _, tag = c.partition(" [")
        return tag, _ORDER.index(base) if base in _ORDER else len(_ORDER), c

    return sorted(columns, key=key)


def markdown_table(table: dict[str, dict[str, Any]]) -> str:
    """One line per row; the score columns that hold a number, then the training cost."""
    columns = _ordered({c for v in table.values() for c, x in v.items() if x is not None and c not in _COST})
    columns += [c for c in _COST if any(v.get(c) is not None for v in table.values())]
    lines = ["| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for row, values in table.items():
        cells = []
        for c in columns:
            v = values.get(c)
            cells.append("" if v is None else f"{v}" if c in _COST else f"{v:.3f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_COST = ("train min", "train CPU min", "steps")


def per_sequence_table(scores: dict[str, dict[str, Any]], which: str = "davis") -> str:
    """J&F per sequence and row of score ``which`` (Markdown; '' when none has sequences)."""
    rows_ = {r: s[which]["per_sequence"] for r, s in scores.items() if s.get(which, {}).get("per_sequence")}
    if not rows_:
        return ""
    sequences = list(dict.fromkeys(seq for per in rows_.values() for seq in per))
    lines = ["| sequence | " + " | ".join(rows_) + " |", "|---|" + "---:|" * len(rows_)]
    for seq in sequences:
        cells = [f"{rows_[r][seq]['J&F']:.3f}" if seq in rows_[r] else "" for r in rows_]
        lines.append(f"| {seq} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(cfg: dict[str, Any], table: dict[str, dict[str, Any]], row_list: list[dict[str, Any]]) -> dict:
    """Per baseline and recipe with more than one seed: each column's mean, standard deviation
    (n - 1) and seed count over its end rows."""
    groups: dict[str, list[str]] = {}
    for r in row_list:
        if r["fraction"] >= 1:
            groups.setdefault(r["base"], []).append(r["name"])
    out = {}
    for base, names in groups.items():
        if len(names) < 2:
            continue
        stats = {}
        for c in {c for n in names for c, v in table.get(n, {}).items() if v is not None and c not in _COST}:
            values = [table[n][c] for n in names if table.get(n, {}).get(c) is not None]
            if values:
                mean = sum(values) / len(values)
                sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
                stats[c] = {"mean": mean, "sd": sd, "n": len(values)}
        if stats and max(v["n"] for v in stats.values()) >= 2:  # a spread needs two seeds that have scores
            out[base] = stats
    return out


def seed_markdown(stats: dict[str, dict[str, dict[str, float]]]) -> str:
    if not stats:
        return ""
    columns = _ordered({c for s in stats.values() for c in s})
    lines = ["| row (seeds) | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for base, s in stats.items():
        n = max(v["n"] for v in s.values())
        cells = ["" if c not in s else f"{s[c]['mean']:.3f} (1 seed)" if s[c]["n"] < 2 else
                 f"{s[c]['mean']:.3f} ± {s[c]['sd']:.3f}" + (f" ({s[c]['n']} seeds)" if s[c]["n"] < n else "")
                 for c in columns]
        lines.append(f"| {base} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sequence_means(scores: dict[str, dict[str, Any]], names: list[str], key: str) -> dict[str, float]:
    """Per DAVIS sequence, the mean J&F over ``names`` (the seeds of one row) of score ``key``."""
    per: dict[str, list[float]] = {}
    for n in names:
        for seq, v in scores.get(n, {}).get(key, {}).get("per_sequence", {}).items():
            per.setdefault(seq, []).append(float(v["J&F"]))
    return {seq: sum(v) / len(v) for seq, v in per.items() if len(v) == len(names)}


def comparisons(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every recipe against ``random`` and ``pixels`` on each full-size DAVIS protocol: the
    difference of seed means, the spread (the two rows' seed standard deviations added), the
    sequences where the recipe is ahead, and a one-sided Wilcoxon signed-rank test over sequences
    of the per-sequence J&F (means over seeds). A **win** is a difference beyond the spread with
    p < 0.05."""
    from scipy.stats import wilcoxon

    rows_, scores = record["rows"], record["scores"]
    ends: dict[str, list[str]] = {}
    for r in rows_:
        if r["fraction"] >= 1:
            ends.setdefault(r["base"], []).append(r["name"])
    recipes = [row_name(r) for r in record["config"]["recipes"]]
    keys = sorted({k for s in scores.values() for k in s if k.startswith("davis") and "@" not in k})
    out = []
    for key in keys:
        for base in recipes:
            for other in ("random", "pixels"):
                if base not in ends or other not in ends:
                    continue
                mine, theirs = _sequence_means(scores, ends[base], key), _sequence_means(scores, ends[other], key)
                common = sorted(set(mine) & set(theirs))
                if not common:
                    continue
                a = [scores[n][key]["J&F"] for n in ends[base] if key in scores.get(n, {})]
                b = [scores[n][key]["J&F"] for n in ends[other] if key in scores.get(n, {})]

                def sd(v: list[float]) -> float:
                    m = sum(v) / len(v)
                    return (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0

                diff = sum(a) / len(a) - sum(b) / len(b)
                spread = sd(a) + sd(b)
                deltas = [mine[s] - theirs[s] for s in common]
                p = float(wilcoxon(deltas, alternative="greater").pvalue) if any(deltas) else 1.0
                out.append({"score": key, "row": base, "against": other, "seeds": [len(a), len(b)],
                            "difference": diff, "spread": spread, "ahead": sum(d > 0 for d in deltas),
                            "sequences": len(common), "p": p, "win": diff > spread and p < 0.05})
    return out


def comparison_markdown(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    lines = ["| score | row | against | seeds | J&F difference | spread | sequences ahead | p (Wilcoxon) | win |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for c in items:
        lines.append(f"| {c['score']} | {c['row']} | {c['against']} | {c['seeds'][0]} vs {c['seeds'][1]} | "
                     f"{c['difference']:+.3f} | {c['spread']:.3f} | {c['ahead']}/{c['sequences']} | {c['p']:.3f} | "
                     f"{'yes' if c['win'] else 'no'} |")
    return "\n".join(lines)


def curves(record: dict[str, Any]) -> dict[str, Any]:
    """Each recipe's learning curve per seed: points (fraction of the budget, million pixels,
    every score), from the initialisation (the seed's random row, fraction 0) through the
    snapshots to the end; and, where the cycle score was computed, how well it ranks the points
    against DAVIS J&F: Spearman's rho, and the J&F lost by keeping the point it prefers."""

    cfg, table = record["config"], record["table"]
    budget = float(cfg["budget_mpx"])
    by_base: dict[str, dict[int, list[tuple[float, str]]]] = {}
    randoms = {r["seed"]: r["name"] for r in record["rows"] if r["base"] == "random"}
    for r in record["rows"]:
        if r["recipe"]:
            by_base.setdefault(r["base"], {}).setdefault(r["seed"], []).append((r["fraction"], r["name"]))
    out: dict[str, Any] = {}
    for base, seeds in by_base.items():
        for seed, points in seeds.items():
            if len(points) < 2:
                continue
            points = sorted(points)
            if seed in randoms:
                points = [(0.0, randoms[seed]), *points]
            run = record["training"].get(base if seed == (cfg.get("seeds") or [cfg["seed"]])[0] else
                                         f"{base}.s{seed}", {})
            steps, per_step, cpu = run.get("steps"), run.get("pixels_per_step"), run.get("cpu_minutes")
            at = {0.0: 0, 1.0: steps, **(curve_steps_of(cfg, steps) if steps else {})}
            # a point's CPU minutes: the run's, pro rata to its steps (a resumed run counts only what it ran)
            line = [{"fraction": f, "step": at.get(f), "row": n,
                     "mpx": at[f] * per_step / 1e6 if per_step and at.get(f) is not None else f * budget,
                     "cpu_min": cpu * at[f] / steps if cpu and steps and at.get(f) is not None and
                     not run.get("resumed") else None,
                     **{c: v for c, v in table.get(n, {}).items() if v is not None and c not in _COST}}
                    for f, n in points if table.get(n)]
            entry: dict[str, Any] = {"points": line}
            target = _curve_column(line)
            for signal in LABEL_FREE:
                have = [p for p in line if p.get(signal) is not None and p.get(target) is not None]
                if target and len(have) >= 3:
                    trained = [p for p in have if p["fraction"] > 0]
                    chosen, best, lost = _choice(trained, target, signal)
                    entry.setdefault("rankings", {})[signal] = {
                        "signal": signal, "column": target, "spearman": _rho(have, target, signal),
                        "spearman_trained": _rho(trained, target, signal), "chosen": chosen["row"],
                        "best": best["row"], "lost": lost}
            if entry.get("rankings"):  # the one keep_best uses where it was scored
                entry["ranking"] = next(iter(entry["rankings"].values()))
            first = (cfg.get("seeds") or [cfg["seed"]])[0]
            out[base if seed == first else f"{base}.s{seed}"] = entry
    return out


LABEL_FREE = ("colour gain", "cycle J")  # the label-free scores a curve is ranked by; keep_best's first


def _choice(points: list[dict[str, Any]], target: str, signal: str) -> tuple[dict, dict, float]:
    """The point ``signal`` prefers, the best point by ``target``, and the ``target`` lost by the choice."""
    chosen, best = max(points, key=lambda p: p[signal]), max(points, key=lambda p: p[target])
    return chosen, best, best[target] - chosen[target]


def _rho(points: list[dict[str, Any]], column: str, signal: str = "cycle J") -> float | None:
    """Spearman's rho of the label-free ``signal`` against ``column`` over ``points``; None for
    fewer than 3 points or a constant score (which ranks nothing)."""
    from scipy.stats import spearmanr

    if len(points) < 3:
        return None
    value = float(spearmanr([p[signal] for p in points], [p[column] for p in points]).statistic)
    return None if math.isnan(value) else value


def curve_steps_of(cfg: dict[str, Any], steps: int) -> dict[float, int]:
    """:func:`curve_steps` of a results record's config."""
    return curve_steps(BenchConfig(curve=tuple(cfg.get("curve", ()))), steps)


def _curve_column(line: list[dict[str, Any]]) -> str:
    """The DAVIS J&F column every point of a curve has (the cheap size where there is one)."""
    common = set.intersection(*(set(p) for p in line)) if line else set()
    davis = sorted(c for c in common if c.startswith("DAVIS J&F"))
    return next((c for c in davis if "p]" in c and "," not in c), davis[0] if davis else "")


def curve_markdown(found: dict[str, Any]) -> str:
    parts = []
    for name, entry in found.items():
        columns = _ordered({c for p in entry["points"] for c in p} - set(_POINT_KEYS))
        lines = [f"{name}:", "", "| budget | step | Mpx | CPU min | " + " | ".join(columns) + " |",
                 "|---:|---:|---:|---:|" + "---:|" * len(columns)]
        for p in entry["points"]:
            cells = [f"{p[c]:.3f}" if p.get(c) is not None else "" for c in columns]
            cpu = "" if p.get("cpu_min") is None else f"{p['cpu_min']:.1f}"
            lines.append(f"| {p['fraction']:g} | {p.get('step', '')} | {p['mpx']:.1f} | {cpu} | " + " | ".join(cells)
                         + " |")
        def shown(value: float | None) -> str:
            return "n/a" if value is None else f"{value:+.2f}"

        rankings = entry.get("rankings") or ({"cycle J": entry["ranking"]} if "ranking" in entry else {})
        for signal, k in rankings.items():
            lines += ["", f"{signal} ranks these points against {k['column']} with Spearman's rho "
                          f"{shown(k['spearman'])} ({shown(k.get('spearman_trained'))} without the initialisation); "
                          f"of the trained points it prefers {k['chosen']}, the best is {k['best']}: "
                          f"{k['lost']:.3f} J&F lost by its choice."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


_POINT_KEYS = ("fraction", "mpx", "row", "step", "cpu_min")  # a curve point's own keys, not scores
# the curve panels (DAVIS: the curve's own column)
CURVE_PLOTTED = ("DAVIS J&F", "JHMDB PCK@0.2", "colour gain", "cycle J")


def plot_curves(found: dict[str, Any], table: dict[str, dict[str, Any]], path: Path, *, title: str) -> Path | None:
    """The curves' main scores (DAVIS J&F at the curve's size, JHMDB PCK@0.2, the label-free scores), a line per
    recipe and seed, the baselines as horizontal lines; against million encoder input pixels (top)
    and training CPU minutes (bottom, where the runs recorded them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if not found:
        return None
    shared = set.intersection(*(set(p) for e in found.values() for p in e["points"])) - set(_POINT_KEYS)
    davis = _curve_column([p for e in found.values() for p in e["points"]])
    columns = [c for c in (davis, *CURVE_PLOTTED[1:]) if c in shared] or _ordered(shared)
    if not columns:
        return None
    axes_x = [("mpx", "encoder input pixels (millions)")]
    timed = {n for n, e in found.items() if all(p.get("cpu_min") is not None for p in e["points"])}
    if timed:  # a resumed run's minutes are not pro rata to its steps: it has no line on this row
        axes_x.append(("cpu_min", "training CPU minutes (pro rata to steps)"))
    untimed = [n for n in found if n not in timed] if timed else []
    fig, axes = plt.subplots(len(axes_x), len(columns), figsize=(4.8 * len(columns), 3.6 * len(axes_x)),
                             squeeze=False)
    for (x, label), row_axes in zip(axes_x, axes, strict=True):
        for ax, c in zip(row_axes, columns, strict=True):
            for i, (name, entry) in enumerate(found.items()):
                if x == "mpx" or name in timed:  # one colour per run on both rows
                    ax.plot([p[x] for p in entry["points"]], [p[c] for p in entry["points"]], marker="o", label=name,
                            color=f"C{i % 10}")
            for base, style in (("pixels", "--"), ("copy", ":")):
                if table.get(base, {}).get(c) is not None:
                    ax.axhline(table[base][c], linestyle=style, color="gray", label=base)
            ax.set_xlabel(label, fontsize=8)
            spread = sorted(p[x] for e in found.values() for p in e["points"] if p[x])
            if spread and spread[-1] >= 8 * spread[0]:  # 1/8x to 4x of a budget: log-spaced, the init at 0
                ax.set_xscale("symlog", linthresh=spread[0], linscale=0.5)
                ax.set_xlim(0, spread[-1] * 1.3)
                low, high = math.ceil(math.log10(spread[0])), math.floor(math.log10(spread[-1] * 1.3))
                ax.set_xticks([0, *(10.0**k for k in range(low, high + 1))])
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_title(c, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 45 * len(columns)), fontsize=10)
    if untimed:
        fig.text(0.5, 0.005, f"not on the CPU-minutes row (resumed: minutes not pro rata): {', '.join(untimed)}",
                 ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.03 if untimed else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def merged_curves(records: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The curves of several results records as one mapping for :func:`plot_curves` (each run named
    ``ROW (B Mpx run)`` where the records' budgets differ, so two schedules of one recipe are two
    lines), and the baselines drawn as horizontal lines: each from the first record that scored it."""
    budgets = {float(r["config"]["budget_mpx"]) for r in records}
    found: dict[str, Any] = {}
    table: dict[str, dict[str, Any]] = {}
    for record in records:
        budget = float(record["config"]["budget_mpx"])
        for name, entry in (record.get("curves") or curves(record)).items():
            label = f"{name} ({budget:g} Mpx run)" if len(budgets) > 1 else name
            if label in found:
                raise ValueError(f"{record['results']}: a second curve named {label!r} (give each run once)")
            found[label] = entry
        for base in ("pixels", "copy"):
            if base in record["table"] and base not in table:
                table[base] = record["table"][base]
    return found, table


def pooled_rankings(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """How well each label-free score ranks every point of several curves at once (checkpoints and
    methods together, the question a user with several runs asks): Spearman's rho against the DAVIS
    column all points share, the point it prefers, the best, and the J&F lost. A point that appears
    in several curves (a shared initialisation) counts once."""
    target = _curve_column([p for e in found.values() for p in e["points"]])
    points, seen = [], set()
    for name, entry in found.items():
        for p in entry["points"]:
            key = (p["row"], *(p.get(c) for c in (target, *LABEL_FREE)))
            if key not in seen:
                seen.add(key)
                points.append({**p, "curve": name})
    out = {}
    for signal in LABEL_FREE:
        have = [p for p in points if p.get(signal) is not None and p.get(target) is not None]
        if target and len(have) >= 3:
            chosen, best, lost = _choice(have, target, signal)
            out[signal] = {"column": target, "points": len(have), "curves": len({p["curve"] for p in have}),
                           "spearman": _rho(have, target, signal),
                           "chosen": f"{chosen['curve']} at {chosen['mpx']:.0f} Mpx",
                           "best": f"{best['curve']} at {best['mpx']:.0f} Mpx", "lost": lost}
    return out


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




def images_floor(record: dict[str, Any]) -> str:
    """One sentence under the table when it has ``[images]`` columns: what they are, and what a
    constant guess scores there (the same for every row: it depends on the labels alone)."""
    done = next((r for s in record["scores"].values() for k, r in s.items() if k.endswith("~images")
                 and "majority" in r), None)
    if done is None:
        return ""
    return (f"`[images]`: mean per-class accuracy (balanced top-1) on `{done['data']}` ({done['num_val']} val images, "
            f"{done['num_classes']} classes); always naming train's largest class ({done['majority_class']!r}) "
            f"scores {done['majority_balanced']:.3f} balanced and {done['majority']:.3f} top-1, and val's largest "
            f"class holds {done['largest_val_share']:.3f} of it. Plain top-1 is in each score's results.")


def section(record: dict[str, Any], *, level: int = 2) -> str:
    """The Markdown of one results record: heading, provenance, tables, training commands."""
    cfg = record["config"]
    title = cfg.get("title") or (f"{', '.join(row_name(r) for r in cfg['recipes'])}: {cfg['budget_mpx']:g} million "
                                 "encoder input pixels each")
    ends = {n: v for n, v in record["table"].items() if "@" not in n}
    lines = [f"{'#' * level} {title}", "",
             f"Made by `{record['command']}` on {record['machine']}, {record['date']} "
             f"(results file `{record['results']}`, plot `{record['plot'] or 'none: nothing scored'}`).", "",
             markdown_table(ends)]
    floor = images_floor(record)
    if floor:
        lines += ["", floor]
    stats = seed_markdown(record.get("seeds", {}))
    if stats:
        lines += ["", "Over seeds (mean ± standard deviation of the end rows; `random`: its initialisations):", "",
                  stats]
    wins = comparison_markdown(record.get("comparisons", []))
    if wins:
        lines += ["", "Each recipe against the baselines, DAVIS J&F (a win: the difference of seed means is beyond "
                      "the spread, the two rows' seed standard deviations added, and a one-sided Wilcoxon "
                      "signed-rank test over sequences of the per-sequence J&F gives p < 0.05; with one seed the "
                      "spread is 0, and fewer than 5 sequences that differ can never reach p < 0.05):", "", wins]
    curve_text = curve_markdown(record.get("curves", {}))
    if curve_text:
        lines += ["", f"Learning curves (plot `{record.get('curve_plot') or 'none'}`): each run scored at "
                      "snapshots along its one schedule; budget 0 is its initialisation.", "", curve_text]
    main_davis = next((k for s in record["scores"].values() for k in s if k == "davis"), None)
    for which, caption in ((main_davis, "DAVIS J&F per sequence"), ("synth", "held-out synthetic J&F per video")):
        table = per_sequence_table({n: s for n, s in record["scores"].items() if n in ends}, which) if which else ""
        if table:
            lines += ["", f"{caption}:", "", table]
    if record["training"]:
        lines += ["", "Each trained row re-created by (the shared initialisation first: `OUT/init.safetensors`):", ""]
        lines += [f"- {name}: `{t['command']}` ({t['steps']} steps of {t['pixels_per_step']:,} pixels; load average "
                  f"{t['load_average']} when it ended, so wall minutes are upper bounds on a shared machine)"
                  for name, t in record["training"].items()]
    return "\n".join(lines)


def report(paths: list[str] | tuple[str, ...], *, command: str = "", curves_png: str = "") -> str:
    """A results page: one :func:`section` per results file, and the command that made the page;
    with ``curves_png``, every file's learning curves in one picture there (:func:`merged_curves`)."""
    if not paths:
        raise ConfigError("bench report needs results files: vidssl bench report RESULTS.json ... [out=PAGE]")
    records = []
    for path in paths:
        try:
            records.append(upgrade(json.loads(Path(path).read_text())))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such results file (written by vidssl bench)") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a results file of vidssl bench ({err})") from err
        except KeyError as err:
            raise ValueError(f"{path}: not a results file of vidssl bench (no {err})") from None
    command = command or shlex.join(["vidssl", "bench", "report", *map(str, paths)])
    head = ["# Results", "",
            f"<!-- generated by `{command}`; edit the results files or rerun the commands, not this page -->", "",
            f"Generated from {len(records)} results file(s) of `vidssl bench` by `{command}`. Each section names "
            "the command that computed it, the machine and the date; rerunning that command in its folder "
            "recomputes nothing and rewrites the results file, and this command rewrites the page.", ""]
    if curves_png:
        found, table = merged_curves(records)
        drawn = plot_curves(found, table, Path(curves_png), title="learning curves: " + "; ".join(
            r["config"].get("title") or r["results"] for r in records if r.get("curves")))
        if drawn is None:
            raise ValueError(f"curves={curves_png}: none of the results files has a learning curve (bench curve=)")
        head += [f"All learning curves in one picture: `{curves_png}`.", ""]
        for signal, k in pooled_rankings(found).items():
            rho = "n/a" if k["spearman"] is None else f"{k['spearman']:+.2f}"
            head += [f"Over all {k['points']} points of the {k['curves']} curves at once, {signal} ranks them against "
                     f"{k['column']} with Spearman's rho {rho}; it prefers {k['chosen']}, the best is {k['best']}: "
                     f"{k['lost']:.3f} J&F lost by its choice.", ""]
    return "\n".join(head + ["\n\n".join(section(r) for r in records), ""])


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A results record of an earlier release in today's shape (``rows``; ``preset`` a tuple)."""
    for key in ("command", "table", "config"):
        record[key]  # KeyError: not a results file
    cfg = record["config"]
    if isinstance(cfg.get("preset"), str):
        cfg["preset"] = [cfg["preset"]]
    cfg.setdefault("seeds", [])
    if "rows" not in record:
        record["rows"] = [{"name": n, "base": n, "seed": cfg.get("seed", 0),
                           "recipe": next((r for r in cfg["recipes"] if row_name(r) == n), ""), "fraction": 1.0}
                          for n in record["table"]]
    return record


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
        for recipe in cfg.recipes:
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
