"""Do vidssl's video methods learn from real video? One benchmark a 2-core CPU can re-run.

    python tools/bench_learning.py                       # everything (cached: re-running continues)
    python tools/bench_learning.py rows=colorization     # one row alone (train if needed, then score)
    python tools/bench_learning.py evals=davis,jhmdb     # some scores only

Every method trains a ResNet-18 from **one shared random initialisation** (``OUT/init.safetensors``,
seed 0) with the **same budget of encoder input pixels** (``budget_mpx`` million pixels: frames or
patches times their area, summed over every view the trained encoder sees; each method's steps are
``budget / pixels per step`` of its recipe below), seed 0, on the real clips of ``videos`` resized
to ``size`` pixels on the short side (``vidssl prepare``). The wall-clock minutes of each training
run are measured and printed with its row. ``fti_tracks`` uses the tracks of the shared YOLO
detector on the same clips (``vidssl tracks``, scaled to the prepared clips), not ground truth.

Every encoder (and the baselines ``copy``, ``pixels``, ``random`` = the shared initialisation) is
scored with one protocol, none of it chosen on evaluation masks:

- ``davis``: DAVIS-2016 dev J&F at the frames' own 480p, ``preset=crw`` (CRW's test protocol:
  ResNet-18 trunk to layer3 at stride 8, 20 + first frames, top-10, temperature 0.05, radius 12);
  every encoder reads what its method trained it on (``input=auto``: the Lab lightness for colorization);
- ``jhmdb``: PCK@0.1 / @0.2 on the shared JHMDB clip, ``preset=crw`` (a smoke figure: one clip);
- ``synth``: J&F and keypoint PCK on held-out synthetic videos (:func:`vidssl.demo.synthetic_keypoint_pck`),
  ``preset=crw``;
- ``knn`` and ``linear``: DINO's weighted kNN and a logistic-regression probe on the synthetic
  object crops (``vidssl eval knn|linear``), the encoder's pooled output.

Caching: ``OUT/train/ROW`` is a ``vidssl train`` run folder (a killed run resumes), every score is
``OUT/eval/ROW/EVAL/results.json``; what exists is not recomputed (``force=ROW,...`` redoes those
rows' scores). Each row prints the command that re-creates its encoder. Writes ``OUT/results.json``,
``OUT/learning.png`` (bars per score), a Markdown table, and one JSON object as the last line.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidssl.config import option, parse_overrides, to_dict
from vidssl.files import atomic_write_json

BASELINES = ("copy", "pixels", "random")

# Each method's recipe at this scale: the shipped recipe (vidssl/recipes/NAME.yaml) with these keys
# over it. 64 px inputs throughout, so every method sees the same detail; the method's own choices
# (stride 8 for the dense learners, its optimizer) follow its paper, scaled to a few hundred steps.
COMMON = {"encoder": "resnet18", "image_size": 64, "decode_size": 96, "workers": 1, "seed": 0, "log_every": 10,
          "save_every": 50, "warmup_steps": 10}
RECIPES: dict[str, dict[str, Any]] = {
    # Vondrick et al. 2018: gray references -> colour of the target, stride-8 features. 2 references 3 frames
    # apart (at 24 fps), 16 colour clusters; AdamW 1e-3 as the paper's Adam.
    "colorization": {"recipe": "colorization", "num_refs": 2, "ref_stride": 3, "batch_size": 16,
                     "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "kmeans_samples": 200},
    # Purushwalkam & Gupta 2020: two frames up to 30 apart as positives, InfoNCE (SimCLR NT-Xent).
    "fti": {"recipe": "fti", "loss": "infonce", "temperature": 0.1, "max_gap": 30, "batch_size": 32,
            "proj_hidden": 512, "optimizer": "sgd", "lr": 0.05, "queue_size": 4096},
    # The control of the paper's frame-temporal claim: the same, with both views cut from one frame (SimCLR).
    "simclr": {"recipe": "fti", "loss": "infonce", "temperature": 0.1, "max_gap": 0, "batch_size": 32,
               "proj_hidden": 512, "optimizer": "sgd", "lr": 0.05, "queue_size": 4096},
    # The same pairs with MoCo-v2's momentum encoder and queue (a faster momentum for a short run).
    "fti_moco": {"recipe": "fti", "loss": "moco", "temperature": 0.2, "max_gap": 30, "batch_size": 32,
                 "proj_hidden": 512, "queue_size": 4096, "moco_momentum": 0.99, "optimizer": "sgd", "lr": 0.05},
    # FTI + object-track positives: a frame pair and a pair of crops of one tracked object per sample.
    "fti_tracks": {"recipe": "fti_tracks", "loss": "infonce", "temperature": 0.1, "max_gap": 30, "batch_size": 32,
                   "proj_hidden": 512, "queue_size": 4096, "optimizer": "sgd", "lr": 0.05, "tracks": "@tracks"},
    # CPC / DPC: 8 frames 4 apart, GRU context, 3 predicted steps.
    "cpc": {"recipe": "cpc", "seq_len": 8, "seq_stride": 4, "pred_steps": 3, "batch_size": 8,
            "optimizer": "adamw", "lr": 1e-3},
    # CRW: clips of 4 frames 3 apart (8 fps at 24 fps, as the paper), each cut into 3 x 3 patches of 32 px,
    # walk on layer3 at stride 8; AdamW 1e-3 (the paper's 1e-4 is for 100k+ steps).
    "crw": {"recipe": "crw", "clip_len": 4, "frame_gap": 3, "patch": 32, "patch_stride": 16, "batch_size": 8,
            "optimizer": "adamw", "lr": 1e-3, "min_lr": 0.0},
    # VFS: SimSiam on two frames of one video, no colour augmentation; SGD 0.05 as the paper.
    "vfs": {"recipe": "vfs", "batch_size": 16, "optimizer": "sgd", "lr": 0.05},
}
ROWS = (*BASELINES, *RECIPES)


@dataclass(frozen=True)
class BenchConfig:
    videos: str = option("../shared/data/videos", "folder of training videos (searched recursively)")
    davis: str = option("../shared/data/davis2016", "DAVIS-2016 folder (JPEGImages/480p, Annotations/480p)")
    split: str = option("", "DAVIS sequences ('' = DAVIS/ImageSets/dev.txt)")
    jhmdb: str = option("../shared/data/jhmdb", "JHMDB folder ('' = skip)")
    detector: str = option("../shared/data/detectors/yolo11n_int8_openvino_model", "detector for fti_tracks")
    out: str = option("runs/bench_learning", "benchmark folder (cache)")
    rows: tuple[str, ...] = option(ROWS, "rows: baselines copy, pixels, random and methods " + ", ".join(RECIPES))
    evals: tuple[str, ...] = option(("davis", "jhmdb", "synth", "knn", "linear"), "scores to compute")
    force: tuple[str, ...] = option((), "rows whose scores are recomputed")
    budget_mpx: float = option(50.0, "training budget per method: million encoder input pixels")
    size: int = option(160, "short side the training clips are prepared at")
    davis_size: int = option(0, "short side of the DAVIS frames (0 = as they are, 480)")
    synth_videos: int = option(6, "held-out synthetic videos (320x240, 5 objects each)")
    synth_frames: int = option(40, "frames per held-out synthetic video")
    seed: int = option(0, "seed of the shared initialisation and of every run")
    cached: bool = option(False, "only report what is already computed (train and score nothing)")


def pixels_per_step(name: str, keys: dict[str, Any]) -> int:
    """Encoder input pixels of one optimizer step of ``name``'s recipe (every view the trained
    encoder sees; a MoCo key encoder's forward pass is not counted)."""
    side, batch = keys["image_size"], keys["batch_size"]
    if name == "colorization":
        return batch * (keys["num_refs"] + 1) * side**2
    if name == "cpc":
        return batch * keys["seq_len"] * side**2
    if name == "crw":
        per_side = (side - keys["patch"]) // keys["patch_stride"] + 1
        return batch * keys["clip_len"] * per_side**2 * keys["patch"] ** 2
    views = 4 if name == "fti_tracks" else 2  # fti_tracks: a frame pair and a crop pair per sample
    return batch * views * side**2


