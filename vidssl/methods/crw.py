"""Contrastive random walk (CRW: Jabri, Owens & Efros, "Space-Time Correspondence as a Contrastive
Random Walk", NeurIPS 2020, arXiv:2006.14613).

A clip of T frames becomes a graph: each frame is cut into a grid of patches (the nodes), each patch
embedded by the encoder and a linear head and L2-normalized. The transition from frame t to t+1 is
the row-softmax of the patch similarities over a temperature, with edge dropout; walking forward
along the clip and back (a palindrome) should return every patch to itself, so the loss is the
cross-entropy of the round-trip matrix against the identity, for each palindrome length. Nothing
tells the walk where a patch went in between: correspondence emerges because it must be consistent.

Released recipe and how it maps here (videowalk ``code/train.py``, ``code/model.py``,
``code/resnet.py``, ``code/utils/__init__.py`` ``make_encoder``, ``code/utils/augs.py``; README command
``--frame-aug grid --dropout 0.1 --clip-len 4 --temp 0.05 --model-type scratch --batch-size 20
--lr 0.0001``, Adam, the defaults ``--epochs 25 --lr-milestones 20 30 40 --lr-gamma 0.3``):

* clip: ``clip_len`` 4 frames, ``frame_gap`` frames apart (the released code samples Kinetics at
  8 fps: 4 frames is that at 30 fps); each frame a random resized crop to 256 px (area 0.8-0.95,
  aspect 0.7-1.3, per frame), cut into 64 px patches 32 px apart (7 x 7 = 49 nodes), each patch
  jittered by its own random resized crop (area 0.7-0.9): :class:`vidssl.data.views.PatchGrid`.
  No colour augmentation.
* encoder: ResNet-18 with layer3 and layer4 at stride 1 (``encoder_stride=8``: vidssl's stride-8
  ResNet-18 is exactly CRW's trick), trained through ``layer4``: the walk's nodes are pooled from
  layer4's 512-d map (``stage=layer4``). ``--remove-layers`` is ``[]`` in ``train_args`` and
  ``['layer4']`` only in ``test_args`` (the author confirms it in the repository's issue 8): layer4
  is dropped at test time only, which is what label propagation does with ``layer=res3``
  (``preset=crw``; the author reports a drop of a few points when testing with layer4).
  ``stage=layer3`` walks on layer3 (256-d) instead, as vidssl did before.
* padding: ``--model-type scratch`` sets ``padding_mode='reflect'`` on every convolution with
  padding > 0 (conv1 and the 3x3 convs; not the 1x1 downsample convs, not the max pool):
  ``padding=reflect`` (default) sets it on the encoder through
  :meth:`vidssl.models.encoders.ResNetEncoder.set_padding`, which records it in ``encoder.config``
  so checkpoints and ``encoder.safetensors`` rebuild it (``format=torchvision`` exports refuse it:
  torchvision's ResNet pads with zeros). ``padding=zeros`` is the released ``scratch_zeropad``.
* node: the mean of the patch's map, a linear head 512 -> 128 (``head_depth=0``), L2 norm.
* transitions: softmax(A / ``temperature``) row-wise (0.05), ``edge_dropout`` 0.1: an edge is cut
  (set to -1e20) before the softmax with that probability. ``edge_dropout_rule=released``
  (default): the released ``stoch_mat`` cuts in place on ``As[:, t]``, a view of the affinity
  tensor, and every forward transition is computed before any backward one, so the backward
  transition (the softmax of that same, already cut, tensor transposed) keeps the forward cuts
  and adds its own: a backward edge is cut with probability 1 - (1 - p)^2 (0.19 for 0.1), always
  where its forward edge was. ``edge_dropout_rule=independent``: each direction cut on its own
  with probability p (what vidssl did before). Draw order, the same for both rules so a fixed torch
  seed gives the same cuts: one ``torch.rand_like`` of (B, N, N) per forward transition t = 0 ..
  T-2, then one per backward transition t = 0 .. T-2, each laid out in the forward orientation
  (row = node of frame t), which is what the released ``rand_like`` of the transposed view gives.
* cycles: the palindromes of k = 2 .. T-1 steps out and back (the released code starts at 2: a
  one-step round trip is not in its cycle set); the loss is the mean over k of the cross-entropy of
  log(P_k + 1e-20) against the identity, averaged over every node of the batch.
* logged: ``loss``, ``xent_k`` and ``acc_k`` (how often the round trip of k steps returns to the
  start: CRW's cycle accuracy) for each k.

Deviations that remain:

* the learning-rate drop: the released run multiplies the lr by 0.3 after epoch 20 of 25 (its
  other milestones, 30 and 40, are never reached), so its last 20 % of steps run at 3e-5; the
  recipe keeps 1e-4 throughout (``min_lr=lr``: the trainer's schedule is warmup + cosine, no step
  drop). Not measured; expected small (it only changes the last fifth of training, and the
  released code's README reports no ablation of it). The closest expressible schedule is a cosine
  to ``min_lr=3.0e-5``, which lowers the lr earlier than the released drop.
* ImageNet normalization (the released code uses CIFAR's mean and std, 0.4914 0.4822 0.4465 /
  0.2023 0.1994 0.2010): a per-channel affine change of the input. With reflect padding the shift
  passes conv1 as a constant per output channel, which the first BatchNorm removes; the scales
  differ by 1.12-1.13x across the three channels, nearly uniform, which BatchNorm also absorbs.
  Expected negligible; not measured.
* edge dropout runs in training mode only (the released ``forward`` drops whenever it runs, and it
  runs only to train), so training is the same.
* the trainer's own optimiser (recipe: AdamW, weight decay 0, which is Adam: no effect).
* the run length: the recipe's ``steps=100000`` is not derived from the released run, which trains
  25 epochs of Kinetics-400 sampling up to 5 clips per video per epoch (``--clips-per-video 5``;
  about 240k videos at batch 20 would be about 60k steps an epoch: an estimate, not checked).

Cost of the released trunk: a 64 px patch costs 752 M multiply-adds forward to layer4 at stride 8
against 215 M to layer3 (3.5x; ``torch.utils.flop_counter``), so a step of the released recipe
(20 clips x 4 frames x 49 patches) is about 2.9 T multiply-adds forward instead of 0.84 T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.config import option
from vidssl.data.samplers import SequenceSampler
from vidssl.data.spec import DataSpec
from vidssl.data.views import PatchGrid
from vidssl.methods.base import Method, StepOutput
from vidssl.models.encoders import RESNET_STAGES, Encoder, ResNetEncoder

EPS = 1e-20  # added before the log, as the released code


EdgeDropoutRule = Literal["released", "independent"]


def transitions(nodes: torch.Tensor, *, temperature: float, edge_dropout: float = 0.0,
                rule: EdgeDropoutRule = "released", training: bool = True,
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Forward and backward transition matrices between consecutive frames.

    Args:
        nodes: (B, T, N, D) L2-normalized node embeddings.
        edge_dropout: probability p of cutting an edge (setting its similarity to -1e20 before the
            softmax), when ``training``; drawn from torch's global RNG.
        rule: ``released``: a backward edge is cut where the released code cuts it, where its
            forward edge was cut or by its own draw (probability 1 - (1 - p)^2);
            ``independent``: by its own draw only (probability p).

    Returns:
        forward[t]: (B, N, N), row i the probabilities of stepping from node i of frame t to each
        node of frame t+1; backward[t]: (B, N, N), from frame t+1 back to frame t. Each is the
        row-softmax of the similarities / ``temperature`` with the cut edges at -1e20.

    RNG: one (B, N, N) uniform draw per forward step t = 0 .. T-2, then one per backward step, each
    in the forward orientation (entry [b, i, j] for the edge between node i of frame t and node j
    of frame t+1), the order and layout of the released code.
    """
    if rule not in ("released", "independent"):
        raise ValueError(f"edge dropout rule must be released or independent, got {rule!r}")
    affinity = torch.einsum("btnd,btmd->btnm", nodes[:, :-1], nodes[:, 1:])  # (B, T-1, N, N)
    steps = range(affinity.shape[1])
    similarities = [affinity[:, t] for t in steps]
    if training and edge_dropout > 0:
        def draw(a: torch.Tensor) -> torch.Tensor:
            return torch.rand_like(a, memory_format=torch.contiguous_format) < edge_dropout

        forward_cuts = [draw(a) for a in similarities]  # all forward draws first, as the released code
        backward_cuts = [draw(a) for a in similarities]
        if rule == "released":  # the backward softmax reads the tensor the forward cuts were written into
            backward_cuts = [back | fwd for back, fwd in zip(backward_cuts, forward_cuts, strict=True)]
        forward_sims = [a.masked_fill(cut, -1e20) for a, cut in zip(similarities, forward_cuts, strict=True)]
        backward_sims = [a.masked_fill(cut, -1e20) for a, cut in zip(similarities, backward_cuts, strict=True)]
    else:
        forward_sims = backward_sims = similarities
    return ([F.softmax(a / temperature, dim=-1) for a in forward_sims],
            [F.softmax(a.transpose(-1, -2) / temperature, dim=-1) for a in backward_sims])


