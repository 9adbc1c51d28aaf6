"""Object-track positives: two crops of one tracked object at different times.

Purushwalkam & Gupta (2020, arXiv:2007.13916) use tracked region proposals separated in time as a
query / key pair next to full frames. Here the tracks come from ``vidssl tracks`` (a detector plus
an ultralytics tracker, or the synthetic ground truth); :class:`TrackPairDataset` samples a track,
two of its boxes ``min_gap..max_gap`` frames apart, decodes those two frames and crops the boxes
(enlarged by ``context`` around their centre), then augments each crop independently like an FTI
frame. :class:`FramesAndTracks` pairs every FTI frame pair with a track pair, so one run trains on
both (``batch["frames"]`` and ``batch["crops"]``).

As with :class:`~vidssl.data.datasets.VideoFrameDataset`, a sample is a function of
``(seed, epoch, index)`` alone, and a video that fails to decode is reported once and its tracks
are left out for the rest of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidssl.data.backends import Size, VideoReadError
from vidssl.data.datasets import FrameTransform, ReaderCache, VideoFrameDataset, sample_seed
from vidssl.data.index import VideoInfo

log = logging.getLogger(__name__)

TRACK_SEED_OFFSET = 7919  # track samples draw from their own stream, not the frame pairs' one


def crop_box(
    frame: torch.Tensor, box: Sequence[float], *, scale: tuple[float, float], context: float
) -> torch.Tensor:
    """The region of ``box`` in ``frame``, enlarged ``context`` times around its centre.

    Args:
        frame: uint8 (3, H, W), decoded at some size.
        box: ``x1, y1, x2, y2`` in native pixels (x2, y2 exclusive).
        scale: (sx, sy) from native to decoded pixels.
        context: 1.0 is the box itself; 1.2 adds 10% on every side. Clipped to the frame.

    Returns:
        uint8 (3, h, w) with h, w >= 1.
    """
    _, height, width = frame.shape
    sx, sy = scale
    cx, cy = (box[0] + box[2]) / 2 * sx, (box[1] + box[3]) / 2 * sy
    half_w, half_h = (box[2] - box[0]) * sx * context / 2, (box[3] - box[1]) * sy * context / 2
    x1 = int(np.clip(np.floor(cx - half_w), 0, width - 1))
    y1 = int(np.clip(np.floor(cy - half_h), 0, height - 1))
    x2 = int(np.clip(np.ceil(cx + half_w), x1 + 1, width))
    y2 = int(np.clip(np.ceil(cy + half_h), y1 + 1, height))
    return frame[:, y1:y2, x1:x2]


def pick_pair(frames: np.ndarray, *, min_gap: int, max_gap: int, generator: torch.Generator) -> tuple[int, int]:
    """Two rows of a track whose frames are ``min_gap..max_gap`` apart.

    The first row is uniform; the second uniform among rows in the gap range. A track too short
    for ``min_gap`` falls back to any row within ``max_gap`` (possibly the same one), so every
    track yields a pair.
    """
    first = int(torch.randint(len(frames), (1,), generator=generator))
    gaps = np.abs(frames - frames[first])
    candidates = np.flatnonzero((gaps >= min_gap) & (gaps <= max_gap))
    if len(candidates) == 0:
        candidates = np.flatnonzero(gaps <= max_gap)
    second = int(candidates[int(torch.randint(len(candidates), (1,), generator=generator))])
    return first, second


class TrackPairDataset(Dataset):
    """Pairs of crops of one object track.

    Each item is a dict: ``frames``: uint8 (2, 3, h, w) (after ``transform``, applied to each crop
    independently; without a transform, a list of the two raw crops), ``indices``: int64 (2,) frame
    indices, ``video``: int, position in ``videos``,
    ``track``: int, position in :attr:`tracks`.

    Args:
        videos: the training index's usable videos; tracks of other videos are left out.
        tracks: ``{video rel path: [Track, ...]}`` (:func:`vidssl.data.tracks.read_tracks`).
        data_root: the folder the rel paths are relative to.
        native_sizes: ``{rel path: (height, width)}`` the boxes' pixel frame (``tracks.json``).
        min_gap, max_gap: frames between the two boxes (see :func:`pick_pair`).
        min_length: leave out tracks with fewer boxes.
        context: crop this many times the box (see :func:`crop_box`).
        backend, size, transform, samples_per_epoch, seed: as :class:`VideoFrameDataset`.
        whole_pair: call ``transform`` once with the list of both crops (a view recipe such as
            :func:`vidssl.data.views.byol_views`) instead of once per crop.
    """

    def __init__(
        self,
        videos: Sequence[VideoInfo],
        *,
        tracks: dict[str, list[Any]],
        data_root: str | Path,
        native_sizes: dict[str, tuple[int, int]],
        native_frames: dict[str, int] | None = None,
        min_gap: int = 0,
        max_gap: int = 30,
        min_length: int = 2,
        context: float = 1.2,
        backend: str = "auto",
        size: Size = None,
        transform: FrameTransform | None = None,
        whole_pair: bool = False,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        reader_cache: int = 8,
    ) -> None:
        by_path = {str(Path(v.path).resolve()): i for i, v in enumerate(videos)}
        root = Path(data_root)
        self.videos = list(videos)
        self.tracks: list[tuple[int, Any]] = []  # (video position, Track)
        missing: list[str] = []
        other: list[str] = []  # same name, another video: tracks of it would crop the wrong frames
        for rel, video_tracks in sorted(tracks.items()):
            position = by_path.get(str((root / rel).resolve()))
            if position is None:
                missing.append(rel)
                continue
            why = _other_video(videos[position], native_frames.get(rel) if native_frames else None,
                               native_sizes.get(rel))
            if why:
                other.append(f"{rel} ({why})")
                continue
            self.tracks += [(position, t) for t in video_tracks if len(t) >= min_length]
        if missing:
            log.warning("vidssl: tracks of %d videos not in the training data (%s%s) are left out", len(missing),
                        ", ".join(missing[:3]), " ..." if len(missing) > 3 else "")
        if other:
            log.warning("vidssl: tracks of %d videos were made on other videos of the same name and are left out: "
                        "%s%s", len(other), ", ".join(other[:3]), " ..." if len(other) > 3 else "")
        if not self.tracks:
            raise ValueError(
                f"no usable tracks: none of {sum(map(len, tracks.values()))} tracks has {min_length}+ boxes in a video"
                f" of the training data under {root}" + (f" (made on other videos: {other[0]} ...)" if other else "")
            )
        self.native_sizes = native_sizes
        self.min_gap, self.max_gap, self.context = min_gap, max_gap, context
        self.transform, self.whole_pair = transform, whole_pair
        self.samples_per_epoch = samples_per_epoch or len(self.tracks)
        self.seed, self.epoch = seed + TRACK_SEED_OFFSET, 0
        self.readers = ReaderCache(backend=backend, size=size, capacity=reader_cache)
        self.excluded: set[int] = set()  # video positions that failed to decode
        self.too_short = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        while True:
            usable = [i for i, (v, _) in enumerate(self.tracks) if v not in self.excluded]
            if not usable:
                raise RuntimeError(f"all {len(self.videos)} videos with tracks failed to decode; "
                                   "see the warnings above")
            choice = usable[int(torch.randint(len(usable), (1,), generator=generator))]
            video, track = self.tracks[choice]
            try:
                return self._load(choice, video, track, generator)
            except VideoReadError as err:
                self.excluded.add(video)
                self.readers.drop(self.videos[video].path)
                log.warning("vidssl: skipping %s for the rest of the run: %s", self.videos[video].path, err)

    def _load(self, choice: int, video: int, track: Any, generator: torch.Generator) -> dict[str, Any]:
        info = self.videos[video]
        reader = self.readers.get(info.path)
        a, b = pick_pair(track.frames, min_gap=self.min_gap, max_gap=self.max_gap, generator=generator)
        indices = [int(track.frames[a]), int(track.frames[b])]
        decoded = torch.from_numpy(np.ascontiguousarray(reader.get_frames(indices))).permute(0, 3, 1, 2)
        native_h, native_w = self.native_sizes.get(track.video, (info.height, info.width))
        scale = (reader.width / native_w, reader.height / native_h)
        crops = [crop_box(f, track.boxes[row], scale=scale, context=self.context)
                 for f, row in zip(decoded, (a, b), strict=True)]
        if self.transform is None:  # raw crops of different sizes: for inspection, not batching
            return {"frames": crops, "indices": torch.tensor(indices), "video": video, "track": choice}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            if self.whole_pair:  # a view recipe that sees both crops (e.g. BYOL's asymmetric pair)
                views = self.transform(crops)
            else:
                views = torch.stack([self.transform(c) for c in crops])
        return {"frames": views, "indices": torch.tensor(indices), "video": video, "track": choice}


class FramesAndTracks(Dataset):
    """An FTI frame pair and a track crop pair per item: ``frames`` (2, 3, h, w) and ``crops``
    (2, 3, h, w), for training on both at once (the paper's combined setting)."""

    def __init__(self, frames: VideoFrameDataset, tracks: TrackPairDataset) -> None:
        self.frames, self.tracks = frames, tracks
        self.too_short = frames.too_short

    def set_epoch(self, epoch: int) -> None:
        self.frames.set_epoch(epoch)
        self.tracks.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.frames[index], "crops": self.tracks[index]["frames"]}


