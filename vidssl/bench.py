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
repeated), is scored with one protocol (``preset``, CRW's by default): ``synth`` (held-out synthetic
videos, ``vidssl eval synth``: J&F and keypoint PCK), ``davis`` (your clips in DAVIS layout: J&F),
``jhmdb`` (JHMDB layout: PCK), ``knn`` / ``linear`` (image probes on synthetic object crops).

Caching: ``OUT/train/ROW`` is a ``vidssl train`` run folder (a killed run resumes; a finished one is
reused while its resolved config is the one asked for, and refused with the keys that differ
otherwise), every score is ``OUT/eval/ROW/EVAL/results.json``: a rerun computes only what is
missing (``force=ROW,...`` recomputes those rows' scores; ``cached=true`` computes nothing).
Writes ``OUT/results.json`` (with the command, the machine and the date), ``OUT/results.md`` (the
tables) and ``OUT/learning.png`` (bars per score); ``vidssl bench report`` makes one page of
several results files.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
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

from vidssl.config import ConfigError, option, to_dict
from vidssl.engine.config import TrainConfig
from vidssl.files import atomic_write_json, atomic_write_text
from vidssl.methods.base import Method

BASELINES = ("copy", "pixels", "random")
EVALS = ("synth", "davis", "jhmdb", "knn", "linear")
# Keys the benchmark sets itself (the budget, the shared start, the row's folder), not a recipe or ``overrides``.
_BENCH_KEYS = ("steps", "data", "out", "weights", "seed", "resume", "overwrite")
# Keys that change how a run is executed, not what it learns: a cached run is reused across them.
_EXECUTION_KEYS = ("workers", "resume", "overwrite", "device", "log_every", "save_every")


@dataclass(frozen=True)
class BenchConfig:
    recipes: tuple[str, ...] = option(("cpu/fti", "cpu/simclr"), "recipes compared, one row each (files or shipped "
                                      "names: vidssl/recipes/cpu/*.yaml)")
    baselines: tuple[str, ...] = option(("random", "pixels"), "rows without training: random (the shared "
                                        "initialisation) | pixels (Lab colour) | copy (first labels repeated)")
    videos: str = option("", "training videos (searched recursively); '' = synthetic ones written into OUT/synth_train")
    tracks: str = option("", "tracks of 'vidssl tracks' over VIDEOS, given to the recipes with track positives")
    evals: tuple[str, ...] = option(("synth",), "scores: synth (held-out synthetic videos) | davis (needs davis=) | "
                                    "jhmdb (needs jhmdb=) | knn | linear (image probes on synthetic crops)")
    davis: str = option("", "labelled clips in DAVIS layout (JPEGImages/480p, Annotations/480p)")
    split: str = option("", "DAVIS sequences file ('' = eval davis's default)")
    davis_size: int = option(0, "short side of the DAVIS frames (0 = as they are)")
    jhmdb: str = option("", "labelled clips in JHMDB layout (Rename_Images, joint_positions)")
    synth: str = option("", "held-out synthetic videos ('' = OUT/synth_held_out, written with the synth_ keys)")
    preset: str = option("crw", "propagation protocol of every mask and keypoint score (eval davis preset=)")
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
    force: tuple[str, ...] = option((), "rows whose scores are recomputed")
    cached: bool = option(False, "report what is computed already (train and score nothing)")


@dataclass(frozen=True)
class ReportConfig:
    results: tuple[str, ...] = option((), "results.json files of 'vidssl bench', one section each, in order")
    out: str = option("", "page to write ('' = print it)")


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


def rows(cfg: BenchConfig) -> list[str]:
    return [*cfg.baselines, *(row_name(r) for r in cfg.recipes)]


def check(cfg: BenchConfig) -> None:
    """One-line errors for what is wrong before anything runs."""
    from vidssl.engine.config import find_recipe

    for name in cfg.baselines:
        if name not in BASELINES:
            raise ConfigError(f"baselines: unknown row {name!r}; choose from {', '.join(BASELINES)}")
    for name in cfg.evals:
        if name not in EVALS:
            raise ConfigError(f"evals: unknown score {name!r}; choose from {', '.join(EVALS)}")
    names = rows(cfg)
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


def init_weights(cfg: BenchConfig) -> Path:
    """``OUT/init.safetensors``: the shared initialisation, written once (``OUT/init.json`` records
    what it is; another ``init`` or seed in the same folder is refused)."""
    from vidssl.export import save_encoder
    from vidssl.features import resolve_encoder

    out = Path(cfg.out)
    path, record = out / "init.safetensors", out / "init.json"
    wanted = {"init": cfg.init, "seed": cfg.seed}
    if path.exists() and record.exists():
        held = json.loads(record.read_text())
        if held != wanted:
            raise ValueError(f"{out}: its shared initialisation is {held}, not {wanted}; choose another out=")
        return path
    with torch.random.fork_rng(devices=[]):
        encoder = resolve_encoder(cfg.init, seed=cfg.seed)
    save_encoder(encoder, path, metadata={"what": f"shared initialisation of vidssl bench: {cfg.init}, seed "
                                                  f"{cfg.seed}"})
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


def train_command(cfg: BenchConfig, recipe: str, data: Path, init: Path, steps: int | None) -> list[str]:
    """``vidssl train`` argv of ``recipe``'s row (without ``steps=`` when None: before the budget
    is known); ``tracks=`` only for a recipe with track positives."""
    folder = Path(cfg.out) / "train" / row_name(recipe)
    argv = ["vidssl", "train", recipe, str(data), f"out={folder}", f"weights={init}", f"seed={cfg.seed}",
            *cfg.overrides]
    if cfg.tracks and getattr(resolve_command(argv)[1], "positives", "frames") != "frames":
        argv.append(f"tracks={cfg.tracks}")
    return argv + ([f"steps={steps}"] if steps is not None else [])


def resolve_command(argv: list[str]) -> tuple[TrainConfig, Any]:
    """The configs of a :func:`train_command` argv (``vidssl train RECIPE DATA key=value ...``),
    resolved as the command line resolves them."""
    from vidssl.engine.config import read_recipe, resolve

    _, _, recipe, data, *pairs = argv
    return resolve([f"data={data}", *pairs], recipe=read_recipe(recipe))


def _learning_config(train_cfg: TrainConfig, method_cfg: Any) -> dict[str, Any]:
    """What a run learns from: the saved config without the keys of how it executes."""
    from vidssl.engine.config import config_dict

    saved = config_dict(train_cfg, method_cfg)
    return {"train": {k: v for k, v in saved["train"].items() if k not in _EXECUTION_KEYS},
            "method": saved["method"]}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def train_row(cfg: BenchConfig, recipe: str, data: Path, init: Path) -> dict[str, Any] | None:
    """Train (or resume, or reuse) ``recipe``'s row; returns its training record (None: ``cached``
    and not trained)."""
    from vidssl.engine.trainer import train

    name = row_name(recipe)
    folder = Path(cfg.out) / "train" / name
    record_path = folder / "bench.json"
    if cfg.cached:
        return json.loads(record_path.read_text()) if record_path.exists() else None
    per_step = pixels_per_step(*resolve_command(train_command(cfg, recipe, data, init, None)))
    steps = budget_steps(cfg.budget_mpx, per_step)
    argv = train_command(cfg, recipe, data, init, steps)
    train_cfg, method_cfg = resolve_command(argv)
    learned = _learning_config(train_cfg, method_cfg)
    if (folder / "encoder.safetensors").exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        if record["config"] == learned:
            return record
        was = {f"{h}.{k}": v for h in ("train", "method") for k, v in record["config"][h].items()}
        now = {f"{h}.{k}": v for h in ("train", "method") for k, v in learned[h].items()}
        changed = "; ".join(f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(was) | set(now))
                            if was.get(k) != now.get(k))
        raise ValueError(f"{folder}: trained with other settings ({changed}); remove it to retrain, or choose "
                         "another out=")
    resume = (folder / "config.yaml").exists()  # a killed run continues
    start, cpu = time.perf_counter(), _cpu_seconds()
    train(dataclasses.replace(train_cfg, resume=resume), method_cfg)
    record = {"command": shlex.join(argv), "recipe": recipe, "steps": steps, "pixels_per_step": per_step,
              "budget_mpx": cfg.budget_mpx, "minutes": round((time.perf_counter() - start) / 60, 2),
              "cpu_minutes": round((_cpu_seconds() - cpu) / 60, 2), "resumed": resume,
              "load_average": round(os.getloadavg()[0], 2), "date": _now(), "config": learned}
    atomic_write_json(record_path, record)
    shutil.rmtree(Path(cfg.out) / "eval" / name, ignore_errors=True)  # scores of an earlier encoder of this row
    return record