def train_command(cfg: BenchConfig, name: str, data: Path, tracks: Path) -> tuple[list[str], int]:
    """``vidssl train`` argv for method row ``name`` and its number of steps."""
    keys = {**COMMON, **RECIPES[name]}
    recipe = keys.pop("recipe")
    steps = max(1, math.ceil(cfg.budget_mpx * 1e6 / pixels_per_step(name, keys)))
    keys |= {"steps": steps, "weights": str(Path(cfg.out) / "init.safetensors"), "seed": cfg.seed,
             "out": str(Path(cfg.out) / "train" / name)}
    if keys.get("tracks") == "@tracks":
        keys["tracks"] = str(tracks)
    argv = ["vidssl", "train", f"{recipe}.yaml", str(data)] + [f"{k}={v}" for k, v in keys.items()]
    return argv, steps


def run(argv: list[str], log: Path) -> None:
    """Run a vidssl command (the installed CLI of this interpreter), its output to ``log`` and a
    short tail to the console on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full = [sys.executable, "-m", "vidssl", *argv[1:]] if argv[0] == "vidssl" else argv
    with open(log, "a") as handle:
        handle.write(f"$ {shlex.join(argv)}\n")
        handle.flush()
        code = subprocess.call(full, stdout=handle, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"{shlex.join(argv)} failed (exit {code}); log {log}:\n{tail}")


def prepare(cfg: BenchConfig) -> tuple[Path, Path]:
    """The prepared training clips and the scaled tracks of the detector (both cached)."""
    out = Path(cfg.out)
    data, full, tracks = out / "data", out / "tracks_full", out / "tracks"
    # always: prepare skips the videos it finished, so a killed prepare completes instead of leaving a subset
    run(["vidssl", "prepare", cfg.videos, f"out={data}", f"size={cfg.size}"], out / "logs" / "prepare.log")
    if "fti_tracks" in cfg.rows and not (tracks / "tracks.json").exists():
        if not (full / "tracks.json").exists():
            run(["vidssl", "tracks", cfg.videos, f"out={full}", f"detector={cfg.detector}", "tracker=bytetrack",
                 "min_score=0.25", "min_box=32"], out / "logs" / "tracks.log")
        run([sys.executable, str(Path(__file__).with_name("scale_tracks.py")), str(full), str(data), str(tracks)],
            out / "logs" / "tracks.log")
    return data, tracks


def init_weights(cfg: BenchConfig) -> Path:
    path = Path(cfg.out) / "init.safetensors"
    if not path.exists():
        from vidssl.export import save_encoder
        from vidssl.features import resolve_encoder

        save_encoder(resolve_encoder("random:resnet18", seed=cfg.seed), path,
                     metadata={"what": f"shared random initialisation of tools/bench_learning.py, seed {cfg.seed}"})
    return path


def train_row(cfg: BenchConfig, name: str, data: Path, tracks: Path) -> dict[str, Any]:
    """Train (or resume, or reuse) method row ``name``; returns its training record."""
    argv, steps = train_command(cfg, name, data, tracks)
    folder = Path(cfg.out) / "train" / name
    record_path = folder / "bench.json"
    if (folder / "encoder.safetensors").exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        if record["argv"] == argv:
            return record
        raise SystemExit(f"{folder}: trained with another command than today's recipe; move it away to retrain\n"
                         f"  was: {shlex.join(record['argv'])}\n  now: {shlex.join(argv)}")
    resume = ["resume=true"] if (folder / "config.yaml").exists() else []
    print(f"[{name}] training {steps} steps: {shlex.join(argv)}", flush=True)
    start, cpu = time.perf_counter(), children_cpu_seconds()
    run(argv + resume, Path(cfg.out) / "logs" / f"train_{name}.log")
    record = {"argv": argv, "steps": steps, "budget_mpx": cfg.budget_mpx,
              "minutes": round((time.perf_counter() - start) / 60, 2),
              "cpu_minutes": round((children_cpu_seconds() - cpu) / 60, 2), "resumed": bool(resume),
              "load_average": round(os.getloadavg()[0], 2)}
    atomic_write_json(record_path, record)
    return record


def children_cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes (the training run): unlike wall
    time, about the same on a busy machine as on an idle one."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def encoder_spec(cfg: BenchConfig, name: str) -> str:
    if name in ("copy", "pixels"):
        return name
    if name == "random":
        return str(Path(cfg.out) / "init.safetensors")
    return str(Path(cfg.out) / "train" / name / "encoder.safetensors")


def synthetic_held_out(cfg: BenchConfig) -> Path:
    """Held-out synthetic videos (more objects than the training default: occlusion, look-alikes)."""
    from vidssl.data.synth import SynthConfig, generate

    held = Path(cfg.out) / "synth_held_out"
    if not (held / "synth.json").exists():
        generate(held, SynthConfig(out=str(held), num_videos=cfg.synth_videos, num_frames=cfg.synth_frames,
                                   height=240, width=320,
                                   num_objects=5, seed=cfg.seed + 1000), progress=False)
    return held


def score_row(cfg: BenchConfig, name: str, which: str) -> dict[str, Any] | None:
    """Compute (or read) one score of one row; None where it does not apply."""
    out = Path(cfg.out) / "eval" / name / which
    results = out / "results.json"
    if results.exists() and name not in cfg.force:
        done = json.loads(results.read_text())
        if done.get("complete", True):  # eval davis writes its results after each sequence, complete at the end
            return done
    if cfg.cached:
        return None
    encoder = encoder_spec(cfg, name)
    log = Path(cfg.out) / "logs" / f"eval_{name}_{which}.log"
    if which in ("knn", "linear"):
        if name == "copy":
            return None
        run(["vidssl", "eval", which, f"encoder={encoder}", f"out={out}", "workers=1", f"seed={cfg.seed}"], log)
    elif which == "davis":
        split = cfg.split or str(Path(cfg.davis) / "ImageSets" / "dev.txt")
        run(["vidssl", "eval", "davis", cfg.davis, f"split={split}", "preset=crw", f"encoder={encoder}",
             f"size={cfg.davis_size}", f"out={out}"], log)
    elif which == "jhmdb":
        if not cfg.jhmdb or name == "copy":
            return None
        run(["vidssl", "eval", "jhmdb", cfg.jhmdb, "preset=crw", f"encoder={encoder}", f"out={out}"], log)
    elif which == "synth":
        from vidssl.demo import synthetic_keypoint_pck
        from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis
        from vidssl.evaluation.results import save_results

        held = synthetic_held_out(cfg)
        settings = {"preset": "crw", "encoder": encoder, "seed": cfg.seed}
        davis = evaluate_davis(DavisEvalConfig(root=str(held / "davis"), out=str(out / "masks"), **settings),
                               progress=False)
        record = {"J&F": davis["J&F"], "J": davis["J"], "F": davis["F"]}
        if name != "copy":
            record |= synthetic_keypoint_pck(held, out / "keypoints", settings, progress=False)
        save_results(out, record)
    else:
        raise ValueError(f"unknown eval {which!r}; use davis, jhmdb, synth, knn, linear")
    return json.loads(results.read_text())


def headline(scores: dict[str, Any]) -> dict[str, float | None]:
    """The numbers of one row's table line."""

    def get(which: str, *path: str) -> float | None:
        value: Any = scores.get(which)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return None if value is None else float(value)

    return {"DAVIS J&F": get("davis", "J&F"), "DAVIS J": get("davis", "J"), "DAVIS F": get("davis", "F"),
            "JHMDB PCK@0.1": get("jhmdb", "PCK@0.1"), "JHMDB PCK@0.2": get("jhmdb", "PCK@0.2"),
            "synth J&F": get("synth", "J&F"), "synth PCK@0.2": get("synth", "PCK@0.2"),
            "kNN top-1": get("knn", "top1"), "linear top-1": get("linear", "top1")}


