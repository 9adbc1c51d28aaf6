"""What every method is: an encoder plus heads that turn a batch into a loss.

A method is one class in one file, registered by one line in ``vidssl.methods.METHODS``. The class
carries everything about the method:

* ``Config``: a frozen dataclass of :func:`vidssl.config.option` fields, the method's own keys
  (no prefixes; ``vidssl train method=NAME --help`` lists them, ``config.yaml`` stores them under
  ``method:``). The engine never reads them.
* ``train_defaults``: engine keys whose default differs for this method (``encoder_stride=8``).
* ``saved_defaults``: for keys added after a release, the value a config saved without them meant
  (the behaviour of that release), so a resumed or re-read old run keeps training as it did.
* :meth:`smoke`: keys for a one-step run on tiny synthetic videos (the registry test uses it).
* :meth:`data`: what it needs from the loader (a :class:`~vidssl.data.spec.DataSpec`, composed of
  data-layer samplers, view recipes and pair sources).
* :meth:`ema`: which modules are EMA copies of which (the trainer updates them).

Methods receive a built encoder (composition: at most this one base class, plus
:class:`PairMethod` for two-view methods). Each step returns a :class:`StepOutput`. State that must
survive a resume (queues, EMA copies, centres, draw counters) lives in the method as parameters or
buffers, so the checkpoint's ``state_dict`` holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from vidssl.data.datasets import sample_seed
from vidssl.data.pairs import PairOptions, check_pairs, pair_data
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import normalize
from vidssl.distributed import rank
from vidssl.ema import EMA
from vidssl.models.encoders import Encoder


@dataclass(frozen=True)
class MethodConfig:
    """A method without keys of its own; every ``Config`` derives from this."""


@dataclass
class StepOutput:
    """The loss to minimise and scalars worth logging."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class Method(nn.Module):
    """Base class: ``encoder`` is the shared image encoder that export writes out.

    Args:
        encoder: the shared encoder (:class:`~vidssl.models.encoders.Encoder`).
        cfg: the method's ``Config`` (its defaults when None).
        image_size: side of the square views the encoder sees (the run's ``image_size``).
        seed: the run's seed, for random choices a method draws itself.
    """

    Config: ClassVar[type] = MethodConfig
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: Keys a saved config (``config.yaml``, a checkpoint) may lack because it predates them, with the
    #: value that reproduces what such a run did (the new default may differ: CRW's padding).
    saved_defaults: ClassVar[dict[str, Any]] = {}
    #: What the trained encoder reads: ``rgb``, or ``gray`` (the Lab lightness in all three
    #: channels, :func:`vidssl.models.color.gray_input`). Exports record it, and propagation's
    #: ``input=auto`` follows it (:func:`vidssl.features.encoder_input`).
    input: ClassVar[str] = "rgb"

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.cfg = self.Config() if cfg is None else cfg
        if not isinstance(self.cfg, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__qualname__}, got {type(cfg).__name__}")
        self.image_size, self.seed = image_size, seed

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        """Method keys for a one-step run at ``image_size=48`` on videos of 24 frames (tests)."""
        return {}

    def data(self) -> DataSpec:
        """What this method needs from the loader."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        """``batch``: the loader's sample dict on the training device; image views (the
        ``DataSpec.views`` keys and any key a view recipe adds) are uint8 (B, V, 3, H, W), or float
        in [0, 1] after the device colour pass: pass them through :meth:`normalize`."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> StepOutput:
        """So that DistributedDataParallel (which hooks ``forward``) sees every step."""
        return self.training_step(batch)

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] or float [0, 1] (..., 3, H, W) -> float, ImageNet-normalized: what
        every encoder (and its torchvision export) expects."""
        return normalize(images)

    def ema(self) -> EMA | None:
        """The EMA copies this method keeps (the trainer updates them after every optimizer step)."""
        return None

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step and EMA update (schedules kept in buffers); nothing
        by default."""

    @torch.no_grad()
    def prepare(self, dataset: Dataset) -> None:
        """Called once before the first step of a fresh run (not on resume: the checkpoint holds
        whatever this computes) with the training dataset, e.g. to fit colour clusters on a sample
        of frames. Every DDP rank calls it on the same samples, so the results agree. Nothing by
        default."""

    # Random choices a method draws on the device (pretext tasks): one stream per micro-batch and
    # rank, counted in a buffer so a resumed run draws what the uninterrupted run would have.
    def register_draw_counter(self) -> None:
        """Add the ``draws`` buffer that :meth:`draw_generator` counts with."""
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))

    def draw_generator(self, device: torch.device) -> torch.Generator:
        """The random stream of this micro-batch on this rank: seeded by (seed, micro-batches drawn
        so far, DDP rank)."""
        seed = sample_seed(self.seed, int(self.draws), rank())
        self.draws += 1
        return torch.Generator(device).manual_seed(seed)


class PairMethod(Method):
    """A method trained on positive pairs (two views per sample), from any pair source.

    Subclasses implement :meth:`pair_loss` on one batch of pairs; this class adds the pair source
    (:class:`~vidssl.data.pairs.PairOptions`: frame pairs, object-track crop pairs, or both) and, for
    ``positives=both``, the weighted sum ``frame_weight * L(frames) + track_weight * L(crops)``
    (Purushwalkam & Gupta 2020), logging both parts. Their ``Config`` derives from ``PairOptions``.
    """

    Config: ClassVar[type] = PairOptions

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        check_pairs(self.cfg)  # a bad pair source fails before any data is read

    def pair_loss(self, pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``pairs``: (B, 2, 3, H, W) views, positives along dim 1 -> (loss, logs)."""
        raise NotImplementedError

    def views(self) -> Any:
        """A view recipe for both views (:mod:`vidssl.data.views`), or None for the trainer's
        symmetric default."""
        return None

    def data(self) -> DataSpec:
        return pair_data(self.cfg, transform=self.views())

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        loss, logs = self.pair_loss(batch["frames"])
        if "crops" not in batch:
            return StepOutput(loss, {"loss": loss.item(), **logs})
        track_loss, _ = self.pair_loss(batch["crops"])
        total = self.cfg.frame_weight * loss + self.cfg.track_weight * track_loss
        return StepOutput(total, {**logs, "loss": total.item(), "frame_loss": loss.item(),
                                  "track_loss": track_loss.item()})