def _other_video(video: VideoInfo, frames: int | None, size: tuple[int, int] | None) -> str:
    """Why the tracked video (``frames``, ``size`` from ``tracks.json``) is not ``video``, or "".

    A prepared copy keeps every frame and the shape of the frame (``vidssl prepare``), so tracks of
    the original still fit it: only another frame count (one frame of slack: decoders count a damaged
    last frame differently) or another aspect ratio means another video."""
    if frames is not None and abs(int(frames) - video.num_frames) > 1:
        return f"{frames} frames tracked, {video.num_frames} here"
    if size is not None and video.height and video.width and size[0] and size[1]:
        tracked, here = size[1] / size[0], video.width / video.height
        if abs(tracked / here - 1) > 0.02:
            return f"{size[1]}x{size[0]} tracked, {video.width}x{video.height} here"
    return ""


def native_frames(manifest: dict[str, Any]) -> dict[str, int]:
    """``{rel path: frame count}`` of the videos a ``tracks.json`` tracked."""
    return {rel: int(v["num_frames"]) for rel, v in manifest.get("videos", {}).items() if "num_frames" in v}


def native_sizes(manifest: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``{rel path: (height, width)}`` from a ``tracks.json``."""
    return {rel: (int(v["height"]), int(v["width"])) for rel, v in manifest.get("videos", {}).items()}
