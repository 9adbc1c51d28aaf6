"""The GPU path end to end in one command: training, torchrun, resume, throughput, propagation, decoding.

    PYTHONPATH=. python tools/gpu_check.py [out=runs/gpu_check] [davis=DIR] [data=DIR] [parts=(train, ddp, ...)]

Each part is a function returning its figures, ``{"skipped": reason}`` or ``{"error": one line}``;
by default (``isolate=true``) each runs in a process of its own under its own time limit, so a
CUDA error, a crash or a hang in one part never stops the others. The whole fits ``budget``
seconds (450: with the wheels' install, under 8 minutes on one H100 or H200); a part that has no time left is skipped.

- ``env``: device, torch / CUDA / cuDNN / NCCL versions, the decoders installed.
- ``train``: every registered method (``methods=``) for ``steps`` steps through ``vidssl train``
  itself (loader workers, pinned memory, bf16 autocast, channels_last: the CUDA defaults): loss
  at the first and last log (every loss is finite, or the trainer stops), img/s, peak memory.
- ``ddp``: ``torchrun --nproc_per_node=1 -m vidssl train`` for ``ddp_method``; then an NCCL
  probe under torchrun (process group, the method wrapped in DistributedDataParallel, a few steps,
  an all-reduce). With one process vidssl trains without a process group, so the probe is what
  exercises NCCL.
- ``resume``: ``resume_steps`` steps straight, again (run-to-run noise), and killed after the
  checkpoint at half way then resumed: bit-exact or the largest weight difference, next to the
  rerun's (CUDA kernels such as cuDNN's backward convolutions are not deterministic).
- ``resnet``: tools/bench_train.py for ResNet-18 and ResNet-50: end-to-end img/s against the
  GPU-resident ceiling measured in the same call (``fraction_of_ceiling``).
- ``propagation``: two DAVIS sequences (``seqs``, default the first two) with ``preset=crw`` in
  float32 and in the GPU default precision (float16 features): J&F, frames/s, peak memory; then
  the peak memory of a 1920x1080 x ``wide_frames`` propagation (tools/bench_propagation.py).
- ``decode``: frame pairs decoded by PyAV, decord and TorchCodec (CPU, and CUDA/NVDEC) into
  uint8 tensors on the GPU (pinned host memory, non_blocking copies): pairs/s of each, and each
  one's mean absolute difference from PyAV on the same frames.
- ``compile``: ``compile=true`` for ``compile_methods`` against eager: the speed-up in warm img/s
  and the compile time (the compiled run's seconds minus the eager run's).

A part that fails or is killed at its limit keeps the figures it had reported (``error`` beside
them); one method's failure in ``train`` is that method's row.

Without CUDA every part but ``env`` is ``{"skipped": "no CUDA device ..."}``. ``cpu_smoke=true``
instead runs the parts that have a CPU mode at tiny sizes (the tests do: tests/test_gpu_check.py).

Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (device, torch, each part's figures or
its skip reason) and prints the JSON as its last line. Scratch files (synthetic videos, runs)
go to ``work=`` (default a temporary folder, removed at the end).

On the lent GPU machine (python3 3.12 with torch, torchvision, opencv, scikit-image and the
other vidssl dependencies except PyAV and decord; no internet), one call. Before it, once, here
in the repo root (``.gpu/`` is git-ignored)::

    mkdir -p .gpu/davis/JPEGImages/480p .gpu/davis/Annotations/480p .gpu/whl
    for s in blackswan kite-surf; do
      cp -r --no-preserve=mode ../shared/data/davis2016/JPEGImages/480p/$s .gpu/davis/JPEGImages/480p/
      cp -r --no-preserve=mode ../shared/data/davis2016/Annotations/480p/$s .gpu/davis/Annotations/480p/
    done
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
      --platform manylinux2010_x86_64 -d .gpu/whl av==18.1.0 decord==0.6.0

(about 57 MB with the checkout: under the tool's 64 MiB; a TorchCodec wheel matching the machine's
torch may be added to .gpu/whl, else its rows are skipped with the reason). Then the device tool's
``run`` with ``carry=[".gpu"]``, ``timeout_s=600`` and the command::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl &&
    PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1 python3 tools/gpu_check.py out=$OUT davis=.gpu/davis 2>&1 |
    tee $OUT/gpu_check.log

which brings back gpu_check.json, gpu_check.md and the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidssl.config import ConfigError, option, parse_overrides, to_dict

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device"


@dataclass(frozen=True)
class CheckConfig:
    out: str = option("runs/gpu_check", "folder of gpu_check.json and gpu_check.md")
    parts: tuple[str, ...] = option(
        ("env", "train", "ddp", "resume", "resnet", "propagation", "decode", "compile"), "parts to run, in this order"
    )
    data: str = option("", "folder of training videos (default: synthetic ones generated into work/)")
    davis: str = option("", "DAVIS-layout folder of the propagation part (skipped without; cpu_smoke: synthetic)")
    seqs: tuple[str, ...] = option((), "DAVIS sequences propagated (default: the first two of JPEGImages/480p)")
    work: str = option("", "scratch folder (default: a temporary one, removed at the end)")
    budget: float = option(450.0, "seconds for the whole check; a part with less than 20 s left is skipped", min=1)
    isolate: bool = option(True, "each part in a process of its own, killed at its time limit")
    cpu_smoke: bool = option(False, "without CUDA, run the parts that have a CPU mode at tiny sizes (tests)")
    device: str = option("auto", "auto (CUDA when available) | cpu | cuda")
    methods: tuple[str, ...] = option((), "methods of the train part (default: every registered one)")
    steps: int = option(20, "steps of each method in the train part", min=2)
    batch_size: int = option(32, "samples per step in the train, ddp, resume and compile parts", min=1)
    image_size: int = option(0, "crop size of the train, ddp, resume and compile parts (0: each method's default)")
    workers: int = option(8, "loader workers of the training runs", min=0)
    ddp_method: str = option("fti", "method trained under torchrun")
    resume_method: str = option("fti", "method of the resume part")
    resume_steps: int = option(8, "steps of each resume run (killed after the checkpoint at half way)", min=2)
    bench_models: tuple[str, ...] = option(("resnet18", "resnet50"), "encoders of the resnet part")
    bench_batch_size: int = option(128, "frame pairs per step of the resnet part", min=1)
    bench_steps: int = option(30, "measured steps of the resnet part (after bench_warmup)", min=1)
    bench_warmup: int = option(5, "steps of the resnet part not counted", min=1)
    bench_workers: int = option(12, "loader workers of the resnet part's end-to-end runs", min=0)
    prop_encoder: str = option("random", "features of the propagation part (random | pixels | run folder | file)")
    wide_frames: int = option(200, "frames of the 1920x1080 propagation (0: skip it)", min=0)
    wide_encoder: str = option("random", "features of the 1920x1080 propagation")
    decode_seconds: float = option(5.0, "time spent decoding with each decoder", min=0)
    decode_videos: str = option("", "folder of videos to decode (default: 2 synthetic 854x480 ones)")
    compile_methods: tuple[str, ...] = option(("fti", "byol"), "methods trained eager and with compile=true")
    compile_steps: int = option(30, "steps of each compile run", min=3)


SMOKE: dict[str, Any] = {
    "methods": ("fti",), "steps": 2, "batch_size": 2, "image_size": 32, "workers": 1, "resume_steps": 3,
    "bench_models": ("resnet18",), "bench_batch_size": 2, "bench_steps": 1, "bench_warmup": 1, "bench_workers": 0,
    "prop_encoder": "pixels", "wide_frames": 2, "wide_encoder": "pixels", "decode_seconds": 0.5,
    "compile_steps": 3,
}
"""``cpu_smoke=true``: tiny sizes for the keys not given on the command line."""


@dataclass
class Context:
    """What a part is given: its settings, device, scratch folder and the time it must end by."""

    cfg: CheckConfig
    device: torch.device
    work: Path
    deadline: float  # time.time() by which the part should return
    result: Path | None = None  # where an isolated part's figures go (also those so far: see report)
    so_far: dict = dataclasses.field(default_factory=dict)

    @property
    def smoke(self) -> bool:
        return self.device.type != "cuda"

    def left(self) -> float:
        return self.deadline - time.time()

    def report(self, found: dict) -> None:
        """Keep the figures so far: a part that fails, or is killed at its limit, keeps what it had measured."""
        self.so_far = dict(found)
        if self.result is not None:
            partial = self.result.with_suffix(".partial")
            partial.write_text(json.dumps(found))
            partial.replace(self.result)


@dataclass(frozen=True)
class Part:
    name: str
    run: Callable[[Context], dict]
    limit: float  # seconds at most
    needs_data: bool  # the synthetic training videos
    cpu_mode: bool  # runs (tiny) on the CPU under cpu_smoke=true
    about: str


# --------------------------------------------------------------------------------------------
# helpers


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:400]


def load_tool(name: str):
    """A sibling script of tools/ as a module (tools/ is no package)."""
    module_name = f"vidssl_tool_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """``{"peak_mib": ...}`` of the CUDA allocations inside the block (None on the CPU)."""
    found: dict = {"peak_mib": None}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield found
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            found["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def read_log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def steady_rate(rows: list[dict]) -> float | None:
    """Mean images/s of the logged intervals after the first (loader start-up, compilation)."""
    rates = [r["images_per_s"] for r in rows[1:]] or [r["images_per_s"] for r in rows]
    return round(sum(rates) / len(rates), 1) if rates else None


def train_keys(ctx: Context, method: str, *, steps: int, log_every: int) -> dict[str, Any]:
    """Keys of a training run of ``method`` in these parts (tiny heads under cpu_smoke)."""
    from vidssl.methods import METHODS

    cfg = ctx.cfg
    keys: dict[str, Any] = {"method": method, "data": cfg.data, "steps": steps, "batch_size": cfg.batch_size,
                            "workers": cfg.workers, "log_every": log_every, "save_every": 10**9, "export": False,
                            "overwrite": True, "device": ctx.device.type, "lr": 0.01}
    if cfg.image_size:
        keys["image_size"] = cfg.image_size
    if ctx.smoke:
        keys |= {"decode_size": max(40, cfg.image_size + 8), **METHODS[method].smoke()}
    return keys


def run_training(keys: dict[str, Any], out: Path) -> Path:
    from vidssl.engine.trainer import run_config, train

    return train(*run_config(**keys, out=str(out)))


# --------------------------------------------------------------------------------------------
# parts


def part_env(ctx: Context) -> dict:
    """Versions and the device."""
    found: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                             "cpu_cores": os.cpu_count(), "device": str(ctx.device)}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                  "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "gpus": torch.cuda.device_count()}
        with contextlib.suppress(Exception):
            nccl = torch.cuda.nccl.version()
            found["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    from importlib.metadata import PackageNotFoundError, version

    for name, dists in (("torchvision", ["torchvision"]), ("av", ["av"]), ("decord", ["decord"]),
                        ("torchcodec", ["torchcodec"]), ("triton", ["triton"]),
                        ("cv2", ["opencv-python", "opencv-python-headless"])):
        found[name] = "absent"  # the installed version, read without importing the package (triton: seconds)
        for dist in dists:
            with contextlib.suppress(PackageNotFoundError):
                found[name] = version(dist)
                break
    with contextlib.suppress(Exception):
        found["commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True, timeout=10).stdout.strip() or None
    return found


def part_train(ctx: Context) -> dict:
    """Every method for a few dozen steps through the real loop; one row per method."""
    from vidssl.methods import METHODS

    cfg = ctx.cfg
    names = list(cfg.methods or METHODS)
    log_every = max(1, cfg.steps // 4)
    rows: dict[str, dict] = {}
    for name in names:
        if ctx.left() < 15:
            rows[name] = {"skipped": "out of time"}
            continue
        started = time.perf_counter()
        try:
            with peak_memory(ctx.device) as memory:
                run = run_training(train_keys(ctx, name, steps=cfg.steps, log_every=log_every), ctx.work / name)
            logs = read_log(run)
            losses = [r["loss"] for r in logs if "loss" in r]
            rows[name] = {"steps": logs[-1]["step"] if logs else 0, "first_loss": round(losses[0], 4),
                          "last_loss": round(losses[-1], 4), "finite": all(map(math.isfinite, losses)),
                          "images_per_s": steady_rate(logs), **memory,
                          "seconds": round(time.perf_counter() - started, 1)}
        except Exception as err:  # noqa: BLE001 - one method's failure is that method's row
            rows[name] = {"error": one_line(err)}
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"train {name}: {rows[name]}", flush=True)
        ctx.report({"methods": rows})
    failed = [n for n, r in rows.items() if "error" in r or r.get("finite") is False]
    return {"methods": rows, "ok": not failed, "failed": failed, "image_size": cfg.image_size or "method default",
            "batch_size": cfg.batch_size, "steps": cfg.steps, "workers": cfg.workers,
            "amp": "bf16 autocast" if ctx.device.type == "cuda" else "off (CPU)",
            "channels_last": ctx.device.type == "cuda", "pin_memory": ctx.device.type == "cuda"}


def part_compile(ctx: Context) -> dict:
    """Eager and compile=true runs of each of ``compile_methods``: speed-up and compile time."""
    cfg = ctx.cfg
    rows: dict[str, dict] = {}
    log_every = 1
    for name in cfg.compile_methods:
        row: dict[str, Any] = {}
        for tag in ("eager", "compiled"):
            if ctx.left() < 20:
                row[tag] = {"skipped": "out of time"}
                continue
            keys = train_keys(ctx, name, steps=cfg.compile_steps, log_every=log_every) | {"compile": tag == "compiled"}
            started = time.perf_counter()
            try:
                logs = read_log(run_training(keys, ctx.work / f"{name}-{tag}"))
                row[tag] = {"images_per_s": steady_rate(logs[len(logs) // 3:]),  # the last two thirds: warm
                            "seconds": round(time.perf_counter() - started, 1), "last_loss": round(logs[-1]["loss"], 4)}
            except Exception as err:  # noqa: BLE001
                row[tag] = {"error": one_line(err)}
        eager, compiled = row.get("eager", {}), row.get("compiled", {})
        if eager.get("images_per_s") and compiled.get("images_per_s"):
            row["speedup"] = round(compiled["images_per_s"] / eager["images_per_s"], 3)
            # the same run compiled minus eager: compilation (and any recompilation), less what it saved
            row["compile_seconds"] = round(compiled["seconds"] - eager["seconds"], 1)
        rows[name] = row
        print(f"compile {name}: {row}", flush=True)
        ctx.report({"methods": rows})
    return {"methods": rows, "steps": cfg.compile_steps, "batch_size": cfg.batch_size}


def torchrun(args: list[str], *, timeout: float, log: Path) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=1 ARGS`` with this checkout first on
    the path; its output to ``log``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its worker, which holds the GPU
            proc.wait()
            raise
    return subprocess.CompletedProcess(cmd, returncode)


def tail(path: Path, lines: int = 3) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:]) if path.exists() else ""


def ddp_train_args(ctx: Context, run: Path) -> list[str]:
    """``vidssl train`` arguments of the torchrun run: 8 steps of ``ddp_method`` into ``run``."""
    keys = train_keys(ctx, ctx.cfg.ddp_method, steps=8, log_every=4)
    return ["train", *(f"{k}={v}" for k, v in keys.items()), f"out={run}"]


def part_ddp(ctx: Context) -> dict:
    """``torchrun -m vidssl train`` with one process, then the NCCL probe under torchrun."""
    cfg = ctx.cfg
    found: dict[str, Any] = {}
    run = ctx.work / "torchrun"
    started = time.perf_counter()
    try:
        proc = torchrun(["-m", "vidssl", *ddp_train_args(ctx, run)], timeout=max(10.0, ctx.left() / 2),
                        log=ctx.work / "torchrun.log")
        logs = read_log(run)
        found["torchrun_train"] = {
            "returncode": proc.returncode, "steps": logs[-1]["step"] if logs else 0,
            "last_loss": round(logs[-1]["loss"], 4) if logs else None, "images_per_s": steady_rate(logs),
            "seconds": round(time.perf_counter() - started, 1),
            "process_group": "none: with one process vidssl trains without one (the probe below uses NCCL)",
            **({"error": tail(ctx.work / "torchrun.log")} if proc.returncode else {})}
    except subprocess.TimeoutExpired as err:
        found["torchrun_train"] = {"error": f"timed out after {err.timeout:.0f} s"}
    ctx.report(found)
    result = ctx.work / "probe.json"
    try:
        proc = torchrun([str(Path(__file__).resolve()), "--nccl-probe", str(result), f"device={ctx.device.type}",
                         f"batch_size={cfg.batch_size}", f"image_size={cfg.image_size or 224}"],
                        timeout=max(10.0, ctx.left() - 5), log=ctx.work / "probe.log")
        found["nccl_probe"] = json.loads(result.read_text()) if result.exists() else {
            "error": f"exit code {proc.returncode}: {tail(ctx.work / 'probe.log')}"}
    except subprocess.TimeoutExpired as err:
        found["nccl_probe"] = {"error": f"timed out after {err.timeout:.0f} s"}
    found["ok"] = all("error" not in v for v in found.values())
    return found


def nccl_probe(result: Path, argv: list[str]) -> None:
    """Run under torchrun: join the process group (NCCL on CUDA, gloo on the CPU), wrap FTI in
    DistributedDataParallel, take 3 steps on random pixels, all-reduce; write what was seen."""
    import torch.distributed as dist

    from vidssl.engine.trainer import build_run, run_config

    cfg = parse_overrides(CheckConfig, argv)
    cuda = cfg.device == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    found: dict[str, Any] = {}
    try:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        found |= {"backend": dist.get_backend(), "world_size": dist.get_world_size()}
        size = cfg.image_size or 224
        tcfg, mcfg = run_config(method="fti", image_size=size, batch_size=cfg.batch_size, lr=0.01,
                                **({} if cuda else {"proj_hidden": 32, "proj_dim": 16, "queue_size": 8}))
        method, optimizer = build_run(tcfg, mcfg, device)
        model = torch.nn.parallel.DistributedDataParallel(method, device_ids=[device.index] if cuda else None)
        frames = torch.randint(0, 256, (cfg.batch_size, 2, 3, size, size), dtype=torch.uint8, device=device)
        losses = []
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = model({"frames": frames}).loss
            loss.backward()
            optimizer.step()
            losses.append(round(float(loss.detach()), 4))
        total = torch.ones(1, device=device)
        dist.all_reduce(total)
        found |= {"losses": losses, "finite": all(map(math.isfinite, losses)),
                  "all_reduce_ok": int(total.item()) == dist.get_world_size()}
    except Exception as err:  # noqa: BLE001
        found["error"] = one_line(err)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    result.write_text(json.dumps(found))


def part_resume(ctx: Context) -> dict:
    """Straight, again, and killed at half way then resumed: how far apart the final weights are."""
    import vidssl.engine.trainer as trainer
    from vidssl.engine.checkpoint import load_checkpoint

    cfg = ctx.cfg
    half = cfg.resume_steps // 2
    keys = train_keys(ctx, cfg.resume_method, steps=cfg.resume_steps, log_every=1) | {"save_every": half}
    straight = run_training(keys, ctx.work / "straight")
    again = run_training(keys, ctx.work / "again")
    resumed = ctx.work / "resumed"
    real_save = trainer.save_checkpoint

    class Killed(Exception):
        pass

    def save_then_die(state: dict, path: Path) -> None:
        real_save(state, path)
        if state["step"] == half:
            raise Killed  # as a kill right after this checkpoint

    trainer.save_checkpoint = save_then_die
    try:
        run_training(keys, resumed)
    except Killed:
        pass
    finally:
        trainer.save_checkpoint = real_save
    from vidssl.engine.trainer import run_config, train

    train(*run_config(**(keys | {"overwrite": False, "resume": True}), out=str(resumed)))

    def compare(a: Path, b: Path) -> dict:
        sa = load_checkpoint(a / "checkpoints" / "last.pt")["model"]
        sb = load_checkpoint(b / "checkpoints" / "last.pt")["model"]
        diffs = {k: (sa[k].double() - sb[k].double()).abs().max().item() for k in sa if sa[k].numel()}
        return {"bit_exact": all(torch.equal(sa[k], sb[k]) for k in sa), "max_abs_diff": max(diffs.values()),
                "tensors_differing": sum(v > 0 for v in diffs.values()), "tensors": len(diffs)}

    found = {"method": cfg.resume_method, "steps": cfg.resume_steps, "killed_after_step": half,
             "resumed_vs_straight": compare(straight, resumed), "rerun_vs_straight": compare(straight, again),
             "cudnn_deterministic": torch.backends.cudnn.deterministic}
    resumed, rerun = found["resumed_vs_straight"], found["rerun_vs_straight"]
    found["verdict"] = ("bit-exact" if resumed["bit_exact"] else
                        "differs by no more than a rerun does (non-deterministic kernels)"
                        if resumed["max_abs_diff"] <= 10 * rerun["max_abs_diff"] else
                        "differs more than a rerun: a resume bug")
    return found


def part_resnet(ctx: Context) -> dict:
    """tools/bench_train.py: ResNet-18 / ResNet-50 end to end against the GPU-resident ceiling."""
    tool = load_tool("bench_train")
    cfg = ctx.cfg
    bench_cfg = tool.BenchConfig(data=cfg.data, models=cfg.bench_models, batch_size=cfg.bench_batch_size,
                                 image_size=cfg.image_size or 224, steps=cfg.bench_steps, warmup=cfg.bench_warmup,
                                 workers=cfg.bench_workers)
    figures = tool.bench(bench_cfg, ctx.work)
    return {"fraction_of_ceiling": figures["fraction_of_ceiling"], "models": figures["models"],
            "batch_size": bench_cfg.batch_size, "image_size": bench_cfg.image_size, "steps": bench_cfg.steps,
            "workers": bench_cfg.workers}


def davis_root(ctx: Context) -> Path | None:
    if ctx.cfg.davis:
        return Path(ctx.cfg.davis)
    if ctx.smoke:  # the synthetic set has a DAVIS layout of its own
        return Path(ctx.cfg.data).parent / "davis"
    return None


def part_propagation(ctx: Context) -> dict:
    """DAVIS J&F and frames/s at preset=crw in float32 and the default precision; 1080p peak memory."""
    from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis
    from vidssl.features import storage_dtype

    cfg = ctx.cfg
    root = davis_root(ctx)
    if root is None:
        return {"skipped": "no DAVIS folder: give davis=DIR (JPEGImages/480p/<seq>, Annotations/480p/<seq>)"}
    frames_dir = root / "JPEGImages" / "480p"
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"davis={root}: no JPEGImages/480p folder")
    seqs = list(cfg.seqs) or sorted(p.name for p in frames_dir.iterdir() if p.is_dir())[:2]
    split = ctx.work / "split.txt"
    split.write_text("".join(f"{s}\n" for s in seqs))
    rows: dict[str, dict] = {}
    for precision in ("float32", "auto"):
        dcfg = DavisEvalConfig(root=str(root), split=str(split), preset="crw", encoder=cfg.prop_encoder,
                               precision=precision, device=str(ctx.device), out=str(ctx.work / f"davis-{precision}"))
        with peak_memory(ctx.device) as memory:
            results = evaluate_davis(dcfg, progress=False)
        rows[precision] = {"dtype": str(storage_dtype(precision, ctx.device)).removeprefix("torch."),
                           "J&F": round(results["J&F"], 4), "J": round(results["J"], 4), "F": round(results["F"], 4),
                           **{f"J&F {s}": round(results["per_sequence"][s]["J&F"], 4) for s in seqs},
                           "frames": results["frames"], "fps": round(results["fps"], 2), **memory}
        print(f"propagation {precision}: {rows[precision]}", flush=True)
        ctx.report({"sequences": seqs, "precisions": rows})
    found: dict[str, Any] = {"sequences": seqs, "encoder": cfg.prop_encoder, "preset": "crw", "precisions": rows,
                             "J&F_difference": round(rows["auto"]["J&F"] - rows["float32"]["J&F"], 4)}
    ctx.report(found)
    if cfg.wide_frames and ctx.left() > 20:
        tool = load_tool("bench_propagation")
        bench_cfg = tool.BenchConfig(data=str(root), seq=seqs[0], wide_encoder=cfg.wide_encoder,
                                     wide_frames=(cfg.wide_frames,), device=str(ctx.device))
        wide = tool.wide_check(bench_cfg, ctx.device)
        (row,) = wide["runs"]
        found["wide"] = {"size": "1920x1080", "frames": row["frames"], "features": wide["features"],
                         "peak_mib": round(row["peak_mib"], 1), "fps": round(row["fps"], 2),
                         "memory": "CUDA max allocated" if ctx.device.type == "cuda" else "process RSS"}
    elif cfg.wide_frames:
        found["wide"] = {"skipped": "out of time"}
    return found


class Decoder:
    """One decoder over a set of videos: ``pair(v, i, j)`` -> (2, 3, H, W) uint8 on the device."""

    def __init__(self, name: str, videos: list[Path], device: torch.device) -> None:
        self.name, self.videos, self.device = name, videos, device
        self.readers: dict[int, Any] = {}
        self.pin = device.type == "cuda"

    def _open(self, v: int) -> Any:
        if v not in self.readers:
            if self.name.startswith("torchcodec"):
                from torchcodec.decoders import VideoDecoder

                where = "cuda" if self.name == "torchcodec-cuda" else "cpu"
                self.readers[v] = VideoDecoder(str(self.videos[v]), device=where, seek_mode="exact")
            else:
                from vidssl.data.backends import open_video

                self.readers[v] = open_video(self.videos[v], backend=self.name)
        return self.readers[v]

    def num_frames(self, v: int) -> int:
        reader = self._open(v)
        return reader.metadata.num_frames if self.name.startswith("torchcodec") else reader.num_frames

    def pair(self, v: int, i: int, j: int) -> torch.Tensor:
        reader = self._open(v)
        if self.name.startswith("torchcodec"):
            frames = reader.get_frames_at(indices=[i, j]).data  # (2, 3, H, W), on the decoder's device
        else:
            frames = torch.from_numpy(reader.get_frames([i, j])).permute(0, 3, 1, 2)
        if frames.device != self.device:
            frames = (frames.pin_memory() if self.pin else frames).to(self.device, non_blocking=True)
        return frames

    def close(self) -> None:
        for reader in self.readers.values():
            if hasattr(reader, "close"):
                reader.close()


def decoder_missing(name: str, device: torch.device) -> str | None:
    """Why ``name`` cannot run here (None: it can)."""
    module = {"pyav": "av", "decord": "decord"}.get(name, "torchcodec")
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    if name == "torchcodec-cuda" and device.type != "cuda":
        return NO_CUDA
    if name.startswith("torchcodec"):
        try:
            import torchcodec.decoders  # noqa: F401 - loads its FFmpeg libraries
        except Exception as err:  # noqa: BLE001 - e.g. no FFmpeg libraries, or built for another torch
            return f"torchcodec does not load: {one_line(err)}"
    return None


def part_decode(ctx: Context) -> dict:
    """Frame pairs into device tensors, per decoder, for ``decode_seconds`` each."""
    cfg = ctx.cfg
    if cfg.decode_videos:
        from vidssl.data.backends import VIDEO_EXTENSIONS

        videos = sorted(p for p in Path(cfg.decode_videos).iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    else:
        from vidssl.data.synth import SynthConfig, generate

        size = (120, 160) if ctx.smoke else (480, 854)
        generate(ctx.work / "synth", SynthConfig(num_videos=2, num_frames=24 if ctx.smoke else 60, height=size[0],
                                                 width=size[1], keyint=8), progress=False)
        videos = sorted((ctx.work / "synth" / "videos").glob("*.mp4"))
    if not videos:
        raise FileNotFoundError(f"decode_videos={cfg.decode_videos}: no video files")
    gen = torch.Generator().manual_seed(0)
    rows: dict[str, dict] = {}
    reference: torch.Tensor | None = None
    for name in ("pyav", "decord", "torchcodec-cpu", "torchcodec-cuda"):
        missing = decoder_missing(name, ctx.device)
        if missing:
            rows[name] = {"skipped": missing}
            continue
        decoder = Decoder(name, videos, ctx.device)
        try:
            first = decoder.pair(0, 0, 5).float().cpu()  # opens the file; compared with PyAV's frames
            reference = first if reference is None else reference
            counts = [decoder.num_frames(v) for v in range(len(videos))]
            sync(ctx.device)
            pairs, started = 0, time.perf_counter()
            while time.perf_counter() - started < cfg.decode_seconds and ctx.left() > 5:
                v = int(torch.randint(len(videos), (1,), generator=gen))
                i = int(torch.randint(counts[v], (1,), generator=gen))
                j = min(counts[v] - 1, i + int(torch.randint(1, 31, (1,), generator=gen)))
                decoder.pair(v, i, j)
                pairs += 1
            sync(ctx.device)
            seconds = time.perf_counter() - started
            rows[name] = {"pairs_per_s": round(pairs / seconds, 1), "pairs": pairs,
                          "size": f"{first.shape[-1]}x{first.shape[-2]}",
                          "mean_abs_diff_vs_pyav": round((first - reference).abs().mean().item(), 3)
                          if reference.shape == first.shape else None}
        except Exception as err:  # noqa: BLE001
            rows[name] = {"error": one_line(err)}
        finally:
            decoder.close()
        print(f"decode {name}: {rows[name]}", flush=True)
        ctx.report({"decoders": rows})
    return {"decoders": rows, "videos": len(videos), "into": str(ctx.device),
            "note": "one process; random pairs at most 30 frames apart; CPU decoders copy through pinned memory"}


PARTS: dict[str, Part] = {p.name: p for p in (
    Part("env", part_env, 30, False, True, "device and versions"),
    Part("train", part_train, 170, True, True, "every method through vidssl train on the device"),
    Part("ddp", part_ddp, 90, True, True, "torchrun --nproc_per_node=1, and an NCCL probe"),
    Part("resume", part_resume, 90, True, True, "straight vs killed-and-resumed weights"),
    Part("resnet", part_resnet, 120, True, True, "bench_train: end-to-end img/s against the ceiling"),
    Part("propagation", part_propagation, 120, False, True, "DAVIS preset=crw, float32 vs default precision"),
    Part("decode", part_decode, 60, False, True, "frame pairs into device tensors per decoder"),
    Part("compile", part_compile, 170, True, False, "compile=true against eager"),
)}


# --------------------------------------------------------------------------------------------
# running the parts


def run_isolated(cmd: list[str], *, timeout: float, result: Path, prefix: str = "") -> dict:
    """Run ``cmd`` (which writes its dict to ``result``) in a new process group, its output
    streamed with ``prefix``; killed with its group after ``timeout`` s."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONUNBUFFERED": "1"}
    last: deque[str] = deque(maxlen=5)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, errors="replace")

    def pump() -> None:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                last.append(line)
                print(f"{prefix}{line}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the part and its loader workers
        proc.wait()
        reader.join(timeout=5)
        so_far = json.loads(result.read_text()) if result.exists() else {}  # figures the part had reported
        return {**so_far, "error": f"timed out after {timeout:.0f} s (last output: {last[-1] if last else 'none'})"
                [:400]}
    reader.join(timeout=5)
    if result.exists():
        return json.loads(result.read_text())
    return {"error": f"exit code {proc.returncode} without a result: {last[-1] if last else 'no output'}"[:400]}


def run_part(part: Part, ctx: Context) -> dict:
    """The part in this process: its dict, or ``{"error": ...}`` (and the figures it had reported)
    for any exception."""
    try:
        return part.run(ctx)
    except Exception as err:  # noqa: BLE001 - one part's failure never stops the others
        return {**ctx.so_far, "error": one_line(err)}


def skip_reason(part: Part, cfg: CheckConfig, device: torch.device) -> str | None:
    if device.type == "cuda" or part.name == "env":
        return None
    if cfg.cpu_smoke and part.cpu_mode:
        return None
    why = {"compile": "; compile=true on the CPU is tested by tests/engine/test_compile_cpu.py"}.get(part.name, "")
    return f"{NO_CUDA}{why}"


def prepare_data(cfg: CheckConfig, work: Path, *, smoke: bool) -> CheckConfig:
    """``cfg`` with ``data`` set: the given folder, or synthetic videos generated once for every part."""
    if cfg.data:
        return cfg
    from vidssl.data.synth import SynthConfig, generate

    synth = work / "synth"
    size = dict(num_videos=3, num_frames=24, height=120, width=160) if smoke else dict(num_videos=16, num_frames=64)
    started = time.perf_counter()
    generate(synth, SynthConfig(out=str(synth), **size), progress=False)
    print(f"synthetic data: {synth / 'videos'} in {time.perf_counter() - started:.1f} s", flush=True)
    return dataclasses.replace(cfg, data=str(synth / "videos"))


def resolve_device(cfg: CheckConfig) -> torch.device:
    from vidssl.device import resolve_device as resolve

    return resolve(cfg.device)


def check(argv: list[str]) -> dict:
    """Run the parts ``argv`` asks for; write OUT/gpu_check.json and .md; return the record."""
    started = time.time()
    cfg = parse_overrides(CheckConfig, argv)
    unknown = [p for p in cfg.parts if p not in PARTS]
    if unknown:
        raise ConfigError(f"parts: unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    device = resolve_device(cfg)
    if device.type != "cuda" and cfg.cpu_smoke:
        given = {a.partition("=")[0].strip().replace("-", "_") for a in argv}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in SMOKE.items() if k not in given})
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"tool": "gpu_check", "device": str(device),
                              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                              "torch": torch.__version__, "cpu_smoke": cfg.cpu_smoke and device.type != "cuda",
                              "config": to_dict(cfg), "parts": {}}
    with contextlib.ExitStack() as stack:
        work = Path(cfg.work) if cfg.work else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="vidssl-gpu-check-")))
        work.mkdir(parents=True, exist_ok=True)
        todo = {p: skip_reason(PARTS[p], cfg, device) for p in cfg.parts}
        if any(PARTS[p].needs_data and why is None for p, why in todo.items()) or (
                "propagation" in todo and todo["propagation"] is None and not cfg.davis):
            cfg = prepare_data(cfg, work, smoke=device.type != "cuda")
        for name, why in todo.items():
            part = PARTS[name]
            left = cfg.budget - (time.time() - started)
            if why is None and left < 20:
                why = f"out of time: {left:.0f} s of the {cfg.budget:.0f} s budget left"
            if why is not None:
                record["parts"][name] = {"skipped": why}
                print(f"== {name}: skipped ({why})", flush=True)
                continue
            limit = min(part.limit, left)
            part_work = work / name
            part_work.mkdir(parents=True, exist_ok=True)
            print(f"== {name}: {part.about} (at most {limit:.0f} s)", flush=True)
            tic = time.time()
            if cfg.isolate and name != "env":
                result = part_work / "result.json"
                result.unlink(missing_ok=True)  # a result left by an earlier run in the same work=
                keys = [f"{k}={v}" for k, v in to_dict(cfg).items()]  # resolved: data, smoke sizes
                cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, str(result),
                       str(tic + limit - 5), str(part_work), *keys]
                found = run_isolated(cmd, timeout=limit, result=result, prefix=f"[{name}] ")
            else:
                found = run_part(part, Context(cfg, device, part_work, deadline=tic + limit - 5))
            found["seconds"] = round(time.time() - tic, 1)
            record["parts"][name] = found
            print(f"== {name}: {status(found)} in {found['seconds']} s", flush=True)
    record["seconds"] = round(time.time() - started, 1)
    record["errors"] = [n for n, r in record["parts"].items() if "error" in r]
    record["failed"] = [n for n, r in record["parts"].items() if r.get("ok") is False]  # ran; a row failed
    record["skipped"] = [n for n, r in record["parts"].items() if "skipped" in r]
    (out / "gpu_check.json").write_text(json.dumps(record, indent=1))
    (out / "gpu_check.md").write_text(markdown(record))
    return record