def palindromes(forward: list[torch.Tensor], backward: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """Round-trip matrices ``{k: P_k}`` for k = 2 .. len(forward) steps: P_k = F_1 ... F_k B_k ... B_1,
    (B, N, N), row i the probability that a walk from node i of the first frame ends at each node."""
    cycles = {}
    for k in range(2, len(forward) + 1):
        walk = forward[0]
        for step in [*forward[1:k], *backward[:k][::-1]]:
            walk = walk @ step
        cycles[k] = walk
    return cycles


def cycle_loss(cycles: dict[int, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over cycle lengths of the cross-entropy of returning to the start, and per-length logs."""
    losses, logs = [], {}
    for k, walk in cycles.items():
        logits = torch.log(walk + EPS).flatten(0, 1)  # (B*N, N)
        target = torch.arange(walk.shape[-1], device=walk.device).repeat(walk.shape[0])
        loss = F.cross_entropy(logits, target)
        losses.append(loss)
        logs[f"xent_{k}"] = loss.item()
        logs[f"acc_{k}"] = (logits.argmax(-1) == target).float().mean().item()
    return torch.stack(losses).mean(), logs


class CRW(Method):
    """Contrastive random walk on a grid of patches per frame.

    Config (:class:`CRW.Config`): ``clip_len`` T, ``frame_gap``, ``patch`` / ``patch_stride`` (the
    grid), ``stage`` (encoder stage the nodes are pooled from), ``padding`` (the encoder's conv
    padding), ``embed_dim`` (head output), ``temperature``, ``edge_dropout`` and its
    ``edge_dropout_rule``. ``training_step`` takes ``batch["frames"]``: uint8
    (B, T * P, 3, patch, patch), frame-major, P patches per frame.
    """

    train_defaults: ClassVar[dict[str, Any]] = {"encoder_stride": 8, "image_size": 256}
    # Runs saved before the release-matching keys walked with zero padding and independent cuts.
    saved_defaults: ClassVar[dict[str, Any]] = {"padding": "zeros", "edge_dropout_rule": "independent"}

    @dataclass(frozen=True)
    class Config:
        clip_len: int = option(4, "frames per clip T (>= 3: the shortest palindrome is 2 steps out and back)")
        frame_gap: int = option(4, "frames between consecutive clip frames (released: 8 fps, about 4 at 30 fps)")
        patch: int = option(64, "patch side in px, cut from frames resized to image_size (released: 64 of 256)")
        patch_stride: int = option(32, "px between neighbouring patches (released: half a patch)")
        stage: Literal["layer1", "layer2", "layer3", "layer4"] = option(
            "layer4", "encoder stage the nodes are pooled from (released training: layer4, removed at test time only)")
        padding: Literal["reflect", "zeros"] = option(
            "reflect", "conv padding set on the encoder (released --model-type scratch: reflect), kept in its config")
        embed_dim: int = option(128, "node embedding width after the linear head (released: 128)")
        temperature: float = option(0.05, "softmax temperature of the transitions (released recipe: 0.05)")
        edge_dropout: float = option(0.1, "probability of cutting an edge before the softmax (released: 0.1)")
        edge_dropout_rule: EdgeDropoutRule = option(
            "released", "released: backward transitions keep the forward cuts and add their own (1-(1-p)^2 cut) | "
                        "independent: each direction cut with p")

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 256, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        if not isinstance(encoder, ResNetEncoder):
            raise ValueError(f"method=crw walks on a ResNet stage ({cfg.stage}); encoder is {type(encoder).__name__}")
        if cfg.clip_len < 3 or cfg.frame_gap < 1:
            raise ValueError(f"need clip_len >= 3 and frame_gap >= 1, got {cfg.clip_len} and {cfg.frame_gap}")
        if cfg.temperature <= 0 or not 0 <= cfg.edge_dropout < 1:
            raise ValueError(f"need temperature > 0 and 0 <= edge_dropout < 1, got {cfg.temperature}, "
                             f"{cfg.edge_dropout}")
        if cfg.stage not in RESNET_STAGES:
            raise ValueError(f"stage must be one of {', '.join(RESNET_STAGES)}, got {cfg.stage!r}")
        if cfg.edge_dropout_rule not in ("released", "independent"):
            raise ValueError(f"edge_dropout_rule must be released or independent, got {cfg.edge_dropout_rule!r}")
        # Reflect padding needs every padded map at least 2 cells wide; the smallest is the stage's.
        stage_stride = min(encoder.stride, {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}[cfg.stage])
        if cfg.padding == "reflect" and cfg.patch <= stage_stride:
            raise ValueError(f"padding=reflect needs patch > {stage_stride} px (the {cfg.stage} map of a patch must "
                             f"be at least 2 cells wide to reflect), got patch={cfg.patch}; or use padding=zeros")
        encoder.set_padding(cfg.padding)
        self.grid = PatchGrid(size=image_size, patch=cfg.patch, stride=cfg.patch_stride)
        self.head = nn.Linear(encoder.stage_dim(cfg.stage), cfg.embed_dim)

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"clip_len": 3, "frame_gap": 2, "patch": 24, "patch_stride": 12}

    def data(self) -> DataSpec:
        """Clips of ``clip_len`` frames ``frame_gap`` apart, cut into patch grids per frame."""
        return DataSpec(SequenceSampler(length=self.cfg.clip_len, stride=self.cfg.frame_gap), transform=self.grid,
                        color=False)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """(..., 3, h, w) patches (pixels) -> (..., D) L2-normalized node embeddings."""
        maps = self.encoder.forward_stage(self.normalize(patches.flatten(0, -4)), self.cfg.stage)
        return F.normalize(self.head(maps.mean(dim=(2, 3))), dim=-1).view(*patches.shape[:-3], -1)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        frames = batch["frames"]  # (B, T * P, 3, p, p)
        b, t = frames.shape[0], self.cfg.clip_len
        nodes = self.embed(frames.view(b, t, -1, *frames.shape[2:]))  # (B, T, P, D)
        forward, backward = transitions(nodes, temperature=self.cfg.temperature, edge_dropout=self.cfg.edge_dropout,
                                        rule=self.cfg.edge_dropout_rule, training=self.training)
        loss, logs = cycle_loss(palindromes(forward, backward))
        return StepOutput(loss, {"loss": loss.item(), **logs})
