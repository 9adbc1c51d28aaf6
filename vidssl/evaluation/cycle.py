"""``vidssl eval cycle``: a label-free score of correspondence, for choosing checkpoints without masks.

    vidssl eval cycle root=~/videos encoder=runs/crw held_out=4      # the videos a run held out
    vidssl train cpu/crw ~/videos val_every=50 keep_best=true        # the same score while training

No masks exist for a user's own videos, so this score asks the propagation itself: cut the first
frame of a clip into a ``cells`` x ``cells`` grid of regions on the feature grid, carry those
labels forward through the clip with the evaluation's propagation (:func:`vidssl.propagation.propagate.propagate`,
the same code and protocol as ``eval davis``), then carry what arrives at the last frame back
through the clip reversed, in a fresh context that never saw the first frame's labels, and score
what returns against the regions it started from: ``cycle J`` (the mean IoU of the regions on the
feature grid: DAVIS's J on grid regions instead of object masks) and ``cycle accuracy`` (cells that
return to their own region). Good features keep
each region together on the way out and bring it home; features that confuse one place with
another smear the regions and lose them.

A clip is ``frames`` frames ``gap`` apart, read at short side ``size``; ``clips`` clips per video,
spread evenly over it. With ``held_out`` N, the videos are the N of ``root`` that ``vidssl train
val_videos=N`` keeps out of training (:func:`vidssl.data.index.held_out`); with 0, every video.

What it cannot see (a caution for reading it): a feature that encodes only *where* a cell is, not
what it shows, maps every cell to itself and returns perfectly; so does a static video. Measured on
real clips (BENCHMARKS.md, "label-free"), it barely moves while an encoder learns: random and
trained ResNets score alike, whatever the number of regions.

So the same clips give a second score, the one ``keep_best`` uses: ``colour gain``. The clip is
shown to the encoder in gray, and the colour of its first frame (Lab a and b, averaged per feature
cell) is carried forward through it with the same propagation, as Vondrick et al.'s colorization
tracks; at every later frame the carried colour is compared with the frame's own. ``colour gain`` =
1 - (error of the carried colour) / (error of the colour carried as if nothing moved: the same
propagation over frame 0's features repeated), summed over all clips' frames: 0 for a feature that
stays put (the round trip's blind spot), however smooth, 1 for perfect
correspondence, below 0 for a feature that moves colour to the wrong places. Colour is what the
gray frames hide, so no encoder can match it directly (``pixels``, reading the gray frames' Lab,
matches lightness only). It is colorization's own training task, so it flatters colorization
across methods; within one run, the use ``keep_best`` makes of it, it is measured against DAVIS in
BENCHMARKS.md.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.config import ConfigError, option
from vidssl.propagation.propagate import PropagationConfig, propagate

if TYPE_CHECKING:
    from vidssl.data.index import VideoInfo
    from vidssl.features import FeatureExtractor
    from vidssl.models.encoders import Encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleConfig(PropagationConfig):
    """``vidssl eval cycle``: every setting, recorded in ``results.json``."""

    root: str = option("", "folder of videos (no labels needed)")
    held_out: int = option(0, "score only the N videos 'vidssl train val_videos=N' holds out of ROOT (0 = every video)",
                           min=0)
    clips: int = option(2, "clips per video, spread evenly over it", min=1)
    frames: int = option(8, "frames per clip (the round trip goes out through them and back)", min=2)
    gap: int = option(3, "frames between a clip's frames", min=1)
    cells: int = option(4, "the first frame is cut into cells x cells regions of the feature grid", min=1)
    size: int = option(256, "short side the frames are read at (this score's default; presets do not change it)")
    backend: str = option("auto", "video backend")
    out: str = option("runs/eval/cycle", "results folder: results.json")


CLIP_KEYS = ("clips", "frames", "gap", "cells", "size")
"""The keys that choose what is scored (``vidssl train`` passes its ``val_*`` values for them)."""


def regions(height: int, width: int, cells: int) -> torch.Tensor:
    """(cells * cells, h, w) one-hot labels: the feature grid cut into a cells x cells grid of
    near-equal blocks (fewer rows or columns of blocks where the grid is smaller than that)."""
    rows = np.minimum(np.arange(height) * min(cells, height) // height, cells - 1)
    cols = np.minimum(np.arange(width) * min(cells, width) // width, cells - 1)
    ids = torch.from_numpy(rows[:, None] * cells + cols[None, :])
    return torch.nn.functional.one_hot(ids, cells * cells).permute(2, 0, 1).float()


def score_return(start: torch.Tensor, returned: torch.Tensor) -> dict[str, float]:
    """J (mean over the regions present at the start of |returned & start| / |returned | start|,
    each cell labelled by its argmax) and accuracy (cells whose argmax is their start region)."""
    truth, pred = start.argmax(0), returned.to(start.device).argmax(0)
    scores = []
    for label in truth.unique().tolist():
        t, p = truth == label, pred == label
        scores.append(float((t & p).sum()) / float((t | p).sum()))
    return {"J": float(np.mean(scores)), "accuracy": float((truth == pred).float().mean())}


def cycle_clip(frames: np.ndarray, extractor: FeatureExtractor, settings: PropagationConfig, *,
               cells: int) -> dict[str, float]:
    """The round trip of one clip ((T, H, W, 3) uint8 RGB): :func:`regions` of frame 0 carried
    forward to frame T-1, and back from there through the clip reversed; :func:`score_return`."""
    features = _Computed(extractor, extractor(frames))  # each frame's features once, for both directions
    start = regions(*features.maps.shape[1:3], cells)  # the encoder's own grid (a ViT floors, a ResNet rounds up)
    order = [np.array(i) for i in range(len(frames))]  # propagate stacks its "frames": here, their indices
    arrived = last(propagate(order, start, features, settings=settings))
    returned = last(propagate(order[::-1], arrived, features, settings=settings))
    return score_return(start, returned)


def chroma(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(T, 2, height, width): the Lab a and b of (T, H, W, 3) uint8 RGB ``frames`` averaged over
    each cell of a ``height`` x ``width`` grid, scaled to about [0, 1]."""
    import cv2

    lab = np.stack([cv2.cvtColor(f.astype(np.float32) / 255, cv2.COLOR_RGB2LAB) for f in frames])
    ab = torch.from_numpy(np.ascontiguousarray(lab[..., 1:])).permute(0, 3, 1, 2)
    return F.adaptive_avg_pool2d(ab, (height, width)) / 256 + 0.5


