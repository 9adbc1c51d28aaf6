"""DINO: self-distillation with no labels (Caron et al., DINO, 2021, arXiv:2104.14294).

A student (encoder + DINO head) is trained to output, for every crop of an image, the probability
distribution that a teacher (an EMA of the student, never trained by gradient) gives for another
global crop of it. The teacher's outputs are centred (a running mean subtracted) and sharpened (a
low temperature); together they avoid collapse without negatives or a predictor (Sec. 3.1).

Defaults follow the paper and its code (Sec. 3, App. and ``main_dino.py``):
    multi-crop: 2 global crops of ``image_size`` (224), scale 0.4-1, and ``local_crops`` (8)
        local crops of ``local_size`` (default image_size * 96 / 224, i.e. 96 at 224), scale
        0.05-0.4 (``global_scale``, ``local_scale``); BYOL's colour augmentation, blur
        p 1.0 / 0.1 / 0.5 and solarization p 0 / 0.2 / 0 for global 1 / global 2 / locals
    head: MLP 2048 - GELU - 2048 - GELU - 256, L2 norm, weight-normalized linear to 65536 with
        the norm fixed (``hidden``, ``bottleneck``, ``out_dim``,
        ``norm_last_layer``); a smaller ``out_dim`` is fine for small data
    temperatures: student 0.1; teacher linearly 0.04 -> 0.07 over the first 30 epochs, here a
        fraction of the run, 0.1 (30 of the paper's 300 ViT-S epochs), then constant
        (``student_temp``, ``warmup_teacher_temp``, ``teacher_temp``,
        ``teacher_temp_warmup``)
    centre momentum 0.9 (``center_momentum``); teacher EMA 0.996 -> 1 on a cosine schedule
        (``momentum``); last layer frozen for the first epoch, here the first 1% of the steps
        (``freeze_last_layer``)
Optimisation is the trainer's. ViT recipe of the paper: AdamW, lr 5e-4 * B / 256 with 10 warm-up
epochs, min lr 1e-6, weight decay 0.04 -> 0.4 (cosine), gradient clipping 3.0, batch 1024 ->
``optimizer=adamw lr=<5e-4*B/256> warmup_steps=<10 epochs> min_lr=1e-6 weight_decay=0.04
clip_grad=3.0 encoder=vit_small encoder_stride=16``. Deviations: the trainer's weight decay is
constant (no 0.04 -> 0.4 schedule), and torchvision's ViT has no stochastic depth (the paper's
drop-path 0.1). The DINO README's ResNet-50 recipe is SGD, lr 0.03, weight decay 1e-4, global
scale 0.14-1, local scale 0.05-0.14 (``optimizer=sgd lr=0.03 global_scale=(0.14,1)
local_scale=(0.05,0.14)``).

Logged every step: ``loss`` = ``teacher_entropy`` + ``kl`` (the decomposition of DINO Fig. 7:
both collapse modes drive ``kl`` to 0; a one-hot teacher drives ``teacher_entropy`` to 0, a uniform
one to log(out_dim)), ``teacher_temp``, and ``embed_std`` / ``embed_std_ratio``
(:func:`~vidssl.losses.similarity.embedding_std` of the student's L2-normalized bottleneck
embedding of the first global crop).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from vidssl.config import option
from vidssl.data.samplers import ClipSampler
from vidssl.data.spec import DataSpec
from vidssl.data.views import MultiCrop
from vidssl.distributed import all_gather_no_grad
from vidssl.ema import EMA
from vidssl.losses.dino import dino_loss, entropy, teacher_probabilities
from vidssl.losses.similarity import embedding_std
from vidssl.methods.base import Method, StepOutput
from vidssl.models.encoders import Encoder
from vidssl.models.heads import DINOHead


class DINO(Method):
    """Student encoder + DINO head; EMA teacher; centred, sharpened teacher targets.

    Config (:class:`DINO.Config`): the :class:`~vidssl.models.heads.DINOHead` (``out_dim``,
    ``hidden``, ``bottleneck``, ``norm_last_layer``); multi-crop (``local_crops``, ``local_size``,
    ``global_scale``, ``local_scale``); tau_s ``student_temp``; tau_t ``teacher_temp`` after a
    warm-up that starts at ``warmup_teacher_temp`` and lasts ``teacher_temp_warmup`` (fraction of
    the run); ``center_momentum``; base teacher EMA ``momentum`` (-> 1, cosine);
    ``freeze_last_layer``: fraction of the run during which the head's last layer gets no update.

    ``training_step`` takes ``batch["frames"]``: (B, 2, 3, G, G) global crops and, optionally,
    ``batch["local"]``: (B, N, 3, L, L) local crops. The centre and the run's progress are
    buffers, so checkpoints resume the schedules exactly.
    """

    @dataclass(frozen=True)
    class Config:
        out_dim: int = option(65536, "head output dimension K (paper: 65536; smaller is fine for small data)")
        hidden: int = option(2048, "head MLP hidden width (paper: 2048)")
        bottleneck: int = option(256, "head bottleneck width (paper: 256)")
        norm_last_layer: bool = option(True, "fix the norm of the head's weight-normalized last layer (paper: true)")
        local_crops: int = option(8, "local crops per image (paper code: 8)")
        local_size: int | None = option(None, "local crop size (default: image_size * 96 / 224, 96 at 224)")
        global_scale: tuple[float, float] = option((0.4, 1.0), "area range of the global crops (paper: 0.4-1)")
        local_scale: tuple[float, float] = option((0.05, 0.4), "area range of the local crops (paper: 0.05-0.4)")
        student_temp: float = option(0.1, "student temperature (paper: 0.1)")
        teacher_temp: float = option(0.07, "teacher temperature after the warm-up (paper: 0.07)")
        warmup_teacher_temp: float = option(0.04, "teacher temperature at step 0 (paper: 0.04)")
        teacher_temp_warmup: float = option(
            0.1, "fraction of the run warming the teacher temperature up (paper: 30 of 300 epochs)"
        )
        center_momentum: float = option(0.9, "EMA rate of the teacher centre (paper: 0.9)")
        momentum: float = option(0.996, "base teacher momentum, raised to 1 on a cosine schedule (paper 0.996)")
        freeze_last_layer: float = option(0.01, "fraction of the run with the last head layer frozen (paper: 1 epoch)")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        self.head = DINOHead(encoder.out_dim, out_dim=cfg.out_dim, hidden_dim=cfg.hidden, bottleneck_dim=cfg.bottleneck,
                             norm_last_layer=cfg.norm_last_layer)
        self.teacher_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(cfg.out_dim))
        self.register_buffer("progress", torch.zeros(()))  # steps done / total steps

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"out_dim": 64, "hidden": 32, "bottleneck": 16, "local_crops": 2}

    def data(self) -> DataSpec:
        """Multi-crop views of one frame (the crops do their own colour augmentation)."""
        cfg = self.cfg
        crops = MultiCrop(global_size=self.image_size, local_size=cfg.local_size or round(self.image_size * 96 / 224),
                          local_crops=cfg.local_crops, global_scale=tuple(cfg.global_scale),
                          local_scale=tuple(cfg.local_scale))
        return DataSpec(ClipSampler(length=1), transform=crops, views=("frames", "local"))

    def current_teacher_temp(self) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``, then constant."""
        cfg, done = self.cfg, float(self.progress)
        if cfg.teacher_temp_warmup <= 0 or done >= cfg.teacher_temp_warmup:
            return cfg.teacher_temp
        start, end = cfg.warmup_teacher_temp, cfg.teacher_temp
        return start + done / cfg.teacher_temp_warmup * (end - start)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        globals_ = self.normalize(batch["frames"])  # (B, G, 3, H, W)
        b, g = globals_.shape[:2]
        globals_ = globals_.transpose(0, 1).flatten(0, 1)  # (G * B, 3, H, W), view-major
        # One encoder pass per resolution (DINO's MultiCropWrapper), one head pass for all crops.
        pooled = [self.encoder(globals_)]
        if "local" in batch:
            pooled.append(self.encoder(self.normalize(batch["local"]).transpose(0, 1).flatten(0, 1)))
        frozen = float(self.progress) < self.cfg.freeze_last_layer
        logits, embedding = self.head(torch.cat(pooled), freeze_last_layer=frozen)
        student = logits.view(-1, b, logits.shape[-1])  # (V, B, K): globals first
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_encoder(globals_))[0].view(g, b, -1)  # (G, B, K)
        temp = self.current_teacher_temp()
        loss = dino_loss(student, teacher, self.center, student_temp=self.cfg.student_temp, teacher_temp=temp)
        with torch.no_grad():
            teacher_entropy = float(entropy(teacher_probabilities(teacher, self.center, temperature=temp)))
            self._update_center(teacher)
        std = embedding_std(embedding[:b])
        return StepOutput(loss, {
            "loss": loss.item(), "teacher_entropy": teacher_entropy, "kl": loss.item() - teacher_entropy,
            "teacher_temp": temp, "embed_std": std, "embed_std_ratio": std * math.sqrt(embedding.shape[1]),
        })

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        """centre <- m * centre + (1 - m) * mean teacher logits of this step over all ranks (Eq. 4)."""
        batch_center = all_gather_no_grad(teacher.float().mean(dim=(0, 1))[None]).mean(0)
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(batch_center, alpha=1 - m)

    def ema(self) -> EMA:
        pairs = [(self.teacher_encoder, self.encoder), (self.teacher_head, self.head)]
        return EMA(pairs, self.cfg.momentum, "cosine")

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        self.progress.fill_((step + 1) / max(1, total_steps))
