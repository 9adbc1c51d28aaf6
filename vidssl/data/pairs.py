"""Positive pairs from any source, for any two-view method.

Purushwalkam & Gupta (2020, arXiv:2007.13916) train one contrastive loss on two kinds of positive
pairs: two frames of one video some time apart (frame-temporal invariance, FTI), and two crops of
one tracked object (object-track positives, Sec. 5), or both at once with a weighted sum of the two
losses. Here that choice is data, not a method: :class:`PairOptions` is part of the configuration
of every two-view method (``fti``, ``simclr``, ``mocov2``, ``byol``, ``simsiam``), and
:func:`pair_data` turns it into the :class:`~vidssl.data.spec.DataSpec` the trainer loads.

    vidssl tracks ~/videos out=runs/tracks detector=yolov8n_openvino_model/
    vidssl train ~/videos method=fti                                          # frame pairs
    vidssl train ~/videos method=fti positives=tracks tracks=runs/tracks      # track pairs only
    vidssl train ~/videos method=byol positives=both tracks=runs/tracks       # both, weighted

Two frames of one video are ``min_gap``..``max_gap`` apart (``sampling=gap``, uniform gap), or one
from each half of the video (``sampling=halves``: the released VFS sampler,
:func:`vidssl.data.samplers.halves`).

Batches hold the frame pairs under ``frames`` and, with ``positives=both``, the track pairs under
``crops`` (uint8 (B, 2, 3, S, S) each); with ``positives=tracks`` the track pairs are ``frames``.
Crops get the same view recipe as frames.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from vidssl.config import option
from vidssl.data.samplers import ClipSampler, HalvesSampler, PairSampler
from vidssl.data.spec import DataSpec, SampleTransform


@dataclass(frozen=True)
class PairOptions:
    """Where the two views of a positive pair come from (keys of every two-view method)."""

    positives: Literal["frames", "tracks", "both"] = option(
        "frames", "frames: two frames of one video (see sampling) | tracks: two crops of one object track (needs "
        "tracks=DIR) | both: a frame pair and a track pair per sample, loss frame_weight*L(frames) + "
        "track_weight*L(crops)"
    )
    sampling: Literal["gap", "halves"] = option(
        "gap", "frame pairs: gap: two frames min_gap..max_gap apart | halves: the released VFS sampler, one random "
        "frame in each of 8 equal segments of the whole video, a pair = one frame of the first 4 segments and one "
        "of the last 4 (min_gap / max_gap unused)"
    )
    min_gap: float = option(0, "smallest gap between the frames of a pair")
    max_gap: float = option(30, "largest gap between the frames of a pair (0: two views of one frame)")
    gap_unit: Literal["frames", "seconds"] = option("frames", "unit of min_gap / max_gap")
    tracks: str = option("", "folder written by 'vidssl tracks' over the training data (positives=tracks|both)")
    track_min_gap: int = option(0, "fewest frames between the two boxes of a track pair")
    track_max_gap: int = option(30, "most frames between the two boxes of a track pair")
    track_min_length: int = option(2, "leave out tracks with fewer boxes")
    track_context: float = option(1.2, "crop this many times the box, around its centre (1.0: the box alone)")
    frame_weight: float = option(1.0, "positives=both: weight of the frame-pair loss")
    track_weight: float = option(1.0, "positives=both: weight of the track-pair loss")


def check_pairs(opts: PairOptions) -> None:
    """Raise a one-line error for inconsistent pair options (before any data is read)."""
    if opts.positives == "frames":
        if opts.tracks:
            raise ValueError(f"tracks={opts.tracks} is set but positives=frames: use positives=both (frame and track "
                             "pairs) or positives=tracks (track pairs only)")
        if not 0 <= opts.min_gap <= opts.max_gap:
            raise ValueError(f"need 0 <= min_gap <= max_gap, got {opts.min_gap}, {opts.max_gap}")
        return
    if not opts.tracks:
        raise ValueError(f"positives={opts.positives} needs tracks=DIR (a folder written by 'vidssl tracks')")
    if not Path(opts.tracks).is_dir():
        raise FileNotFoundError(f"tracks={opts.tracks}: no such folder (write one with 'vidssl tracks')")
    if not 0 <= opts.track_min_gap <= opts.track_max_gap:
        raise ValueError(f"need 0 <= track_min_gap <= track_max_gap, got {opts.track_min_gap}, {opts.track_max_gap}")


def pair_data(opts: PairOptions, *, transform: SampleTransform | None = None, color: bool = True,
              frames_per_half: int = 1) -> DataSpec:
    """The DataSpec of ``opts``: frame pairs, track-crop pairs, or both.

    ``transform`` is a view recipe called once per sample with both frames (or crops), e.g.
    :func:`vidssl.data.views.byol_views`; by default each frame gets the trainer's symmetric
    augmentation independently. A recipe with a gap of 0 decodes one frame and cuts both views
    from it. ``frames_per_half`` (``sampling=halves`` only): frames of each half per sample, so
    ``frames`` is (B, 2 * frames_per_half, 3, S, S), the first half's frames first (VFS's
    ``intra_video``: 4).
    """
    check_pairs(opts)
    if frames_per_half != 1 and opts.sampling != "halves":
        raise ValueError(f"frames_per_half={frames_per_half} needs sampling=halves (a gap pair has one frame per side)")
    one_frame = transform is not None and opts.max_gap == 0 and opts.sampling == "gap"
    if opts.sampling == "halves":
        sampler: ClipSampler | PairSampler | HalvesSampler = HalvesSampler(per_half=frames_per_half)
    elif one_frame:
        sampler = ClipSampler(length=1)
    else:
        sampler = PairSampler(min_gap=opts.min_gap, max_gap=opts.max_gap, unit=opts.gap_unit)
    if opts.positives == "frames":
        return DataSpec(sampler, transform=transform, color=color)
    if opts.positives == "tracks":
        return DataSpec(sampler, transform=transform, color=color, dataset=functools.partial(_track_dataset, opts))
    return DataSpec(sampler, transform=transform, color=color, dataset=functools.partial(_frames_and_tracks, opts),
                    views=("frames", "crops"))


def _track_dataset(opts: PairOptions, **kwargs: Any) -> Dataset:
    """A :class:`~vidssl.data.track_pairs.TrackPairDataset` of ``opts.tracks``; ``kwargs`` are the
    trainer's dataset arguments (videos, backend, size, transform, consistent, seed, data_root, ...)."""
    from vidssl.data.track_pairs import TrackPairDataset, native_frames, native_sizes
    from vidssl.data.tracks import read_manifest, read_tracks

    manifest = read_manifest(opts.tracks)
    return TrackPairDataset(
        kwargs["videos"],
        tracks=read_tracks(opts.tracks, min_length=opts.track_min_length),
        data_root=Path(kwargs.get("data_root") or manifest["data"]),
        native_sizes=native_sizes(manifest),
        native_frames=native_frames(manifest),
        min_gap=opts.track_min_gap,
        max_gap=opts.track_max_gap,
        min_length=opts.track_min_length,
        context=opts.track_context,
        backend=kwargs["backend"],
        size=kwargs["size"],
        transform=kwargs["transform"],
        whole_pair=kwargs.get("consistent", False),
        samples_per_epoch=kwargs["samples_per_epoch"],
        seed=kwargs["seed"],
    )


def _frames_and_tracks(opts: PairOptions, **kwargs: Any) -> Dataset:
    from vidssl.data.datasets import VideoFrameDataset
    from vidssl.data.track_pairs import FramesAndTracks

    frame_kwargs = {k: v for k, v in kwargs.items() if k != "data_root"}
    return FramesAndTracks(VideoFrameDataset(**frame_kwargs), _track_dataset(opts, **kwargs))