def colour_clip(frames: np.ndarray, extractor: FeatureExtractor, settings: PropagationConfig) -> dict[str, float]:
    """Frame 0's colour (:func:`chroma` on the encoder's grid) carried forward through the clip
    ((T, H, W, 3) uint8 RGB) by the propagation over the features of its gray frames; the mean
    absolute errors against each frame's own colour, summed over frames 1..T-1, of the carried
    colour (``moved``) and of the colour carried as if nothing moved (``stayed``: the same
    propagation over frame 0's features repeated, so the protocol's own smoothing of the labels, a
    top-k average without CRW's repeated first frame, is in both and a feature that stays put scores
    0 whatever its smoothness)."""
    import cv2

    gray = np.repeat(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])[..., None], 3, axis=-1)
    features = _Computed(extractor, extractor(gray))
    truth = chroma(frames, *features.maps.shape[1:3]).to(features.device)

    def error(order: list[np.ndarray]) -> float:  # summed over frames 1..T-1 of the carried colour's
        stream = propagate(order, truth[0], features, settings=settings)
        return sum(float((labels - truth[t]).abs().mean()) for t, (_, labels) in enumerate(stream) if t)

    return {"moved": error([np.array(i) for i in range(len(frames))]), "stayed": error([np.array(0)] * len(frames))}


def colour_gain(clips: list[dict[str, float]]) -> float | None:
    """1 - the summed error of the carried colour / that of staying put (:func:`colour_clip`s);
    None where no colour changed (a static or colourless clip ranks nothing)."""
    stayed = sum(c["stayed"] for c in clips)
    return 1 - sum(c["moved"] for c in clips) / stayed if stayed > 0 else None


class _Computed:
    """A feature extractor over maps already computed: called with frame indices, it returns theirs."""

    def __init__(self, extractor: FeatureExtractor, maps: torch.Tensor) -> None:
        self.stride, self.device, self.dtype, self.name = extractor.stride, maps.device, maps.dtype, extractor.name
        self.maps = maps

    def __call__(self, indices: np.ndarray) -> torch.Tensor:
        return self.maps[torch.from_numpy(indices.astype(np.int64))]


def last(stream) -> torch.Tensor:
    """The labels of the last frame of a :func:`propagate` stream."""
    labels = None
    for _, labels in stream:  # noqa: B007 - run the stream to its end; its last labels are the result
        continue
    return labels