def encoder_spec(cfg: BenchConfig, name: str) -> str:
    if name in ("copy", "pixels"):
        return name
    if name == "random":
        return str(Path(cfg.out) / "init.safetensors")
    return str(Path(cfg.out) / "train" / name / "encoder.safetensors")


def held_out(cfg: BenchConfig) -> dict[str, Any]:
    """The keys of the synthetic held-out protocol (:class:`vidssl.evaluation.synth.SynthEvalConfig`)
    for this benchmark, all but the encoder and the results folder."""
    return dict(root=cfg.synth or str(Path(cfg.out) / "synth_held_out"), videos=cfg.synth_held_out,
                frames=cfg.synth_frames, height=cfg.synth_height, width=cfg.synth_width, objects=5,
                video_seed=cfg.seed + 1000, preset=cfg.preset, seed=cfg.seed)


def score_row(cfg: BenchConfig, name: str, which: str, *, progress: bool) -> dict[str, Any] | None:
    """Compute (or read) one score of one row; None where it does not apply or is not computed."""
    out = Path(cfg.out) / "eval" / name / which
    results = out / "results.json"
    if results.exists() and name not in cfg.force:
        done = json.loads(results.read_text())
        if done.get("complete", True):  # eval davis writes after each sequence, complete at the end
            return done
    if cfg.cached:
        return None
    encoder = encoder_spec(cfg, name)
    if name == "copy" and which in ("jhmdb", "knn", "linear"):
        return None  # copy carries masks only
    if which == "synth":
        from vidssl.evaluation.synth import SynthEvalConfig, evaluate_synth

        held = SynthEvalConfig(encoder=encoder, out=str(out), **held_out(cfg))
        if not cfg.synth:  # the benchmark's own held-out set: written once, and only with these settings
            check_synth(Path(held.root), dict(num_videos=held.videos, num_frames=held.frames, height=held.height,
                                              width=held.width, num_objects=held.objects, seed=held.video_seed))
        evaluate_synth(held, progress=progress)
    elif which == "davis":
        from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis

        split = {"split": cfg.split} if cfg.split else {}
        evaluate_davis(DavisEvalConfig(root=cfg.davis, preset=cfg.preset, encoder=encoder, size=cfg.davis_size,
                                       out=str(out), seed=cfg.seed, **split), progress=progress)
    elif which == "jhmdb":
        from vidssl.evaluation.jhmdb import JhmdbEvalConfig, evaluate_jhmdb

        evaluate_jhmdb(JhmdbEvalConfig(root=cfg.jhmdb, preset=cfg.preset, encoder=encoder, out=str(out),
                                       seed=cfg.seed), progress=progress)
    elif which == "knn":
        from vidssl.evaluation.knn import KnnEvalConfig, run_knn

        run_knn(KnnEvalConfig(encoder=encoder, out=str(out), workers=1, seed=cfg.seed))
    else:
        from vidssl.evaluation.linear import LinearEvalConfig, run_linear

        run_linear(LinearEvalConfig(encoder=encoder, out=str(out), workers=1, seed=cfg.seed))
    return json.loads(results.read_text())