def child(argv: list[str]) -> None:
    """``--part NAME RESULT DEADLINE WORK key=value ...``: one part in this process."""
    name, result, deadline, work, *keys = argv
    cfg = parse_overrides(CheckConfig, keys)
    found = run_part(PARTS[name], Context(cfg, resolve_device(cfg), Path(work), deadline=float(deadline),
                                          result=Path(result)))
    Path(result).write_text(json.dumps(found))


# --------------------------------------------------------------------------------------------
# the Markdown summary


def status(found: dict) -> str:
    if "skipped" in found:
        return f"skipped: {found['skipped']}"
    if "error" in found:
        return f"error: {found['error']}"
    return "ok" if found.get("ok", True) else "ran, with failures"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(fmt, value))
    return str(value).replace("|", "\\|")


def markdown(record: dict) -> str:
    """Device, versions, then each part: a table of its rows, its figures, or its skip reason."""
    env = record["parts"].get("env", {})
    lines = [
        "# vidssl GPU check", "",
        f"- device: {record['device_name']} ({record['device']}"
        + (f", {env['gpu_memory_gib']} GiB, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}" if "gpu" in env else "")
        + ")",
        f"- torch {record['torch']}; commit {env.get('commit', '?')}; {record['seconds']} s"
        + (" (cpu_smoke: tiny CPU runs of the parts that have a CPU mode)" if record["cpu_smoke"] else ""),
        "", "| part | status | seconds |", "|---|---|---|",
    ]
    lines += [f"| {n} | {fmt(status(r))} | {r.get('seconds', '')} |" for n, r in record["parts"].items()]
    for name, found in record["parts"].items():
        lines += ["", f"## {name}", ""]
        if "skipped" in found or "error" in found:
            lines.append(status(found))
        lines += render({k: v for k, v in found.items() if k not in ("skipped", "error")})
    return "\n".join(lines) + "\n"


