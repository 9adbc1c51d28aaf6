"""Training throughput of every method on random tensors already on the device, against the
compute ceiling of its encoder.

    python tools/bench_methods.py [methods=(byol, simsiam, dino)] [encoder=resnet50] [image_size=224]
                                  [batch_size=64] [steps=20] [warmup=5] [device=auto]

For each method: images/s of the real step (``Method.training_step`` + backward + optimizer step
+ ``after_step``, bf16 autocast and channels_last on CUDA) on a batch shaped as that method's
loader would deliver it (its ``DataSpec.transform`` run once on a random frame for the view keys
and sizes, e.g. DINO's 2 global + N local crops; else the default pipeline's ``T`` frames of
``image_size``), and the images/s of plain supervised training of the same encoder on the same
images (forward, linear classifier, cross-entropy, backward, step: the ceiling). ``ratio`` =
method / ceiling: what the method's heads, target networks and extra passes cost. Images are
counted as the trainer counts them (every view of every key). Methods that bring their own
dataset, or cannot be built from defaults alone, are skipped with the reason; ``prepare`` runs on
random samples. The last line is one JSON object. Meant for a GPU; runs on CPU with small settings
(``device=cpu encoder=resnet18 image_size=64``) as a smoke test.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidssl.config import option, parse_overrides
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import normalize
from vidssl.ema import ema_update, momentum_at
from vidssl.engine.optim import build_optimizer
from vidssl.engine.trainer import run_config
from vidssl.methods import METHODS
from vidssl.methods.base import Method
from vidssl.models.encoders import build_encoder


@dataclass(frozen=True)
class BenchConfig:
    methods: tuple[str, ...] = option((), "methods to measure (default: every entry of METHODS)")
    encoder: str = option("resnet50", "encoder (any build_encoder name)")
    encoder_stride: int | None = option(None, "encoder stride (default: the architecture's own)")
    image_size: int = option(224, "crop size (global crops for DINO)")
    batch_size: int = option(64, "samples per step")
    steps: int = option(20, "measured steps per method (after warmup)")
    warmup: int = option(5, "steps not counted")
    optimizer: str = option("sgd", "optimizer of every run (sgd | lars | adamw)")
    device: str = option("auto", "auto | cpu | cuda")
    out: str = option("", "also write the JSON figures here")


class RandomSamples(Dataset):
    """Samples shaped like the loader's (uint8 views per key) for ``Method.prepare``."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], length: int = 64) -> None:
        self.shapes, self.length = shapes, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(index)
        views = {k: torch.randint(0, 256, s, dtype=torch.uint8, generator=g) for k, s in self.shapes.items()}
        return {**views, "indices": torch.zeros(views["frames"].shape[0], dtype=torch.long), "video": 0}


def view_shapes(spec: DataSpec, image_size: int) -> dict[str, tuple[int, ...]]:
    """(V, 3, h, w) per batch key, as the method's loader would produce them."""
    length = len(spec.sampler(1000, 25.0, torch.Generator().manual_seed(0)))  # frames per sample
    frames = torch.randint(0, 256, (length, 3, image_size + 32, image_size + 32), dtype=torch.uint8)
    if spec.transform is None:
        return {"frames": (length, 3, image_size, image_size)}
    out = spec.transform(frames)
    views = out if isinstance(out, dict) else {"frames": out}
    return {k: tuple(v.shape) for k, v in views.items()}


def timed(step: Callable[[], None], cfg: BenchConfig, device: torch.device) -> float:
    """Seconds per step after ``warmup`` steps."""
    for _ in range(cfg.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / cfg.steps


def method_seconds(method: Method, batch: dict[str, Any], cfg: BenchConfig, device: torch.device) -> float:
    """Seconds per training step of ``method`` on ``batch`` (already on ``device``)."""
    cuda = device.type == "cuda"
    method.to(device)
    if cuda:
        method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, method, lr=1e-4, weight_decay=1e-4)
    ema = method.ema()
    done = [0]

    def step() -> None:  # the trainer's step, less the loader
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = method(batch).loss
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema_update(ema.pairs, momentum_at(ema.momentum, ema.schedule, done[0], 10**6))
        method.after_step(done[0], 10**6)
        done[0] += 1

    return timed(step, cfg, device)


