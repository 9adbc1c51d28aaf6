"""The one training loop: any method, CPU or CUDA, one process or many under torchrun.

    vidssl train [data=DIR] method=fti encoder=resnet18 steps=1000 batch_size=64 out=runs/fti

Per step: ``accum`` micro-batches (bf16 autocast and channels_last on CUDA), gradient clipping,
an optimizer step with the scheduled learning rate, then the method's momentum updates. Samples
are a function of (seed, sample number), so resuming at step s continues with the very samples
the uninterrupted run would have drawn, and the global RNG is reseeded from (seed, step, rank) at
every step, so draws inside a step repeat too; the checkpoint holds model, optimizer and step.
A non-finite loss stops the run before the update, keeping the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from vidssl.config import option, to_dict
from vidssl.data.datasets import VideoFrameDataset, sample_seed
from vidssl.data.gpu_augment import color_augment
from vidssl.data.index import scan, scan_images
from vidssl.data.transforms import normalize, random_crop, simclr_augment
from vidssl.engine.checkpoint import load_checkpoint, save_checkpoint
from vidssl.engine.distributed import DistInfo, init_distributed, shutdown_distributed
from vidssl.engine.optim import build_optimizer, cosine_schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    data: str = option("", "folder of videos (or images); empty trains on synthetic videos generated into OUT/synth")
    data_kind: Literal["videos", "images"] = option(
        "videos", "videos: video files and frame folders | images: an image folder (ImageFolder layout, labels ignored)"
    )
    method: str = option("fti", "a training method (vidssl train method=NAME --help lists its own keys too)")
    encoder: str = option("resnet18", "resnet18 | resnet34 | resnet50 | timm:NAME")
    encoder_stride: int | None = option(
        None, "output stride of the encoder: none = the architecture's own (32 ResNet, 16 ViT); 8 or 16 for dense tasks"
    )
    weights: str = option("", "initial encoder weights (local .safetensors or state_dict file)")
    steps: int = option(1000, "optimizer steps")
    batch_size: int = option(64, "samples per micro-batch per process")
    accum: int = option(1, "micro-batches accumulated per optimizer step")
    out: str = option("runs/train", "run folder: config.yaml, checkpoints/, log.jsonl, tb/, encoder.safetensors")
    resume: bool = option(False, "continue from OUT/checkpoints/last.pt")
    optimizer: Literal["sgd", "lars", "adamw"] = option("sgd", "sgd | lars | adamw")
    lr: float = option(0.05, "peak learning rate (per optimizer step, not scaled by batch)")
    min_lr: float = option(0.0, "final learning rate of the cosine schedule")
    warmup_steps: int = option(0, "linear warmup steps")
    weight_decay: float = option(1e-4, "weight decay (not on biases and norms)")
    clip_grad: float = option(0.0, "clip the gradient norm to this (0: off)")
    loss: Literal["infonce", "moco"] = option("infonce", "fti loss: infonce (SimCLR NT-Xent) | moco (MoCo-v2 queue)")
    temperature: float | None = option(None, "softmax temperature (default: 0.1 infonce, 0.2 moco)")
    proj_hidden: int = option(2048, "projection head hidden width")
    proj_dim: int = option(128, "projection output dimension")
    queue_size: int = option(65536, "MoCo queue length")
    moco_momentum: float = option(0.999, "MoCo key-encoder momentum")
    min_gap: float = option(0, "smallest gap between the frames of a pair")
    max_gap: float = option(30, "largest gap between the frames of a pair")
    gap_unit: Literal["frames", "seconds"] = option("frames", "unit of min_gap / max_gap")
    image_size: int = option(224, "crop size seen by the encoder")
    color_on: Literal["auto", "loader", "device"] = option(
        "auto", "where colour jitter / grayscale / blur run: loader workers, or batched on the device (auto: device on CUDA)"
    )
    decode_size: int = option(256, "short side frames are resized to while decoding")
    backend: str = option("auto", "video backend: auto | decord | pyav | opencv | frames")
    workers: int = option(4, "DataLoader workers per process")
    device: str = option("auto", "auto | cpu | cuda")
    amp: bool = option(True, "bf16 autocast on CUDA")
    channels_last: bool = option(True, "channels_last memory format on CUDA")
    compile: bool = option(False, "torch.compile the method")
    seed: int = option(0, "seed of initialisation, sampling and augmentation")
    save_every: int = option(500, "checkpoint every N steps (and at the end)")
    log_every: int = option(10, "log every N steps")
    export: bool = option(True, "write OUT/encoder.safetensors at the end")


@functools.cache
def config_class(method: str) -> type[TrainConfig]:
    """TrainConfig extended with the options of ``method`` (``METHOD_OPTIONS``), if it has any.

    An options class may carry ``TRAIN_DEFAULTS: ClassVar[dict]``, shared keys whose default
    differs for this method (e.g. ``{"encoder_stride": 8}``)."""
    from vidssl.methods import METHOD_OPTIONS

    options = METHOD_OPTIONS.get(method)
    if options is None:
        return TrainConfig
    hints = typing.get_type_hints(options)
    clash = {f.name for f in dataclasses.fields(options)} & {f.name for f in dataclasses.fields(TrainConfig)}
    if clash:
        raise TypeError(f"{options.__name__} redefines TrainConfig keys: {', '.join(sorted(clash))}")
    fields = [(f.name, hints[f.name], dataclasses.field(default=f.default, default_factory=f.default_factory,
                                                        metadata=f.metadata)) for f in dataclasses.fields(options)]
    # A method may change shared defaults (colorization needs encoder_stride=8): redefine those fields.
    base_hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in getattr(options, "TRAIN_DEFAULTS", {}):
            default = options.TRAIN_DEFAULTS[f.name]
            fields.append((f.name, base_hints[f.name], dataclasses.field(default=default, metadata=f.metadata)))
    cls = dataclasses.make_dataclass(f"TrainConfig_{method}", fields, bases=(TrainConfig,), frozen=True)
    cls.__module__ = __name__
    return cls


def train_config(**values: typing.Any) -> TrainConfig:
    """A TrainConfig for ``values["method"]`` (default fti) holding its options, e.g.
    ``train_config(method="cpc", steps=10, pred_steps=2)``."""
    return config_class(values.get("method", "fti"))(**values)


def with_method_options(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` as an instance of :func:`config_class` for its method (defaults for the options
    it does not hold yet)."""
    cls = config_class(cfg.method)
    if isinstance(cfg, cls):
        return cfg
    return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)})


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops before the update."""


class SampleRange(Sampler[int]):
    """Sample numbers ``first, first+1, ...`` of this rank's share of a global stream.

    Global micro-batch m holds samples [m*B*W, (m+1)*B*W); rank r takes its r-th slice of B."""

    def __init__(self, *, first_micro_batch: int, num_micro_batches: int, batch_size: int, dist: DistInfo) -> None:
        self.first, self.count, self.batch_size, self.dist = first_micro_batch, num_micro_batches, batch_size, dist

    def __iter__(self):
        global_batch = self.batch_size * self.dist.world_size
        for m in range(self.first, self.first + self.count):
            base = m * global_batch + self.dist.rank * self.batch_size
            yield from range(base, base + self.batch_size)

    def __len__(self) -> int:
        return self.count * self.batch_size


def _device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{dist.local_rank}") if name == "cuda" else torch.device(name)


def _training_data(cfg: TrainConfig, out: Path, dist: DistInfo) -> Path:
    if cfg.data:
        return Path(cfg.data)
    from vidssl.data.synth import SynthConfig, generate

    synth = out / "synth"
    if dist.is_main and not (synth / "synth.json").exists():
        generate(synth, SynthConfig(out=str(synth)), progress=True)
    if dist.world_size > 1:
        torch.distributed.barrier()
    return synth / "videos"


def _resolve_config(cfg: TrainConfig) -> TrainConfig:
    """On resume, the run's saved config wins except for steps (a run may be extended)."""
    saved = Path(cfg.out) / "config.yaml"
    if not cfg.resume or not saved.exists():
        return cfg
    from vidssl.config import parse_overrides

    on_disk = yaml.safe_load(saved.read_text())
    cls = config_class(on_disk.get("method", cfg.method))
    base = cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if hasattr(cfg, f.name)})
    pairs = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in on_disk.items() if k not in ("steps", "resume")]
    resumed = parse_overrides(cls, pairs, base=base)
    changed = [f.name for f in dataclasses.fields(resumed) if getattr(resumed, f.name) != getattr(base, f.name)]
    if changed:
        log.warning("resume: keeping the run's saved settings for %s", ", ".join(changed))
    return resumed


