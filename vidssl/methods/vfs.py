"""Video frame-level similarity (VFS: Xu & Wang, "Rethinking Self-supervised Correspondence
Learning: A Video Frame-level Similarity Perspective", ICCV 2021, arXiv:2103.17263).

Frames of one video, far apart in time and each augmented on its own, are the views of a
negative-free image-level method: SimSiam's predictor and stop-gradient (``loss=simsiam``, the
released models) or BYOL's EMA target (``loss=byol``). The loss sees pooled frame features only,
yet the paper finds that fine-grained correspondence emerges in the earlier stage: train on res5
(``layer4``, the encoder's pooled output), propagate labels with res4 in the paper's counting,
torchvision's ``layer3`` rebuilt at stride 8, as the released evaluation (``vidssl eval davis ...
preset=vfs``, i.e. ``layer=res3``).

``method=vfs`` is the released ``configs/r18_nc_sgd_cos_100e_r2_1xNx8_k400.py`` (ResNet-18, "nc":
no colour augmentation; J&F 66.7 on DAVIS-2017 after 100 epochs of Kinetics-400), rule by rule
(recipe ``vfs.yaml``; ``tests/methods/test_vfs_released.py`` re-states each rule and checks it):

* frames (``sampling=halves``, :func:`vidssl.data.samplers.halves`): one random frame in each of
  8 equal segments of the whole video (mmaction's ``SampleFrames(clip_len=1, frame_interval=0,
  num_clips=8)``, training offsets, ``loop``), then ``Clip2Frame(clip_len=4)``: the first 4 frames
  are one clip, the last 4 the other, so every pair has one frame from each half of the video.
  ``sampling=gap`` takes two frames ``min_gap``..``max_gap`` apart instead (uniform gap);
* pairs per video (``frames_per_half=4``, the released ``intra_video=True``): the 4 x 4 cross
  pairs of the two clips, their losses averaged (``forward_img_head``: 4 rolled groups of 4
  pairs, each a mean weighted 1/4, summed). ``frames_per_half=1`` keeps one random frame of each
  half: one of those 16 pairs at random (the same pair distribution) for a quarter of the frames;
  ``batch_size`` counts videos either way, each giving ``2 * frames_per_half`` frames;
* views: random resized crop (area 0.2-1) to 224, flip, each frame independently; no colour
  jitter, grayscale or blur (``color=false``; ``color=true`` adds the SimCLR recipe, as the
  released non-"nc" configs do);
* head (``SimSiamHead``): projector ``Linear - BN - ReLU`` twice then ``Linear - BN``, all 512
  wide (``proj_dim``), every Linear with a bias and the last BN affine (learnable scale and
  shift, unlike SimSiam's paper head); predictor ``Linear 512 -> 128 - BN - ReLU - Linear 128 ->
  512`` (``pred_hidden``), with biases. Each clip (all first-half frames, then all second-half
  frames) is one forward, so BatchNorm statistics are per half, as released;
* loss (``CosineSimLoss(negative=False)``): ``2 - 2 cos(p, sg(z))`` per pair, symmetric with
  weights 1/2, averaged over samples and pairs (:func:`vfs_loss`), in [0, 4]. SimSiam's ``-cos``
  has half its gradient: at the same lr, ``method=simsiam`` takes half the released step. (SGD
  with ``-cos``, lr 0.1 and weight decay 5e-5 would take the same steps; the loss itself is
  released instead, so ``lr``, ``weight_decay`` and the logged loss read as the release's);
* backbone: ``zero_init_residual`` (each residual block's last BN scale starts at 0) on a freshly
  built ResNet (encoder weights given with ``weights=`` are left as they are);
* optimiser: SGD lr 0.05, momentum 0.9, weight decay 1e-4 on every parameter, biases and BN
  included (mmcv's default constructor: ``weight_decay_all=true``, this method's default), cosine
  to 0 per iteration without warmup, batch 32 videos per GPU on 2 GPUs (the README: "2 and 8 GPUs
  for ResNet-18 and ResNet-50"; "1xNx8" in the config's name is mmaction's clip_len x
  frame_interval x num_clips): ``batch_size=64`` on one process, 100 epochs of Kinetics-400
  repeated twice (``RepeatDataset(times=2)``: about 750k steps for 240k videos).

BYOL (``loss=byol``; VFS released no BYOL config): BYOL's projector 512 -> 512 (``proj_hidden``,
``proj_dim``), predictor 128, EMA target from ``momentum`` 0.996 to 1 (cosine), BYOL's summed
``2 - 2 cos`` loss averaged over the same cross pairs.

Deviations that remain:

* BatchNorm statistics are per process: SyncBN over both GPUs' 256 frames per half in the
  released run. One process with ``batch_size=64`` normalizes over exactly those 256 frames per
  half; with N processes each normalizes over 256 / N (not measured; SyncBN matters most for
  small per-GPU batches, and 128 frames per half on each of 2 processes is not small);
* frames are decoded with their short side at ``decode_size`` (256) before the crop, and resized
  with torchvision's antialiased bilinear; mmaction crops the stored video frames and resizes with
  cv2 (bilinear, no antialias). Pixel-level differences only (not measured);
* a sampler or augmentation random stream is vidssl's (per sample, reproducible), not numpy's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.config import option
from vidssl.data.pairs import PairOptions, pair_data
from vidssl.data.spec import DataSpec
from vidssl.ema import EMA
from vidssl.losses.similarity import embedding_std
from vidssl.methods.base import PairMethod
from vidssl.methods.byol import byol_heads
from vidssl.models.encoders import Encoder


class VFS(PairMethod):
    """SimSiam (or BYOL) on frames from the two halves of one video (see the module docstring).

    Config (:class:`VFS.Config`): the pair source (default: the released sampler, one frame from
    each half), ``frames_per_half``, ``loss``, ``proj_dim``, ``proj_hidden`` (BYOL),
    ``pred_hidden``, ``momentum`` (BYOL), ``color``, ``zero_init_residual``.
    ``pair_loss`` takes (B, 2k, 3, H, W): k frames of the first half, then k of the second.
    """

    @dataclass(frozen=True)
    class Config(PairOptions):
        sampling: Literal["gap", "halves"] = option(
            "halves", "halves: the released sampler, one random frame in each of 8 equal segments of the whole "
            "video, first 4 against last 4 | gap: two frames min_gap..max_gap apart (uniform gap)"
        )
        max_gap: float = option(10, "sampling=gap: largest gap between the two frames (a 10 s clip: anywhere)")
        gap_unit: Literal["frames", "seconds"] = option("seconds", "unit of min_gap / max_gap")
        frames_per_half: int = option(
            4, "sampling=halves: frames of each half per video, the loss averaged over all cross pairs "
            "(released intra_video: 4, 16 pairs; 1: one random pair of those, a quarter of the frames)", min=1
        )
        loss: Literal["simsiam", "byol"] = option("simsiam", "simsiam (the released models) | byol (EMA target)")
        proj_dim: int = option(512, "projection width (released SimSiam head: 3 layers of 512)")
        proj_hidden: int = option(512, "loss=byol: projector hidden width")
        pred_hidden: int = option(128, "predictor bottleneck width (released: 128)")
        momentum: float = option(0.996, "loss=byol: base target momentum, raised to 1 on a cosine schedule")
        color: bool = option(False, "SimCLR colour augmentation of each frame (the released 'nc' models: none)")
        zero_init_residual: bool = option(
            True, "start each residual block's last BN scale at 0 (released backbone; a fresh ResNet only)"
        )

    # mmcv's default optimizer constructor decays every parameter, biases and BN included.
    train_defaults: ClassVar[dict[str, Any]] = {"weight_decay_all": True}

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        if not 1 <= cfg.frames_per_half <= 4:
            raise ValueError(f"frames_per_half must be 1..4 (of the 4 segments of a half), got {cfg.frames_per_half}")
        if cfg.frames_per_half > 1 and (cfg.sampling != "halves" or cfg.positives != "frames"):
            raise ValueError(f"frames_per_half={cfg.frames_per_half} needs sampling=halves and positives=frames "
                             "(a gap pair or a track pair has one frame per side)")
        if cfg.zero_init_residual:
            zero_init_residual(encoder)
        if cfg.loss == "simsiam":
            self.projector, self.predictor = vfs_heads(encoder.out_dim, cfg.proj_dim, cfg.pred_hidden)
        elif cfg.loss == "byol":
            self.projector, self.predictor = byol_heads(encoder.out_dim, cfg.proj_hidden, cfg.proj_dim,
                                                        cfg.pred_hidden)
            self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        else:
            raise ValueError(f"loss must be simsiam or byol, got {cfg.loss!r}")

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"proj_dim": 16, "proj_hidden": 16, "pred_hidden": 8}

    def data(self) -> DataSpec:
        per_half = self.cfg.frames_per_half if self.cfg.sampling == "halves" else 1
        return pair_data(self.cfg, color=self.cfg.color, frames_per_half=per_half)

    def pair_loss(self, pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``pairs``: (B, 2k, 3, H, W), k frames of the first half then k of the second (k = 1:
        one pair per sample, as every other source gives) -> (loss, logs)."""
        b, v = pairs.shape[:2]
        if v % 2:
            raise ValueError(f"VFS needs as many frames of each half, got {v} views per sample")
        k = v // 2
        views = self.normalize(pairs)
        # One forward per half, as the released code (one per clip): BatchNorm statistics per half.
        first, second = views[:, :k].flatten(0, 1), views[:, k:].flatten(0, 1)  # (B k, 3, H, W), sample-major
        z1, z2 = (self.projector(self.encoder(x)) for x in (first, second))  # (B k, d) each
        p1, p2 = self.predictor(z1), self.predictor(z2)
        if self.cfg.loss == "simsiam":
            loss = vfs_loss(*(t.view(b, k, -1) for t in (p1, z1, p2, z2)))
        else:
            with torch.no_grad():
                t1, t2 = (self.target_projector(self.target_encoder(x)) for x in (first, second))
            # BYOL sums its two directions where VFS weights them 1/2: twice the same average.
            loss = 2 * vfs_loss(*(t.view(b, k, -1) for t in (p1, t1, p2, t2)))
        std = embedding_std(z1)
        return loss, {"embed_std": std, "embed_std_ratio": std * math.sqrt(z1.shape[1])}

    def ema(self) -> EMA | None:
        if self.cfg.loss != "byol":
            return None
        return EMA([(self.target_encoder, self.encoder), (self.target_projector, self.projector)], self.cfg.momentum,
                   "cosine")