def clip_starts(num_frames: int, *, frames: int, gap: int, clips: int) -> list[int]:
    """First frames of up to ``clips`` clips of ``frames`` frames ``gap`` apart, spread evenly
    over a video of ``num_frames`` (fewer when it is short; none when no clip fits)."""
    span = (frames - 1) * gap + 1
    if num_frames < span:
        return []
    last = num_frames - span
    return sorted({round(last * i / max(clips - 1, 1)) for i in range(clips)}) if clips > 1 else [last // 2]


def score_videos(videos: list[VideoInfo], extractor: FeatureExtractor, settings: PropagationConfig, *,
                 clips: int, frames: int, gap: int, cells: int, size: int, backend: str = "auto",
                 progress: bool = False) -> dict[str, Any]:
    """The cycle scores of ``videos``: the mean over all their clips, and per video."""
    from tqdm import tqdm

    from vidssl.data.backends import VideoReadError, open_video

    per_video: dict[str, dict[str, float]] = {}
    clip_scores: list[dict[str, float]] = []
    for info in tqdm(videos, desc="cycle", unit="video", disable=not progress, leave=False):
        starts = clip_starts(info.num_frames, frames=frames, gap=gap, clips=clips)
        if not starts:
            continue
        try:
            reader = open_video(info.path, backend=backend, size=size or None)
            try:
                got = []
                for s in starts:
                    clip = reader.get_frames(range(s, s + (frames - 1) * gap + 1, gap))
                    got.append({**cycle_clip(clip, extractor, settings, cells=cells),
                                **colour_clip(clip, extractor, settings)})
            finally:
                reader.close()
        except VideoReadError as err:
            log.warning("cycle: %s; skipped", err)
            continue
        clip_scores += got
        per_video[Path(info.path).name] = {**{k: float(np.mean([g[k] for g in got])) for k in ("J", "accuracy")},
                                           "colour gain": colour_gain(got)}
    if not clip_scores:
        raise ValueError(f"no clip of {frames} frames {gap} apart fits any of the {len(videos)} videos; "
                         "give fewer frames= or a smaller gap=")
    return {"colour gain": colour_gain(clip_scores), "cycle J": float(np.mean([c["J"] for c in clip_scores])),
            "cycle accuracy": float(np.mean([c["accuracy"] for c in clip_scores])),
            "clips": len(clip_scores), "per_video": per_video}


def encoder_extractor(encoder: Encoder, settings: PropagationConfig, *, gray: bool,
                      device: torch.device | str = "cpu") -> FeatureExtractor:
    """Dense features of an encoder in memory (a training run's), at the protocol's stride and
    layer, in float32: a copy, so the training encoder's mode and stride are left alone."""
    from vidssl.features import EncoderFeatures, with_stride

    frozen = copy.deepcopy(encoder)
    if settings.stride and settings.stride != frozen.stride:
        try:
            frozen = with_stride(frozen, settings.stride)
        except ValueError:  # a ViT's stride is its patch size: it is read at its own, as eval davis stride=0 does
            pass
    return EncoderFeatures(frozen, name="training encoder", device=device, dtype=torch.float32, gray=gray,
                           layer=settings.layer)


def validation_videos(root: str | Path, held: int, *, backend: str = "auto") -> list[VideoInfo]:
    """The videos of ``root`` the cycle score reads: the ``held`` that training holds out, or all."""
    from vidssl.data.index import held_out, scan

    index = scan(root, backend=backend, progress=False)
    if not index.videos:
        raise ValueError(f"{root}: no usable videos ({index.summary()})")
    return held_out(index.videos, held) if held else index.videos


def evaluate_cycle(cfg: CycleConfig, *, progress: bool = True) -> dict[str, Any]:
    """Score ``cfg.encoder`` on ``cfg.root``'s videos and write ``out/results.json``."""
    from vidssl.evaluation.results import save_results
    from vidssl.propagation.propagate import extractor_for, protocol_record

    if not cfg.root or not Path(cfg.root).is_dir():
        raise ConfigError(f"root={cfg.root!r}: give a folder of videos")
    if cfg.encoder == "copy":
        raise ConfigError("encoder=copy repeats the first labels, so every round trip returns home: it has no "
                          "cycle score (use pixels, random or an encoder)")
    videos = validation_videos(cfg.root, cfg.held_out, backend=cfg.backend)
    start = time.perf_counter()
    scores = score_videos(videos, extractor_for(cfg), cfg, clips=cfg.clips, frames=cfg.frames, gap=cfg.gap,
                          cells=cfg.cells, size=cfg.size, backend=cfg.backend, progress=progress)
    results = {**scores, "videos": [Path(v.path).name for v in videos],
               "seconds": round(time.perf_counter() - start, 1), **protocol_record(cfg, None)}
    save_results(cfg.out, results)
    return results
