"""The one training loop: any method, CPU or CUDA, one process or many under torchrun.

    vidssl train [data=DIR] method=fti encoder=resnet18 steps=1000 batch_size=64 out=runs/fti

Building the run (:func:`build_run`: encoder, method, optimizer) is separate from the loop
(:func:`train`), and so is the data pipeline (:func:`vidssl.data.pipeline.build_loader`: index,
dataset, loader, device colour augmentation). Per step: ``accum`` micro-batches (bf16 autocast
and channels_last on CUDA), gradient clipping, an optimizer step with the scheduled learning
rate, then the EMA copies the method declares (:meth:`~vidssl.methods.base.Method.ema`) and its
``after_step``. Samples are a function of (seed, sample number), so resuming at step s continues
with the very samples the uninterrupted run would have drawn, and the global RNG is reseeded from
(seed, step, rank) at every step, so draws inside a step repeat too; the checkpoint holds model,
optimizer and step.
A non-finite loss stops the run before the update, keeping the last good checkpoint.

The run folder is safe by construction (:func:`_open_run`, :mod:`vidssl.engine.run_folder`):
training into a folder that holds a run is refused unless ``resume=true`` (continue it) or
``overwrite=true`` (replace it), and a folder vidssl did not write is never trained into or
cleared; one process trains in a folder at a time (a lock); the folder given is the run folder
wherever it was created (copies and moves resume in place); a resumed run goes to its own
``steps`` unless ``steps=`` extends it, and a finished one changes nothing; ``log.jsonl`` and
TensorBoard are cut back to the checkpoint's step; two checkpoints are kept (``last.pt``,
``previous.pt``) and the newest readable one is resumed; temporary files of killed writes are
removed. SIGTERM or SIGINT finishes the step, writes a checkpoint and raises
:class:`~vidssl.engine.run_folder.TrainingStopped` (the CLI exits 143 / 130).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from vidssl.config import ConfigError
from vidssl.data.datasets import sample_seed
from vidssl.data.pipeline import build_loader, training_folder
from vidssl.device import resolve_device
from vidssl.distributed import init_distributed, shutdown_distributed
from vidssl.ema import ema_update, momentum_at
from vidssl.engine.checkpoint import keep_previous, load_latest, save_checkpoint
from vidssl.engine.config import (
    TrainConfig,
    check_run,
    config_dict,
    held_out_count,
    load_run_config,
    method_class,
    run_config,
)
from vidssl.engine.optim import build_optimizer
from vidssl.engine.run_folder import (
    GracefulStop,
    RunLock,
    TrainingStopped,
    check_folder,
    clear_run,
    has_checkpoint,
    holds_run,
    mark,
    run_files,
)
from vidssl.engine.schedules import cosine_schedule
from vidssl.engine.validation import Validator, snapshot_path
from vidssl.files import atomic_write_text, stale_partials
from vidssl.methods.base import Method

log = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "TrainConfig", "TrainingStopped", "build_run", "run_config", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops before the update."""


def _resume_config(cfg: TrainConfig, method_cfg: Any) -> tuple[TrainConfig, Any]:
    """On resume, the run's saved settings win, except ``steps`` (a run may be extended) and where
    the run folder is (``out``, ``resume``: a copied or moved run resumes where it now is)."""
    out = Path(cfg.out)
    saved = out / "config.yaml"
    if not cfg.resume or not saved.exists():
        return cfg, method_cfg
    if not has_checkpoint(out):  # a start that never reached a checkpoint: nothing of it to keep
        log.warning("resume: %s holds no checkpoint yet; starting with the settings given", out)
        return cfg, method_cfg
    train_saved, method_saved = load_run_config(saved)
    resumed = dataclasses.replace(train_saved, steps=cfg.steps, out=cfg.out, resume=True, overwrite=False)
    changed = [f.name for f in dataclasses.fields(resumed) if getattr(resumed, f.name) != getattr(cfg, f.name)]
    if train_saved.method == cfg.method:
        changed += [f.name for f in dataclasses.fields(method_saved)
                    if getattr(method_saved, f.name) != getattr(method_cfg, f.name)]
    if changed:
        log.warning("resume: keeping the run's saved settings for %s", ", ".join(changed))
    return resumed, method_saved