def train(cfg: TrainConfig) -> Path:
    """Train ``cfg.method`` and return the run folder (see module docstring)."""
    from vidssl.methods import METHODS
    from vidssl.models.encoders import build_encoder

    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    cfg = _resolve_config(with_method_options(cfg))
    probe_device = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    dist = init_distributed(probe_device)
    device = _device(cfg.device, dist)
    cuda = device.type == "cuda"
    out = Path(cfg.out)
    last = out / "checkpoints" / "last.pt"
    try:
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        encoder = build_encoder(cfg.encoder, stride=cfg.encoder_stride, weights=cfg.weights or None)
        method, spec = METHODS[cfg.method](encoder, cfg)
        method.to(device)
        if cuda and cfg.channels_last:
            method.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(cfg.optimizer, method, lr=cfg.lr, weight_decay=cfg.weight_decay)
        lrs = cosine_schedule(cfg.lr, cfg.min_lr, cfg.steps, warmup_steps=cfg.warmup_steps)

        step = 0
        if cfg.resume and last.exists():
            state = load_checkpoint(last, map_location=device)
            method.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            step = int(state["step"])
            log.info("resumed %s at step %d", last, step)
        elif cfg.resume:
            log.warning("resume: %s does not exist, starting from step 0", last)

        model = method
        if dist.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(method, device_ids=[device.index] if cuda else None)
        if cfg.compile:
            model = torch.compile(model)

        data = _training_data(cfg, out, dist)
        images_only = cfg.data_kind == "images"
        index = scan_images(data, progress=dist.is_main) if images_only else scan(data, progress=dist.is_main)
        if dist.is_main:
            log.info("%s", index.summary())
        if not index.videos:
            raise ValueError(f"{data}: no usable {'images' if images_only else 'videos'} ({index.summary()})")
        # Colour augmentation of the default transform, batched on the device or in the workers.
        device_color = spec.transform is None and spec.color and (cfg.color_on == "device" or (cfg.color_on == "auto" and cuda))
        if spec.transform is not None:
            transform = spec.transform
        elif spec.color and not device_color:
            transform = simclr_augment(cfg.image_size)
        else:
            transform = random_crop(cfg.image_size)
        dataset = (spec.dataset or VideoFrameDataset)(
            videos=index.videos, sampler=spec.sampler, backend="image" if images_only else cfg.backend,
            size=cfg.decode_size, transform=transform, consistent=spec.consistent or spec.transform is not None,
            samples_per_epoch=2**62, seed=cfg.seed,
        )
        if dist.is_main and getattr(dataset, "too_short", 0):
            log.warning("%d videos are too short for %s and were left out", dataset.too_short, spec.sampler)
        if step == 0:
            method.prepare(dataset)
        remaining = cfg.steps - step
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=SampleRange(first_micro_batch=step * cfg.accum, num_micro_batches=max(0, remaining) * cfg.accum,
                                batch_size=cfg.batch_size, dist=dist),
            num_workers=cfg.workers,
            generator=torch.Generator().manual_seed(cfg.seed),  # leaves the global RNG alone
            pin_memory=cuda,
            persistent_workers=False,
            prefetch_factor=4 if cfg.workers else None,
            worker_init_fn=_one_thread,
        )
        writer = _Logs(out, enabled=dist.is_main)
        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.method}", unit="step", disable=not dist.is_main, dynamic_ncols=True)
        batches = iter(loader)
        images = 0  # frames seen by the encoder on this process since the last log
        tick = time.perf_counter()

        def save() -> None:
            if dist.is_main:
                save_checkpoint({"model": method.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                 "config": to_dict(cfg)}, last)

        while step < cfg.steps:
            # Random draws inside a step (dropout, masks, a method's choices) come from a stream
            # per (seed, step, rank): a resumed run repeats them exactly, and ranks differ.
            torch.manual_seed(sample_seed(cfg.seed, step, -1 - dist.rank))
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[step])
            optimizer.zero_grad(set_to_none=True)
            logs: dict[str, float] = {}
            for micro in range(cfg.accum):
                batch = next(batches)
                views = {k: v for k, v in batch.items() if _is_views(v)}
                images += sum(v.shape[0] * v.shape[1] for v in views.values())
                for i, (key, v) in enumerate(views.items()):
                    v = v.to(device, non_blocking=True)
                    if device_color:  # a stream per (step, micro-batch, view key, rank): resumable
                        stream = (micro + cfg.accum * i) * dist.world_size + dist.rank
                        g = torch.Generator(device).manual_seed(sample_seed(cfg.seed, step, stream))
                        share = v.shape[1] if spec.consistent else 1
                        v = color_augment(v.flatten(0, 1).float().div_(255), g, share=share).view(v.shape)
                    batch[key] = normalize(v)
                sync = dist.world_size == 1 or micro == cfg.accum - 1
                with (model.no_sync() if not sync and hasattr(model, "no_sync") else contextlib.nullcontext()):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.amp):
                        result = model(batch)
                    if not torch.isfinite(result.loss):
                        raise NonFiniteLossError(
                            f"non-finite loss ({result.loss.item()}) at step {step}; stopped before updating. "
                            f"The last good checkpoint is {last if last.exists() else 'none (none written yet)'}."
                        )
                    (result.loss / cfg.accum).backward()
                for k, v in result.logs.items():
                    logs[k] = logs.get(k, 0.0) + v / cfg.accum
            if cfg.clip_grad > 0:
                logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.clip_grad))
            optimizer.step()
            method.after_step(step, cfg.steps)
            step += 1
            bar.update()
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                rate = images * dist.world_size / max(now - tick, 1e-9)
                tick, images = now, 0
                logs |= {"lr": float(lrs[step - 1]), "images_per_s": rate}
                bar.set_postfix(loss=f"{logs.get('loss', math.nan):.4f}", img_s=f"{rate:.0f}")
                writer.write(step, logs)
            if step % cfg.save_every == 0 or step == cfg.steps:
                save()
        bar.close()
        writer.close()
        if dist.is_main and cfg.export:
            from vidssl.export import save_encoder

            save_encoder(method.encoder, out / "encoder.safetensors", metadata={"method": cfg.method, "steps": step})
        return out
    finally:
        shutdown_distributed()


def _is_views(value: object) -> bool:
    """Image views in a batch: uint8 (B, V, 3, H, W)."""
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim == 5 and value.shape[2] == 3


def _one_thread(worker_id: int) -> None:
    """Loader workers decode and augment one sample at a time; letting each also start a pool of
    intra-op threads oversubscribes the cores the training step needs."""
    torch.set_num_threads(1)


class _Logs:
    """JSONL and TensorBoard logs of the main process."""

    def __init__(self, out: Path, *, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.jsonl = (out / "log.jsonl").open("a")
            self.tb = SummaryWriter(str(out / "tb"))

    def write(self, step: int, logs: dict[str, float]) -> None:
        if self.enabled:
            self.jsonl.write(json.dumps({"step": step, **logs}) + "\n")
            self.jsonl.flush()
            for k, v in logs.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()
