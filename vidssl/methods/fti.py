"""Frame-temporal invariance (Purushwalkam & Gupta, 2020, arXiv:2007.13916), SimCLR and MoCo-v2.

Two frames of one video, ``min_gap..max_gap`` apart and each augmented independently (SimCLR /
MoCo-v2 recipe), are a positive pair; object-track crops (``positives=tracks|both``, see
:mod:`vidssl.data.pairs`) are the paper's second kind. ``loss=infonce`` is SimCLR's NT-Xent with
in-batch negatives gathered across DDP ranks (Chen et al. 2020, arXiv:2002.05709; temperature 0.1
[paper: 0.1 at batch 4096], 2-layer projection 2048 -> 128); ``loss=moco`` is MoCo-v2 (Chen et al.
2020, arXiv:2003.04297: momentum 0.999, queue 65536, temperature 0.2, MLP head 2048 -> 128; set
``temperature=0.2`` with it, as the ``fti_moco`` recipe does). The paper trained its FTI models
with MoCo-v2. With a gap of 0 the two losses are the image-level methods ``simclr`` and ``mocov2``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from vidssl.config import option
from vidssl.data.pairs import PairOptions
from vidssl.distributed import all_gather_no_grad
from vidssl.ema import EMA
from vidssl.losses.info_nce import info_nce, moco_loss
from vidssl.methods.base import PairMethod
from vidssl.models.encoders import Encoder
from vidssl.models.heads import projection_mlp


@dataclass(frozen=True)
class ContrastiveConfig(PairOptions):
    """Keys of every InfoNCE / MoCo method (besides the pair source)."""

    proj_hidden: int = option(2048, "projection head hidden width")
    proj_dim: int = option(128, "projection output dimension")
    temperature: float = option(0.1, "softmax temperature")


@dataclass(frozen=True)
class MoCoConfig(ContrastiveConfig):
    """Keys of MoCo-v2's momentum encoder and queue."""

    queue_size: int = option(65536, "MoCo queue length (negatives kept from earlier batches)")
    moco_momentum: float = option(0.999, "MoCo key-encoder EMA momentum")


class FTI(PairMethod):
    """Positive pairs (frames, track crops or both) with an InfoNCE or a MoCo loss.

    Config (:class:`FTI.Config`): the pair source, ``loss``, the projection widths, ``temperature``
    and MoCo's ``queue_size`` / ``moco_momentum``. ``pair_loss`` takes (B, 2, 3, H, W).
    """

    @dataclass(frozen=True)
    class Config(MoCoConfig):
        loss: Literal["infonce", "moco"] = option(
            "infonce", "infonce (SimCLR NT-Xent, in-batch negatives) | moco (MoCo-v2 momentum encoder and queue; "
            "MoCo-v2 uses temperature=0.2)"
        )

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        if self.loss not in ("infonce", "moco"):
            raise ValueError(f"loss must be infonce or moco, got {self.loss!r}")
        self.head = projection_mlp(encoder.out_dim, cfg.proj_hidden, cfg.proj_dim)
        if self.loss == "moco":
            self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.key_head = copy.deepcopy(self.head).requires_grad_(False)
            self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def loss(self) -> str:
        return self.cfg.loss

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        keys = {f.name for f in dataclasses.fields(cls.Config)}  # SimCLR has no queue
        return {k: v for k, v in {"proj_hidden": 32, "proj_dim": 16, "queue_size": 8}.items() if k in keys}

    def pair_loss(self, pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``pairs``: (B, 2, 3, H, W), positives along dim 1."""
        a, b = self.normalize(pairs[:, 0]), self.normalize(pairs[:, 1])
        if self.loss == "infonce":
            z = self.head(self.encoder(torch.cat([a, b])))
            ids = torch.arange(len(a), device=z.device).repeat(2)
            return info_nce(z, ids, temperature=self.cfg.temperature), {}
        q = self.head(self.encoder(a))
        with torch.no_grad():
            k = self.key_head(self.key_encoder(b))
        loss = moco_loss(q, k, self.queue, temperature=self.cfg.temperature)
        self._enqueue(F.normalize(k.float(), dim=1))
        return loss, {}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = all_gather_no_grad(keys)
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % len(self.queue)
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % len(self.queue))

    def ema(self) -> EMA | None:
        if self.loss != "moco":
            return None
        return EMA([(self.key_encoder, self.encoder), (self.key_head, self.head)], self.cfg.moco_momentum)


class SimCLR(FTI):
    """SimCLR (Chen et al. 2020, arXiv:2002.05709): InfoNCE on two augmentations of one frame
    (``max_gap=0``); a larger gap or track positives make it FTI with InfoNCE."""

    @dataclass(frozen=True)
    class Config(ContrastiveConfig):
        max_gap: float = option(0, "largest gap between the frames of a pair (0: two views of one frame)")
        loss: ClassVar[str] = "infonce"  # fixed: not a key


class MoCoV2(FTI):
    """MoCo-v2 (Chen et al. 2020, arXiv:2003.04297): a momentum key encoder and a queue of negatives,
    on two augmentations of one frame (``max_gap=0``)."""

    @dataclass(frozen=True)
    class Config(MoCoConfig):
        max_gap: float = option(0, "largest gap between the frames of a pair (0: two views of one frame)")
        temperature: float = option(0.2, "softmax temperature (MoCo-v2: 0.2)")
        loss: ClassVar[str] = "moco"  # fixed: not a key
