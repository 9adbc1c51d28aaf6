"""Object-track positives (Purushwalkam & Gupta, 2020, arXiv:2007.13916, Sec. 5).

Crops of one tracked object at two times are a positive pair: the network must become invariant
to the object's own changes of viewpoint, pose and occlusion, which full frames teach only
weakly. Tracks come from ``vidssl tracks`` (an off-the-shelf detector plus an ultralytics tracker).

    vidssl tracks ~/videos out=runs/tracks detector=yolov8n_openvino_model/
    vidssl train ~/videos method=track tracks=runs/tracks          # track pairs only
    vidssl train ~/videos method=fti tracks=runs/tracks            # frame pairs + track pairs

``method=track`` is :class:`~vidssl.methods.fti.FTI` (InfoNCE or MoCo, ``loss=``) on track crops;
``method=fti tracks=DIR`` adds a track pair to every frame pair and minimises
``frame_weight * L(frames) + track_weight * L(crops)``, the paper's combined setting (its MoCo
queue holds both kinds of keys). Crops get the same augmentation as FTI frames.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from vidssl.config import option
from vidssl.methods.base import DataSpec


@dataclass(frozen=True)
class TrackOptions:
    tracks: str = option("", "folder written by 'vidssl tracks' (method=track needs it; with method=fti adds track pairs)")
    track_min_gap: int = option(0, "fewest frames between the two boxes of a track pair")
    track_max_gap: int = option(30, "most frames between the two boxes of a track pair")
    track_min_length: int = option(2, "leave out tracks with fewer boxes")
    track_context: float = option(1.2, "crop this many times the box, around its centre (1.0: the box alone)")
    track_weight: float = option(1.0, "method=fti with tracks: weight of the track-pair loss")
    frame_weight: float = option(1.0, "method=fti with tracks: weight of the frame-pair loss")


def _track_dataset(cfg: Any, **kwargs: Any) -> Dataset:
    """A :class:`~vidssl.data.track_pairs.TrackPairDataset` from the run's options; ``kwargs`` are
    the trainer's dataset arguments (videos, backend, size, transform, seed, ...)."""
    from vidssl.data.track_pairs import TrackPairDataset, native_sizes
    from vidssl.tracking import read_manifest, read_tracks

    manifest = read_manifest(cfg.tracks)
    return TrackPairDataset(
        kwargs["videos"],
        tracks=read_tracks(cfg.tracks, min_length=cfg.track_min_length),
        data_root=Path(cfg.data or manifest["data"]),
        native_sizes=native_sizes(manifest),
        min_gap=cfg.track_min_gap,
        max_gap=cfg.track_max_gap,
        min_length=cfg.track_min_length,
        context=cfg.track_context,
        backend=kwargs["backend"],
        size=kwargs["size"],
        transform=kwargs["transform"],
        samples_per_epoch=kwargs["samples_per_epoch"],
        seed=kwargs["seed"],
    )


def _frames_and_tracks(cfg: Any, **kwargs: Any) -> Dataset:
    from vidssl.data.datasets import VideoFrameDataset
    from vidssl.data.track_pairs import FramesAndTracks

    return FramesAndTracks(VideoFrameDataset(**kwargs), _track_dataset(cfg, **kwargs))


def _check(cfg: Any) -> None:
    if not cfg.tracks:
        raise ValueError("method=track needs tracks=DIR (a folder written by 'vidssl tracks')")
    if not Path(cfg.tracks).is_dir():
        raise FileNotFoundError(f"tracks={cfg.tracks}: no such folder (write one with 'vidssl tracks')")
    if not 0 <= cfg.track_min_gap <= cfg.track_max_gap:
        raise ValueError(f"need 0 <= track_min_gap <= track_max_gap, got {cfg.track_min_gap}, {cfg.track_max_gap}")


def with_tracks(spec: DataSpec, cfg: Any) -> DataSpec:
    """``spec`` (FTI frame pairs) plus a track pair per sample, under ``batch["crops"]``."""
    _check(cfg)
    return DataSpec(spec.sampler, consistent=spec.consistent, color=spec.color,
                    dataset=functools.partial(_frames_and_tracks, cfg))


def build_track(encoder: nn.Module, cfg: Any) -> tuple[Any, DataSpec]:
    """FTI's loss (``loss=infonce|moco``) on pairs of crops of one track."""
    from vidssl.methods.fti import build_fti

    _check(cfg)
    method, spec = build_fti(encoder, cfg, tracks=False)
    return method, DataSpec(spec.sampler, color=spec.color, dataset=functools.partial(_track_dataset, cfg))
