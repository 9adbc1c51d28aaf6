"""FTI training throughput end to end from video files, against the compute ceiling.

    python tools/bench_train.py [data=DIR] [models=(resnet18, resnet50)] [batch_size=256] [steps=60]

For each model: images/s of ``vidssl train method=fti`` reading a folder of videos (the real loop:
loader, augmentation, bf16 autocast, channels_last), and images/s of the same method stepping on
random tensors already on the device (the ceiling), eager and, with ``compile=true``, compiled.
``fraction_of_ceiling`` = end-to-end / ceiling (same compile setting). With no ``data=`` the
synthetic set is generated and prepared. The last line is one JSON object. Meant for a GPU; runs
on CPU with small settings as a smoke test.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vidssl.config import option, parse_overrides
from vidssl.engine.trainer import build_run, run_config, train


@dataclass(frozen=True)
class BenchConfig:
    data: str = option("", "folder of videos (default: synthetic, prepared as JPEG frames)")
    models: tuple[str, ...] = option(("resnet18", "resnet50"), "encoders to measure")
    batch_size: int = option(256, "frame pairs per step")
    image_size: int = option(224, "crop size")
    steps: int = option(60, "measured steps per setting (after warmup)")
    warmup: int = option(10, "steps not counted")
    workers: int = option(12, "DataLoader workers for the end-to-end runs")
    compile: bool = option(False, "also measure torch.compile")
    out: str = option("", "also write the JSON figures here")


def ceiling(model_name: str, cfg: BenchConfig, *, compiled: bool) -> float:
    """Images/s of FTI steps on random frames already on the device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tcfg, method_cfg = run_config(method="fti", encoder=model_name, image_size=cfg.image_size,
                                  batch_size=cfg.batch_size, lr=0.01)
    method, optimizer = build_run(tcfg, method_cfg, device)
    step_fn = torch.compile(method) if compiled else method
    frames = torch.randint(0, 256, (cfg.batch_size, 2, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8,
                           device=device)  # pixels, as the loader delivers them

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = step_fn({"frames": frames}).loss
        loss.backward()
        optimizer.step()

    for _ in range(cfg.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return cfg.batch_size * 2 * cfg.steps / (time.perf_counter() - start)


def end_to_end(model_name: str, cfg: BenchConfig, data: Path, tmp: Path, *, compiled: bool) -> float:
    """Images/s that ``vidssl train`` logs once warm (mean over the logged intervals after warmup)."""
    out = tmp / f"run-{model_name}-{'compiled' if compiled else 'eager'}"
    train(*run_config(data=str(data), out=str(out), method="fti", encoder=model_name, steps=cfg.warmup + cfg.steps,
                      batch_size=cfg.batch_size, image_size=cfg.image_size, workers=cfg.workers, log_every=cfg.warmup,
                      save_every=10**9, export=False, compile=compiled))
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [x["images_per_s"] for x in logs if x["step"] > cfg.warmup]
    return sum(rates) / len(rates)


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchConfig, argv)
    with tempfile.TemporaryDirectory(prefix="vidssl-bench-train-") as tmp:  # nothing written here outlives the run
        return bench(cfg, Path(tmp))


def bench(cfg: BenchConfig, tmp: Path) -> dict:
    if cfg.data:
        data = Path(cfg.data)
    else:
        from vidssl.data.prepare import PrepareConfig, prepare
        from vidssl.data.synth import SynthConfig, generate

        generate(tmp / "synth", SynthConfig(num_videos=32, num_frames=96), progress=False)
        data = tmp / "frames"
        prepare(PrepareConfig(data=str(tmp / "synth" / "videos"), out=str(data), format="frames"), progress=False)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; FTI, batch {cfg.batch_size} pairs, {cfg.image_size}px, data {data}")
    figures: dict = {"device": device, "batch_size": cfg.batch_size, "image_size": cfg.image_size, "models": {}}
    for model_name in cfg.models:
        row = {}
        for compiled in (False, True) if cfg.compile else (False,):
            tag = "compiled" if compiled else "eager"
            ceil = ceiling(model_name, cfg, compiled=compiled)
            e2e = end_to_end(model_name, cfg, data, tmp, compiled=compiled)
            row[tag] = {"ceiling_images_per_s": ceil, "end_to_end_images_per_s": e2e, "fraction_of_ceiling": e2e / ceil}
            print(f"  {model_name:<10} {tag:<9} ceiling {ceil:9.0f} img/s   end-to-end {e2e:9.0f} img/s   "
                  f"{100 * e2e / ceil:5.1f}% of ceiling", flush=True)
        figures["models"][model_name] = row
    figures["fraction_of_ceiling"] = {m: r["eager"]["fraction_of_ceiling"] for m, r in figures["models"].items()}
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