def supervised_seconds(views: list[torch.Tensor], cfg: BenchConfig, device: torch.device, stride: int | None) -> float:
    """Seconds per step of supervised training of a fresh encoder (linear classifier,
    cross-entropy) on the same images: one pass per view key, as the methods do per resolution."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    encoder = build_encoder(cfg.encoder, stride=stride)
    classifier = torch.nn.Linear(encoder.out_dim, 1000)
    model = torch.nn.ModuleDict({"encoder": encoder, "classifier": classifier}).to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, model, lr=1e-4, weight_decay=1e-4)
    g = torch.Generator(device).manual_seed(1)
    labels = [torch.randint(0, 1000, (len(x),), device=device, generator=g) for x in views]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = [classifier(encoder(x)).float() for x in views]
            loss = sum(F.cross_entropy(z, y) for z, y in zip(logits, labels, strict=True))
        loss.backward()
        optimizer.step()

    return timed(step, cfg, device)


def measure(name: str, cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """images/s of ``name``'s training step and of supervised training on the same images."""
    tcfg, method_cfg = run_config(method=name, encoder=cfg.encoder, image_size=cfg.image_size,
                                  batch_size=cfg.batch_size)
    stride = cfg.encoder_stride if cfg.encoder_stride is not None else tcfg.encoder_stride  # a method's own default
    torch.manual_seed(0)
    encoder = build_encoder(cfg.encoder, stride=stride)
    try:
        method = METHODS[name](encoder, method_cfg, image_size=cfg.image_size, seed=0)
    except ValueError as err:  # a method that needs files of its own
        return {"skipped": str(err)}
    spec = method.data()
    if spec.dataset is not None:
        return {"skipped": "brings its own dataset"}
    shapes = view_shapes(spec, cfg.image_size)
    method.prepare(RandomSamples(shapes))
    g = torch.Generator(device).manual_seed(0)
    views = {k: torch.randint(0, 256, (cfg.batch_size, *s), device=device, generator=g, dtype=torch.uint8)
             for k, s in shapes.items()}  # pixels, as the loader delivers them
    batch: dict[str, Any] = {**views, "video": torch.zeros(cfg.batch_size, dtype=torch.long, device=device),
                             "indices": torch.arange(shapes["frames"][0], device=device).repeat(cfg.batch_size, 1)}
    seconds = method_seconds(method, batch, cfg, device)
    del method, batch  # free the method's memory before the ceiling run
    ceiling = supervised_seconds([normalize(v.flatten(0, 1)) for v in views.values()], cfg, device, stride)
    images = cfg.batch_size * sum(s[0] for s in shapes.values())
    return {"views": {k: f"{s[0]}x{s[2]}px" for k, s in shapes.items()}, "images_per_step": images,
            "images_per_s": images / seconds, "ceiling_images_per_s": images / ceiling, "ratio": ceiling / seconds}


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchConfig, argv)
    name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    methods = cfg.methods or tuple(METHODS)
    print(f"device: {label}; {cfg.encoder}, batch {cfg.batch_size} samples, {cfg.image_size}px, "
          f"{cfg.steps} steps after {cfg.warmup}; ceiling = supervised training on the same images")
    figures: dict[str, Any] = {"device": label, "encoder": cfg.encoder, "image_size": cfg.image_size,
                               "batch_size": cfg.batch_size, "steps": cfg.steps, "methods": {}}
    for method_name in methods:
        row = measure(method_name, cfg, device)
        figures["methods"][method_name] = row
        if "skipped" in row:
            print(f"  {method_name:<14} skipped: {row['skipped']}", flush=True)
            continue
        views = ", ".join(f"{k} {v}" for k, v in row["views"].items())
        print(f"  {method_name:<14} {row['images_per_s']:9.1f} img/s   ceiling {row['ceiling_images_per_s']:9.1f} "
              f"img/s   ratio {row['ratio']:5.2f}   ({views})", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