def render(found: dict, depth: int = 0) -> list[str]:
    """Scalars as a list; a dict of dicts of scalars (rows) as a table; deeper dicts recursively."""
    lines: list[str] = []
    scalars = {k: v for k, v in found.items() if not isinstance(v, dict)}
    if scalars:
        lines += [f"- {k}: {fmt(v)}" for k, v in scalars.items()]
    for key, value in found.items():
        if not isinstance(value, dict):
            continue
        rows = {k: v for k, v in value.items() if isinstance(v, dict)}
        if rows and all(not isinstance(x, dict) for r in rows.values() for x in r.values()):
            columns = list(dict.fromkeys(c for r in rows.values() for c in r))
            lines += ["", f"**{key}**", "", f"| {key} | " + " | ".join(columns) + " |",
                      "|---" * (len(columns) + 1) + "|"]
            lines += [f"| {n} | " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for n, r in rows.items()]
            rest = {k: v for k, v in value.items() if k not in rows}
            lines += [f"- {key}.{k}: {fmt(v)}" for k, v in rest.items()]
        else:
            lines += ["", f"**{key}**", ""] + render(value, depth + 1)
    return lines


def main(argv: list[str]) -> int:
    if argv[:1] == ["--part"]:
        child(argv[1:])
        return 0
    if argv[:1] == ["--nccl-probe"]:
        nccl_probe(Path(argv[1]), argv[2:])
        return 0
    try:
        record = check(argv)
    except (ConfigError, FileNotFoundError) as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    print(f"wrote {Path(record['config']['out']) / 'gpu_check.json'} and gpu_check.md", flush=True)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