def markdown(table: dict[str, dict[str, Any]]) -> str:
    columns = ["DAVIS J&F", "DAVIS J", "DAVIS F", "JHMDB PCK@0.1", "JHMDB PCK@0.2", "synth J&F", "synth PCK@0.2",
               "kNN top-1", "linear top-1", "train min", "train CPU min", "steps"]
    lines = ["| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for row, values in table.items():
        cells = []
        for c in columns:
            v = values.get(c)
            cells.append("" if v is None else f"{v:.3f}" if isinstance(v, float) and "min" not in c else f"{v}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_sequence(table_scores: dict[str, dict[str, Any]]) -> str:
    """DAVIS J&F per sequence and row (Markdown)."""
    rows = {r: s["davis"]["per_sequence"] for r, s in table_scores.items() if s.get("davis", {}).get("per_sequence")}
    if not rows:
        return ""
    sequences = list(next(iter(rows.values())))
    lines = ["| sequence | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for seq in sequences:
        lines.append(f"| {seq} | " + " | ".join(f"{rows[r][seq]['J&F']:.3f}" if seq in rows[r] else ""
                                                for r in rows) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    cfg = parse_overrides(BenchConfig, argv)
    unknown = [r for r in (*cfg.rows, *cfg.force) if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    needed = {"videos": cfg.videos if not cfg.cached and any(r in RECIPES for r in cfg.rows) else "",
              "davis": cfg.davis if "davis" in cfg.evals and not cfg.cached else "",
              "jhmdb": cfg.jhmdb if "jhmdb" in cfg.evals and not cfg.cached else ""}
    for key, folder in needed.items():
        if folder and not Path(folder).is_dir():
            raise SystemExit(f"{folder}: no such folder (give {key}=PATH; jhmdb= skips JHMDB)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    init_weights(cfg)
    methods = [r for r in cfg.rows if r in RECIPES]
    data, tracks = prepare(cfg) if methods and not cfg.cached else (out / "data", out / "tracks")
    if cfg.cached:
        records = {name: Path(cfg.out) / "train" / name / "bench.json" for name in methods}
        training = {name: json.loads(p.read_text()) for name, p in records.items() if p.exists()}
    else:
        training = {name: train_row(cfg, name, data, tracks) for name in methods}
    scores: dict[str, dict[str, Any]] = {}
    for name in cfg.rows:
        scores[name] = {}
        for which in cfg.evals:
            start = time.perf_counter()
            result = score_row(cfg, name, which)
            if result is not None:
                scores[name][which] = result
                print(f"[{name}] {which}: {json.dumps(headline({which: result}), default=str)[:200]} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
    table = {}
    for name in cfg.rows:
        row = headline(scores[name])
        if name in training:
            row |= {"train min": training[name]["minutes"], "train CPU min": training[name].get("cpu_minutes"),
                    "steps": training[name]["steps"]}
        table[name] = row
    print(markdown(table))
    sequences = per_sequence(scores)
    if sequences:
        print("\nDAVIS-2016 dev J&F per sequence\n" + sequences)
    for name in training:
        print(f"{name}: {shlex.join(training[name]['argv'])}")
    from vidssl.evaluation.invariance import plot_comparison

    plotted = ("DAVIS J&F", "JHMDB PCK@0.2", "synth J&F", "synth PCK@0.2", "kNN top-1", "linear top-1")
    bars = {r: {k: {"v": v} for k, v in vals.items() if v is not None and k in plotted} for r, vals in table.items()}
    if any(bars.values()):  # nothing scored yet (evals=()): no plot
        plot_comparison(bars, out / "learning.png", key="v", title=f"ResNet-18, {cfg.budget_mpx:g} Mpx of training "
                        "per method (CPU); DAVIS-2016 dev at 480p, preset=crw")
    record = {"config": to_dict(cfg), "table": table, "training": training, "scores": scores}
    atomic_write_json(out / "results.json", record)
    print(json.dumps({"table": table, "results": str(out / "results.json"), "plot": str(out / "learning.png")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
