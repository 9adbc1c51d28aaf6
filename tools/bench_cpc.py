"""CPC training throughput (issue 5): images/s of ``method=cpc`` per image size.

    python tools/bench_cpc.py [data=DIR] [encoder=resnet18] [sizes=(128, 224)] [batch_size=32] [cpc_dense=false]

For each size: images/s (sequences x T frames through the encoder per second) of CPC steps on
random frames already on the device (the ceiling: bf16 autocast and channels_last on CUDA), and,
with ``end_to_end=true``, what ``vidssl train method=cpc`` logs reading videos (loader, consistent
augmentation, the same step). With no ``data=`` a synthetic set is generated and prepared as JPEG
frames. The last line is one JSON object. Meant for a GPU; on CPU run it with tiny settings as a
smoke test: ``sizes=(64,) batch_size=2 steps=2 warmup=1 workers=0``.
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
    encoder: str = option("resnet18", "encoder to measure")
    sizes: tuple[int, ...] = option((128, 224), "crop sizes to measure")
    batch_size: int = option(32, "sequences per step (each of seq_len frames)")
    seq_len: int = option(8, "T")
    seq_stride: int = option(4, "s")
    pred_steps: int = option(3, "K")
    cpc_dense: bool = option(False, "dense (DPC) instead of pooled (CPC) predictions")
    steps: int = option(30, "measured steps per setting (after warmup)")
    warmup: int = option(5, "steps not counted")
    end_to_end: bool = option(True, "also measure vidssl train reading videos")
    workers: int = option(12, "DataLoader workers for the end-to-end runs")
    device: str = option("auto", "auto | cpu | cuda")
    out: str = option("", "also write the JSON figures here")


def _method_config(cfg: BenchConfig, size: int, **extra: object):
    return run_config(method="cpc", encoder=cfg.encoder, image_size=size, batch_size=cfg.batch_size,
                      seq_len=cfg.seq_len, seq_stride=cfg.seq_stride, pred_steps=cfg.pred_steps,
                      dense=cfg.cpc_dense, device=cfg.device, lr=0.01, **extra)


def ceiling(cfg: BenchConfig, size: int, device: torch.device) -> float:
    """Images/s of CPC steps (forward, backward, SGD update) on random frames on the device."""
    method, optimizer = build_run(*_method_config(cfg, size), device)
    cuda = device.type == "cuda"
    frames = torch.randint(0, 256, (cfg.batch_size, cfg.seq_len, 3, size, size), dtype=torch.uint8,
                           device=device)  # pixels, as the loader delivers them

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = method({"frames": frames}).loss
        loss.backward()
        optimizer.step()

    for _ in range(cfg.warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    return cfg.batch_size * cfg.seq_len * cfg.steps / (time.perf_counter() - start)


def end_to_end(cfg: BenchConfig, size: int, data: Path, tmp: Path) -> float:
    """Mean images/s that ``vidssl train method=cpc`` logs after the warmup steps."""
    out = tmp / f"run-{size}"
    train(*_method_config(cfg, size, data=str(data), out=str(out), steps=cfg.warmup + cfg.steps,
                         decode_size=max(256, size + 32), workers=cfg.workers, log_every=max(1, cfg.warmup),
                         save_every=10**9, export=False))
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [x["images_per_s"] for x in logs if x["step"] > cfg.warmup] or [logs[-1]["images_per_s"]]
    return sum(rates) / len(rates)


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchConfig, argv)
    with tempfile.TemporaryDirectory(prefix="vidssl-bench-cpc-") as tmp:  # nothing written here outlives the run
        return bench(cfg, Path(tmp))


def bench(cfg: BenchConfig, tmp: Path) -> dict:
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    data = Path(cfg.data) if cfg.data else None
    if data is None and cfg.end_to_end:
        from vidssl.data.prepare import PrepareConfig, prepare
        from vidssl.data.synth import SynthConfig, generate

        generate(tmp / "synth", SynthConfig(num_videos=32, num_frames=96), progress=False)
        data = tmp / "frames"
        prepare(PrepareConfig(data=str(tmp / "synth" / "videos"), out=str(data), format="frames"), progress=False)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    mode = "dense" if cfg.cpc_dense else "pooled"
    print(f"device: {name}; CPC ({mode}) {cfg.encoder}, batch {cfg.batch_size} x T={cfg.seq_len}, K={cfg.pred_steps}")
    figures: dict = {"device": name, "encoder": cfg.encoder, "mode": mode, "batch_size": cfg.batch_size,
                     "seq_len": cfg.seq_len, "pred_steps": cfg.pred_steps, "sizes": {}}
    for size in cfg.sizes:
        row = {"ceiling_images_per_s": ceiling(cfg, size, device)}
        if data is not None:
            row["end_to_end_images_per_s"] = end_to_end(cfg, size, data, tmp)
        figures["sizes"][size] = row
        print(f"  {size:>4}px  " + "   ".join(f"{k} {v:9.1f}" for k, v in row.items()), flush=True)
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