def _open_run(cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: a fresh run), after the run-folder rules
    (:func:`vidssl.engine.run_folder.check_folder`).

    Raises:
        ConfigError: ``out`` is a file or holds files vidssl did not write, holds a run and neither
            ``resume`` nor ``overwrite`` is set, or ``steps`` is below the checkpoint's step.
        ValueError: checkpoints exist but none can be read.
    """
    out = Path(cfg.out)
    check_folder(out, resume=cfg.resume, overwrite=cfg.overwrite)
    if not cfg.resume:
        return None
    found = load_latest(out / "checkpoints", map_location="cpu")
    if found is None:
        if not run_files(out):
            log.warning("resume: %s holds no run; starting a new one", out)
        return None
    state, _ = found
    step = int(state["step"])
    if step > cfg.steps:
        raise ConfigError(f"{out}: the run is at step {step}, past steps={cfg.steps}; a run cannot be shortened "
                          f"(give steps={step} or more, or resume without steps=)")
    saved = state.get("config", {})
    saved_steps = (saved.get("train", saved) if isinstance(saved, dict) else {}).get("steps")
    if isinstance(saved_steps, int) and cfg.steps > saved_steps:
        log.warning("resume: extending %s from %d to %d steps (the learning-rate schedule is recomputed over %d)",
                    out, saved_steps, cfg.steps, cfg.steps)
    return state


def _truncate_log(path: Path, step: int) -> None:
    """Keep the rows of ``log.jsonl`` up to ``step`` (the checkpoint being resumed): the steps after
    it are trained again and logged again, and a row cut short by a kill is dropped."""
    if not path.exists():
        return
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            dropped += 1
            continue
        if isinstance(row_step, int) and row_step <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))
        log.info("%s: dropped %d rows after step %d (trained again now)", path, dropped, step)


def build_run(cfg: TrainConfig, method_cfg: Any, device: torch.device) -> tuple[Method, torch.optim.Optimizer]:
    """The method (encoder and heads, seeded by ``cfg.seed`` so every rank starts alike) on
    ``device``, and its optimizer."""
    from vidssl.models.encoders import build_encoder

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    try:
        encoder = build_encoder(cfg.encoder, stride=cfg.encoder_stride, weights=cfg.weights or None)
    except Exception as err:
        if not cfg.weights or str(cfg.weights) in str(err):
            raise
        # safetensors / torch raise their own types for a damaged file, without its name
        raise ValueError(f"weights={cfg.weights}: cannot load ({type(err).__name__}: {err})") from err
    method = method_class(cfg.method)(encoder, method_cfg, image_size=cfg.image_size, seed=cfg.seed)
    method.to(device)
    if device.type == "cuda" and cfg.channels_last:
        method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, method, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                decay_all=cfg.weight_decay_all)
    return method, optimizer


def train(cfg: TrainConfig, method_cfg: Any = None) -> Path:
    """Train ``cfg.method`` with its config ``method_cfg`` (its defaults when None) and return the
    run folder (see module docstring)."""
    cls = method_class(cfg.method)
    method_cfg = cls.Config() if method_cfg is None else method_cfg
    if not isinstance(method_cfg, cls.Config):
        raise ConfigError(f"method={cfg.method} takes a {cls.__name__}.Config, got {type(method_cfg).__name__}")
    check_run(cfg, method_cfg)
    cfg, method_cfg = _resume_config(cfg, method_cfg)
    out = Path(cfg.out)
    state = _open_run(cfg)  # before any process group or file: a refusal leaves everything as it was
    if state is not None and int(state["step"]) == cfg.steps:
        log.info("%s: the run is finished (step %d of %d); nothing to do (give steps= to extend it)",
                 out, cfg.steps, cfg.steps)
        return out
    probe_device = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    dist = init_distributed(probe_device)
    device = resolve_device(cfg.device, local_rank=dist.local_rank)
    cuda = device.type == "cuda"
    ckpt_dir = out / "checkpoints"
    last, previous = ckpt_dir / "last.pt", ckpt_dir / "previous.pt"
    saved_config = config_dict(cfg, method_cfg)
    step = int(state["step"]) if state is not None else 0
    bar: tqdm | None = None
    writer: _Logs | None = None
    lock = RunLock(out)
    stop = GracefulStop()
    try:
        if dist.is_main:
            lock.acquire()  # before anything in the folder is written or removed
            if state is None and run_files(out):  # overwrite=true, or a start that never checkpointed
                clear_run(out, why="overwrite" if holds_run(out) else "a start that never reached a checkpoint")
            out.mkdir(parents=True, exist_ok=True)
            mark(out)
            for folder in (out, ckpt_dir):
                for stale in stale_partials(folder):  # left by a killed write (kill -9 runs no cleanup)
                    log.info("removing %s, left by an interrupted write", stale)
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            atomic_write_text(out / "config.yaml", yaml.safe_dump(saved_config, sort_keys=False))
            _truncate_log(out / "log.jsonl", step)
        method, optimizer = build_run(cfg, method_cfg, device)
        spec = method.data()
        ema = method.ema()
        lrs = cosine_schedule(cfg.lr, cfg.min_lr, cfg.steps, warmup_steps=cfg.warmup_steps)

        if state is not None:
            method.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            log.info("resumed %s at step %d of %d", out, step, cfg.steps)
            del state

        model: torch.nn.Module = method
        if dist.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(method, device_ids=[device.index] if cuda else None)
        if cfg.compile:
            model = torch.compile(model)

        data = build_loader(
            data=training_folder(cfg.data, out, dist=dist), spec=spec, device=device, dist=dist,
            images=cfg.data_kind == "images", backend=cfg.backend, decode_size=cfg.decode_size,
            image_size=cfg.image_size, color_on=cfg.color_on, batch_size=cfg.batch_size, accum=cfg.accum,
            workers=cfg.workers, seed=cfg.seed, first_step=step, steps=cfg.steps,
            hold_out=held_out_count(cfg))
        if step == 0:
            method.prepare(data.dataset)
        writer = _Logs(out, enabled=dist.is_main, purge_step=step + 1 if step else None)
        validate = Validator(cfg, out, data.held_out, gray=method.input == "gray", device=device, step=step,
                             enabled=dist.is_main)
        if step == 0 and validate.due(0):
            writer.write(0, validate(0, method.encoder), prefix="val")
        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.method}", unit="step", disable=not dist.is_main,
                   dynamic_ncols=True)
        batches = iter(data.loader)
        images = 0  # frames seen by the encoder on this process since the last log
        tick = time.perf_counter()

        saved_step = step

        def save() -> None:
            nonlocal saved_step
            if dist.is_main:
                keep_previous(last, previous)
                save_checkpoint({"model": method.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                 "config": saved_config, "encoder": method.encoder.config}, last)
            saved_step = step

        stop.install()  # from here a signal ends the run at a step boundary, with a checkpoint
        while step < cfg.steps:
            # Random draws inside a step (dropout, masks, a method's choices) come from a stream
            # per (seed, step, rank): a resumed run repeats them exactly, and ranks differ.
            torch.manual_seed(sample_seed(cfg.seed, step, -1 - dist.rank))
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[step])
            optimizer.zero_grad(set_to_none=True)
            logs: dict[str, float] = {}
            for micro in range(cfg.accum):
                try:
                    batch = next(batches)
                except Exception:
                    if stop.signum is None:
                        raise
                    # Ctrl-C reached the loader workers too: this step is not taken; the one before is saved
                    if step != saved_step:
                        save()
                    raise TrainingStopped(stop.signum, step, last if last.exists() else None) from None

                images += data.images_in(batch)
                batch = data.to_device(batch, step=step, micro=micro)
                sync = dist.world_size == 1 or micro == cfg.accum - 1
                with model.no_sync() if not sync and hasattr(model, "no_sync") else contextlib.nullcontext():
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
            if ema is not None:
                ema_update(ema.pairs, momentum_at(ema.momentum, ema.schedule, step, cfg.steps))
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
            if dist.is_main and step in cfg.snapshots:
                from vidssl.export import save_encoder

                save_encoder(method.encoder, snapshot_path(out, step),
                             metadata={"method": cfg.method, "steps": step, "input": method.input})
            if validate.due(step):
                writer.write(step, validate(step, method.encoder), prefix="val")
            if step % cfg.save_every == 0 or step == cfg.steps:
                save()
            signum = stop.requested(distributed=dist.world_size > 1, device=device)
            if signum is not None and step < cfg.steps:
                if step != saved_step:
                    save()
                raise TrainingStopped(signum, step, last if last.exists() else None)
        if dist.is_main and cfg.export:
            from vidssl.export import save_encoder

            metadata = {"method": cfg.method, "steps": step, "input": method.input}
            save_encoder(method.encoder, out / "encoder.safetensors", metadata=metadata)
        return out
    finally:
        stop.restore()
        if bar is not None:  # ends the progress line, so an error message starts a line of its own
            bar.close()
        if writer is not None:
            writer.close()
        lock.release()
        shutdown_distributed()


class _Logs:
    """JSONL and TensorBoard logs of the main process."""

    def __init__(self, out: Path, *, enabled: bool, purge_step: int | None = None) -> None:
        self.enabled = enabled
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.jsonl = (out / "log.jsonl").open("a")
            # purge_step: TensorBoard drops what an interrupted session logged from this step on
            self.tb = SummaryWriter(str(out / "tb"), purge_step=purge_step)

    def write(self, step: int, logs: dict[str, float], *, prefix: str = "train") -> None:
        """Training logs go to log.jsonl and TensorBoard's ``train/``; others (``val``: the
        validation's own val.jsonl) to TensorBoard only."""
        if self.enabled:
            if prefix == "train":
                self.jsonl.write(json.dumps({"step": step, **logs}) + "\n")
                self.jsonl.flush()
            for k, v in logs.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()