# --- results -------------------------------------------------------------------------------------

COLUMNS = ("DAVIS J&F", "DAVIS J", "DAVIS F", "JHMDB PCK@0.1", "JHMDB PCK@0.2", "synth J&F", "synth PCK@0.1",
           "synth PCK@0.2", "kNN top-1", "linear top-1")
PLOTTED = ("DAVIS J&F", "JHMDB PCK@0.2", "synth J&F", "synth PCK@0.2", "kNN top-1", "linear top-1")


def headline(scores: dict[str, Any]) -> dict[str, float | None]:
    """The numbers of one row's table line (None: not scored)."""

    def get(which: str, key: str) -> float | None:
        value = scores.get(which, {}).get(key)
        return None if value is None else float(value)

    return {"DAVIS J&F": get("davis", "J&F"), "DAVIS J": get("davis", "J"), "DAVIS F": get("davis", "F"),
            "JHMDB PCK@0.1": get("jhmdb", "PCK@0.1"), "JHMDB PCK@0.2": get("jhmdb", "PCK@0.2"),
            "synth J&F": get("synth", "J&F"), "synth PCK@0.1": get("synth", "PCK@0.1"),
            "synth PCK@0.2": get("synth", "PCK@0.2"), "kNN top-1": get("knn", "top1"),
            "linear top-1": get("linear", "top1")}


