"""Label-free validation during training (``vidssl train val_every=N``), and encoder snapshots.

Every ``val_every`` steps, at the start, at every ``snapshots`` step and at the end, the main
process scores the training encoder with the label-free scores of ``vidssl eval cycle``
(:mod:`vidssl.evaluation.cycle`) on ``val_videos`` videos of the training folder that the loader
held out (:func:`vidssl.data.index.held_out`): no labels, so a user training on their own videos
can see when correspondence stops improving and, with ``keep_best``, keep the encoder whose
``colour gain`` (with ``keep_best_by=cycle_J``: round-trip score) is highest
(``OUT/best/encoder.safetensors`` and ``OUT/best/best.json``; the round trip's ``cycle J`` is logged
beside it, but it did not follow learning on real clips). Scores go to ``OUT/val.jsonl`` and
TensorBoard (``val/colour_gain``, ``val/cycle_J``, ``val/cycle_accuracy``). A resumed run keeps
the rows and the best encoder up to the step it resumes from. Validation reads a copy of the
encoder and draws no random numbers: how often a run validates never changes its weights (holding
videos out does: ``val_every`` alone holds out 4, :func:`vidssl.engine.config.held_out_count`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vidssl.files import atomic_write_json

if TYPE_CHECKING:
    from vidssl.data.index import VideoInfo
    from vidssl.engine.config import TrainConfig
    from vidssl.models.encoders import Encoder

log = logging.getLogger(__name__)

SCORES = ("colour_gain", "cycle_J", "cycle_accuracy")  # the val.jsonl keys of a score


def _value(row: dict[str, Any], score: str) -> float:
    """``row``'s ``score``; -inf where it has none (a row of a run before the score existed, or a
    clip set where no colour changed)."""
    value = row.get(score)
    return float("-inf") if value is None else float(value)


def snapshot_path(out: Path, step: int) -> Path:
    """Where ``snapshots`` writes the encoder of ``step``."""
    return Path(out) / "snapshots" / f"step_{step:06d}.safetensors"


def _kept_rows(path: Path, step: int) -> list[str]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                if int(json.loads(line)["step"]) <= step:
                    rows.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a row cut short by a kill
    return rows


class Validator:
    """Scores the encoder when a step is due; writes ``val.jsonl`` and, with ``keep_best``, the best encoder."""

    def __init__(self, cfg: TrainConfig, out: Path, videos: list[VideoInfo], *, gray: bool, device: torch.device,
                 step: int, enabled: bool = True) -> None:
        from vidssl.files import atomic_write_text
        from vidssl.propagation.propagate import PropagationConfig

        self.cfg, self.out, self.videos, self.gray, self.device = cfg, Path(out), videos, gray, device
        self.enabled = enabled and cfg.val_every > 0
        self.settings = PropagationConfig(preset=cfg.val_preset, encoder="pixels", precision="float32")
        self.path = self.out / "val.jsonl"
        self.best_dir = self.out / "best"
        self.best: dict[str, Any] | None = None
        self.score = cfg.keep_best_by
        self.warned = False
        if not self.enabled:
            return
        kept = _kept_rows(self.path, step)  # the steps after a resumed checkpoint are trained (and scored) again
        if self.path.exists():
            atomic_write_text(self.path, "".join(f"{row}\n" for row in kept))
        record = self.best_dir / "best.json"
        if record.exists():
            try:
                best = json.loads(record.read_text())
                if best.get(self.score) is None:
                    log.warning("%s: chosen by another score than %s; the next score starts a new best", record,
                                self.score)
                elif int(best["step"]) <= step:
                    self.best = best
                else:
                    # kept after the checkpoint resumed from: the steps after it are trained again, bit for bit,
                    # so that encoder is found (and written) again; until then the bar is the best kept row
                    rows = [json.loads(r) for r in kept]
                    self.best = max(rows, key=lambda r: _value(r, self.score)) if rows else None
            except (ValueError, KeyError, TypeError):
                log.warning("%s: not a best-checkpoint record; the next score starts a new best", record)

    def due(self, step: int) -> bool:
        cfg = self.cfg
        return self.enabled and (step % cfg.val_every == 0 or step in cfg.snapshots or step == cfg.steps)

    def __call__(self, step: int, encoder: Encoder) -> dict[str, float]:
        """Score ``encoder`` at ``step``; returns what was logged (``colour_gain``, ``cycle_J``,
        ``cycle_accuracy``; a colour gain of None, no colour changed in the clips, is left out)."""
        from vidssl.evaluation.cycle import CycleConfig, encoder_extractor, score_videos

        cfg, clip = self.cfg, CycleConfig()  # eval cycle's clips, cut at the training's val_size
        start = time.perf_counter()
        extractor = encoder_extractor(encoder, self.settings, gray=self.gray, device=self.device)
        scores = score_videos(self.videos, extractor, self.settings, clips=clip.clips, frames=clip.frames,
                              gap=clip.gap, cells=clip.cells, size=cfg.val_size, backend=cfg.backend)
        row = {"step": step, "colour_gain": scores["colour gain"], "cycle_J": scores["cycle J"],
               "cycle_accuracy": scores["cycle accuracy"], "clips": scores["clips"],
               "seconds": round(time.perf_counter() - start, 1)}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        gain = "n/a" if row["colour_gain"] is None else f"{row['colour_gain']:.4f}"
        log.info("step %d: validation colour gain %s, cycle J %.4f (accuracy %.4f) on %d held-out clips, %.0f s",
                 step, gain, row["cycle_J"], row["cycle_accuracy"], row["clips"], row["seconds"])
        if cfg.keep_best and row[self.score] is None and not self.warned:
            self.warned = True
            log.warning("step %d: no colour changed in the held-out clips (gray videos?), so %s chooses nothing; "
                        "give keep_best_by=cycle_J", step, self.score)
        if cfg.keep_best and row[self.score] is not None and (
                self.best is None or _value(row, self.score) > _value(self.best, self.score)):
            from vidssl.export import save_encoder

            self.best_dir.mkdir(parents=True, exist_ok=True)
            save_encoder(encoder, self.best_dir / "encoder.safetensors",
                         metadata={"method": cfg.method, "steps": step, "input": "gray" if self.gray else "rgb",
                                   "why": f"best validation {self.score}"})
            self.best = {"step": step, "by": self.score, **{k: row[k] for k in SCORES}}
            atomic_write_json(self.best_dir / "best.json", self.best)
        return {k: row[k] for k in SCORES if row[k] is not None}