def vfs_loss(p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The released VFS loss over all cross pairs of two clips (``CosineSimLoss(negative=False)``
    in ``SimSiamHead.loss``, ``intra_video`` in ``SimSiamBaseTracker.forward_img_head``).

    Args:
        p1, z1: (B, k, D) predictions and projections of the first half's k frames of each sample.
        p2, z2: (B, k, D) the same of the second half's k frames. The z are stop-gradient targets
            (detached here).

    Returns:
        Scalar mean over samples b and pairs (j, m) of
        ``(2 - 2 cos(p1[b, j], z2[b, m])) / 2 + (2 - 2 cos(p2[b, m], z1[b, j])) / 2``, in [0, 4];
        k = 1 is one pair per sample. Its gradient is twice SimSiam's ``-cos`` form.
    """
    dtype = torch.promote_types(p1.dtype, torch.float32)  # bf16 under autocast -> float32; float64 kept
    p1, p2 = (F.normalize(p.to(dtype), dim=-1) for p in (p1, p2))
    z1, z2 = (F.normalize(z.detach().to(dtype), dim=-1) for z in (z1, z2))
    cos12 = torch.einsum("bjd,bmd->bjm", p1, z2)  # first half predicts second
    cos21 = torch.einsum("bmd,bjd->bjm", p2, z1)  # second predicts first, same (j, m) layout
    return 2 - cos12.mean() - cos21.mean()


def vfs_heads(in_dim: int, proj_dim: int, pred_hidden: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The released ``SimSiamHead`` (``num_projection_fcs=3``, ``num_predictor_fcs=2``,
    ``with_norm=True``): projector ``Linear - BN - ReLU, Linear - BN - ReLU, Linear - BN`` of
    width ``proj_dim``, predictor ``Linear proj_dim -> pred_hidden - BN - ReLU - Linear ->
    proj_dim``. Every Linear has a bias (a bias before a BN changes nothing in training but is a
    released parameter that weight decay shrinks) and every BN is affine, the last projector BN
    too (SimSiam's paper head has none there)."""
    projector = nn.Sequential(
        nn.Linear(in_dim, proj_dim), nn.BatchNorm1d(proj_dim), nn.ReLU(),
        nn.Linear(proj_dim, proj_dim), nn.BatchNorm1d(proj_dim), nn.ReLU(),
        nn.Linear(proj_dim, proj_dim), nn.BatchNorm1d(proj_dim),
    )
    predictor = nn.Sequential(nn.Linear(proj_dim, pred_hidden), nn.BatchNorm1d(pred_hidden), nn.ReLU(),
                              nn.Linear(pred_hidden, proj_dim))
    return projector, predictor


@torch.no_grad()
def zero_init_residual(encoder: nn.Module) -> bool:
    """Set the scale of each residual block's last BN to 0 (torchvision's and mmcv's
    ``zero_init_residual``: every block starts as the identity), if ``encoder`` is a torchvision
    ResNet whose scales are all still at their initial 1; an encoder loaded from weights (or not a
    ResNet) is left alone. Returns whether it changed anything."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    norms = [m.bn3 if isinstance(m, Bottleneck) else m.bn2 for m in encoder.modules()
             if isinstance(m, (BasicBlock, Bottleneck))]
    if not norms or not all(bool((n.weight == 1).all()) for n in norms):
        return False
    for n in norms:
        n.weight.zero_()
    return True