def markdown_table(table: dict[str, dict[str, Any]]) -> str:
    """One line per row; the score columns that hold a number, then the training cost."""
    columns = [c for c in COLUMNS if any(v.get(c) is not None for v in table.values())]
    columns += ["train min", "train CPU min", "steps"]
    lines = ["| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for row, values in table.items():
        cells = []
        for c in columns:
            v = values.get(c)
            cells.append("" if v is None else f"{v:.3f}" if c in COLUMNS else f"{v}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def bench_command(cfg: BenchConfig) -> str:
    """``vidssl bench key=value ...`` that re-creates ``cfg`` (the keys that are not defaults)."""
    default = BenchConfig()
    parts = ["vidssl", "bench"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value == getattr(default, f.name):
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


def section(record: dict[str, Any], *, level: int = 2) -> str:
    """The Markdown of one results record: heading, provenance, tables, training commands."""
    cfg = record["config"]
    title = cfg.get("title") or (f"{', '.join(row_name(r) for r in cfg['recipes'])}: {cfg['budget_mpx']:g} million "
                                 "encoder input pixels each")
    lines = [f"{'#' * level} {title}", "",
             f"Made by `{record['command']}` on {record['machine']}, {record['date']} "
             f"(results file `{record['results']}`, plot `{record['plot'] or 'none: nothing scored'}`).", "",
             markdown_table(record["table"])]
    for which, caption in (("davis", "DAVIS J&F per sequence"), ("synth", "held-out synthetic J&F per video")):
        table = per_sequence_table(record["scores"], which)
        if table:
            lines += ["", f"{caption}:", "", table]
    if record["training"]:
        lines += ["", "Each trained row re-created by (the shared initialisation first: `OUT/init.safetensors`):", ""]
        lines += [f"- {name}: `{t['command']}` ({t['steps']} steps of {t['pixels_per_step']:,} pixels; load average "
                  f"{t['load_average']} when it ended, so wall minutes are upper bounds on a shared machine)"
                  for name, t in record["training"].items()]
    return "\n".join(lines)


def report(paths: list[str] | tuple[str, ...], *, command: str = "") -> str:
    """A results page: one :func:`section` per results file, and the command that made the page."""
    if not paths:
        raise ConfigError("bench report needs results files: vidssl bench report RESULTS.json ... [out=PAGE]")
    records = []
    for path in paths:
        try:
            records.append(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such results file (written by vidssl bench)") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a results file of vidssl bench ({err})") from err
        if not {"command", "table", "config"} <= set(records[-1]):
            raise ValueError(f"{path}: not a results file of vidssl bench (no command, table or config)")
    command = command or shlex.join(["vidssl", "bench", "report", *map(str, paths)])
    head = ["# Results", "",
            f"<!-- generated by `{command}`; edit the results files or rerun the commands, not this page -->", "",
            f"Generated from {len(records)} results file(s) of `vidssl bench` by `{command}`. Each section names "
            "the command that computed it, the machine and the date; rerunning that command in its folder "
            "recomputes nothing and rewrites the results file, and this command rewrites the page.", ""]
    return "\n".join(head + ["\n\n".join(section(r) for r in records), ""])


def run_bench(cfg: BenchConfig, *, progress: bool = False) -> dict[str, Any]:
    """Train every recipe (or reuse it), score every row, and write ``OUT/results.json``,
    ``OUT/results.md`` and ``OUT/learning.png``; returns the results record."""
    check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    names = rows(cfg)
    init = init_weights(cfg) if not cfg.cached else out / "init.safetensors"
    data = training_videos(cfg, progress=progress) if cfg.recipes and not cfg.cached else Path(cfg.videos)
    training: dict[str, dict[str, Any]] = {}
    for recipe in cfg.recipes:
        record = train_row(cfg, recipe, data, init)
        if record is not None:
            training[row_name(recipe)] = record
    scores: dict[str, dict[str, Any]] = {}
    for name in names:
        scores[name] = {}
        for which in cfg.evals:
            result = score_row(cfg, name, which, progress=progress)
            if result is not None:
                scores[name][which] = result
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        table[name] = headline(scores[name])
        if name in training:
            t = training[name]
            table[name] |= {"train min": t["minutes"], "train CPU min": t["cpu_minutes"], "steps": t["steps"]}
    plot = out / "learning.png"
    bars = {r: {k: {"v": v} for k, v in vals.items() if v is not None and k in PLOTTED} for r, vals in table.items()}
    if any(bars.values()):
        from vidssl.evaluation.invariance import plot_comparison

        plot_comparison(bars, plot, key="v", title=f"{cfg.budget_mpx:g} Mpx of training per recipe, one "
                        f"initialisation ({cfg.init}); preset={cfg.preset}")
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
              "training": training, "scores": scores}
    atomic_write_json(out / "results.json", record)
    atomic_write_text(out / "results.md", section(record, level=1) + "\n")
    return record
