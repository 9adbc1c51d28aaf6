"""Label propagation through a video, streamed: CRW / DINO's protocol with bounded memory.

    extractor = resolve_features("runs/fti", stride=8)
    for frame, soft in propagate(frames, first_labels, extractor, settings=PropagationConfig()):
        ...   # frame (H, W, 3) uint8; soft (L, h, w) labels on the feature grid, frame 0 first

The protocol (CRW, Jabri et al. 2020, arXiv:2006.14613; DINO, Caron et al. 2021,
arXiv:2104.14294): L2-normalized dense features at stride 8; the context of frame t is the first
frame (with its given labels) and the ``context`` frames before t (with their predicted soft
labels); each target position takes the ``topk`` most similar context positions within
``radius`` feature cells, softmax of similarity / ``temperature``, and their labels' weighted sum.
The defaults are CRW's DAVIS settings: stride 8, 20 previous frames + the first, top-k 10,
temperature 0.05, radius 12.

Memory does not grow with the video: frames are read ``batch`` at a time, and the context is a
fixed ring of (1 + ``context``) feature maps and soft labels at feature resolution, kept padded
and channels-last for the tiled step of :mod:`vidssl.propagation.affinity`, whose working set is
capped by ``chunk_mb``. Maps so small that every window covers most of them (JHMDB's 40 x 30)
take the direct full-affinity computation instead, when it is cheaper and fits ``chunk_mb``: the
same result. Differences from CRW's code: early frames use only the frames that exist (CRW
repeats the first frame to fill the context), and the radius applies to the first frame too (as
in DINO).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from vidssl.config import ConfigError, option, to_dict
from vidssl.data.backends import VideoReader
from vidssl.features import FeatureExtractor, resolve_features
from vidssl.files import atomic_write_json
from vidssl.propagation.affinity import TileGrid, propagate_labels_naive, propagate_tiles
from vidssl.propagation.keypoints import Keypoints

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PropagationConfig:
    """How labels are propagated; shared by ``vidssl propagate``, ``eval davis`` and ``eval jhmdb``
    and recorded with their results."""

    encoder: str = option(
        "pixels", "pixels (Lab colour) | random (random-init resnet18) | run folder | .safetensors | random:NAME"
    )
    stride: int | None = option(8, "feature stride: ResNets are rebuilt at it (8, 16, 32); None = the encoder's own")
    context: int = option(20, "previous frames in the context, besides the first frame (CRW: 20)")
    topk: int = option(10, "context positions kept per target position (CRW: 10)")
    temperature: float = option(0.05, "softmax temperature of the kept affinities (CRW: 0.05)")
    radius: float = option(12.0, "context positions farther than this (feature cells) are ignored; 0 = none (CRW: 12)")
    size: int | None = option(None, "short side the frames are resized to before the encoder (None = as they are)")
    sigma: float = option(0.5, "keypoints: Gaussian heatmap sigma in feature cells (CRW: 0.5)")
    peak_topk: int = option(3, "keypoints: a joint is the value-weighted mean of its heatmap's top cells (CRW: 3)")
    input: Literal["rgb", "gray"] = option(
        "rgb", "what the encoder sees: rgb | gray (Lab lightness, for colorization encoders)"
    )
    tile: int = option(12, "side of the target tiles of the local affinity (feature cells)")
    chunk_mb: float = option(256.0, "working-set cap of one batched affinity matmul (MiB)")
    batch: int = option(4, "frames per encoder forward pass")
    naive: bool = option(False, "use the full-affinity reference implementation (slow, memory grows with frame area^2)")
    device: str = option("auto", "auto (CUDA when available) | cpu | cuda:N")
    precision: Literal["auto", "float32", "float16", "bfloat16"] = option(
        "auto", "stored features: auto = float16 on CUDA, float32 on CPU"
    )
    seed: int = option(0, "seed of a random encoder")

    def __post_init__(self) -> None:
        if self.context < 0 or self.topk < 1 or self.temperature <= 0 or self.batch < 1 or self.tile < 1:
            raise ConfigError(f"need context >= 0, topk >= 1, temperature > 0, batch >= 1, tile >= 1: {self}")


def extractor_for(settings: PropagationConfig) -> FeatureExtractor:
    """The feature extractor ``settings`` name (encoder, stride, device, precision, input)."""
    return resolve_features(settings.encoder, stride=settings.stride, device=settings.device,
                            precision=settings.precision, seed=settings.seed, gray=settings.input == "gray")


def read_frames(reader: VideoReader, *, batch: int = 4) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 frames of ``reader`` in order, ``batch`` decoded at a time."""
    for start in range(0, reader.num_frames, batch):
        yield from reader.get_frames(range(start, min(start + batch, reader.num_frames)))


class ContextBank:
    """The first frame and a ring of the ``context`` most recent frames: features (T, Hp, Wp, C)
    and soft labels (T, Hp, Wp, L), padded by ``grid`` and allocated once."""

    def __init__(self, grid: TileGrid, *, context: int, channels: int, num_labels: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.grid = grid
        shape = (1 + context, *grid.padded_shape)
        self.keys = torch.zeros(*shape, channels, dtype=dtype, device=device)
        self.labels = torch.zeros(*shape, num_labels, dtype=torch.float32, device=device)
        self.context = context
        self.filled = 0  # frames after the first in the ring
        self.next = 1  # slot the next frame goes to

    def _write(self, slot: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        r, (h, w) = self.grid.reach, (self.grid.height, self.grid.width)
        self.keys[slot, r : r + h, r : r + w] = features
        self.labels[slot, r : r + h, r : r + w] = labels.permute(1, 2, 0)

    def set_first(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """(h, w, C) features and (L, h, w) labels of frame 0."""
        self._write(0, features, labels)

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a frame, dropping the oldest one once ``context`` frames are held."""
        if self.context == 0:
            return
        self._write(self.next, features, labels)
        self.filled = min(self.filled + 1, self.context)
        self.next = 1 + self.next % self.context

    def view(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and labels of the frames held (slot order; the step does not depend on it)."""
        used = 1 + self.filled  # slots 1..filled fill up before the ring wraps
        return self.keys[:used], self.labels[:used]


def dense_is_cheaper(grid: TileGrid, *, frames: int, chunk_mb: float) -> bool:
    """Whether the full affinity of a map is smaller than the tiled windows' (small maps, where
    every window covers most of the map) and fits the ``chunk_mb`` budget: then it is computed
    directly, with the same result."""
    dense = (grid.height * grid.width) ** 2
    tiled = grid.rows * grid.cols * grid.tile**2 * grid.window**2
    return dense <= tiled and dense * frames * 4 <= chunk_mb * 2**20


def propagate(
    frames: Iterable[np.ndarray],
    first_labels: torch.Tensor,
    extractor: FeatureExtractor,
    *,
    settings: PropagationConfig,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Carry ``first_labels`` through ``frames``, one frame at a time.

    Args:
        frames: (H, W, 3) uint8 RGB frames in order, frame 0 first; consumed lazily.
        first_labels: (L, h, w) soft labels of frame 0 on its feature grid (see
            :func:`vidssl.propagation.masks.to_grid`, :func:`vidssl.propagation.keypoints.heatmaps`).
        extractor: maps (B, H, W, 3) uint8 frames to (B, h, w, C) L2-normalized features.
        settings: context, topk, temperature, radius, tile, chunk_mb, batch, naive.

    Yields:
        (frame, labels): each frame with its (L, h, w) float32 soft labels on ``extractor``'s
        device; frame 0 comes with ``first_labels``.
    """
    bank: ContextBank | None = None
    iterator = iter(frames)
    while batch := [f for _, f in zip(range(settings.batch), iterator, strict=False)]:
        features = extractor(np.stack(batch))  # (B, h, w, C)
        for frame, feats in zip(batch, features, strict=True):
            if bank is None:
                labels = first_labels.to(extractor.device, torch.float32)
                if labels.shape[1:] != feats.shape[:2]:
                    raise ValueError(
                        f"first-frame labels are on a {tuple(labels.shape[1:])} grid, the features "
                        f"{tuple(feats.shape[:2])}; build them for the grid of the frames the encoder sees"
                    )
                grid = TileGrid.make(*feats.shape[:2], tile=settings.tile, radius=settings.radius)
                bank = ContextBank(grid, context=settings.context, channels=feats.shape[2],
                                   num_labels=labels.shape[0], dtype=feats.dtype, device=feats.device)
                bank.set_first(feats, labels)
                offsets, valid = grid.offsets_mask(settings.radius, feats.device), grid.valid(feats.device)
                cheaper = dense_is_cheaper(grid, frames=1 + settings.context, chunk_mb=settings.chunk_mb)
                dense = settings.naive or cheaper
                yield frame, labels
                continue
            keys, context_labels = bank.view()
            if dense:
                r, h, w = grid.reach, grid.height, grid.width
                labels = propagate_labels_naive(
                    feats.permute(2, 0, 1), keys[:, r : r + h, r : r + w].permute(0, 3, 1, 2),
                    context_labels[:, r : r + h, r : r + w].permute(0, 3, 1, 2), radius=settings.radius,
                    topk=settings.topk, temperature=settings.temperature,
                )
            else:
                labels = propagate_tiles(feats, keys, context_labels, grid, radius=settings.radius,
                                         topk=settings.topk, temperature=settings.temperature,
                                         chunk_mb=settings.chunk_mb, offsets=offsets, valid=valid)
            bank.push(feats, labels)
            yield frame, labels


def processing_size(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(H', W') the encoder sees for a ``height`` x ``width`` video and the ``size`` setting."""
    from vidssl.data.backends import output_size

    return output_size(height, width, size)


@dataclass(frozen=True)
class PropagateConfig(PropagationConfig):
    """``vidssl propagate VIDEO labels=FILE``: masks or keypoints through one video."""

    video: str = option("", "video file or frame folder")
    labels: str = option("", "first frame's labels: a palette/grayscale mask PNG, or keypoints (.json, JHMDB .mat)")
    out: str = option(
        "runs/propagate", "output folder: <name>/<frame>.png or <name>.json, <name>.mp4, propagation.json"
    )
    overlay: bool = option(True, "also write <name>.mp4 with the labels drawn over the frames")
    backend: str = option("auto", "video backend: auto | pyav | decord | opencv | frames")


def frame_names(video: Path, num_frames: int) -> list[str]:
    """Output names of a video's frames: a frame folder's file stems (so DAVIS results line up
    with the annotations), else 00000, 00001, ..."""
    if video.is_dir():
        from vidssl.data.backends import list_frame_files

        return [p.stem for p in list_frame_files(video)]
    return [f"{i:05d}" for i in range(num_frames)]


def propagate_masks(
    video: Path,
    annotation: Path,
    out: Path,
    extractor: FeatureExtractor,
    *,
    settings: PropagationConfig,
    name: str | None = None,
    overlay: bool = False,
    backend: str = "auto",
    on_mask: Callable[[int, str, np.ndarray], None] | None = None,
    progress: bool = True,
) -> int:
    """Propagate a first-frame mask PNG through ``video``; returns the number of frames.

    Writes ``out/<name>/<frame>.png`` for every frame (palette PNGs with the annotation's palette,
    DAVIS results layout; frame 0 is the annotation itself) and, with ``overlay``,
    ``out/<name>.mp4``. ``on_mask(index, frame name, (H, W) uint8 mask)`` sees each mask as it is
    made (the DAVIS evaluation scores them there, so no mask is kept).

    Raises:
        FileNotFoundError, ValueError: a missing annotation, or one whose size is not the video's
            (the messages name the files).
    """
    from vidssl.data.backends import open_video
    from vidssl.data.video_writer import write_video
    from vidssl.propagation.masks import grid_size, one_hot, read_first_mask, to_grid, to_mask, write_mask
    from vidssl.propagation.overlay import mask_overlay

    first = read_first_mask(annotation)
    reader = open_video(video, backend=backend)
    size = (reader.height, reader.width)
    if first.mask.shape != size:
        reader.close()
        raise ValueError(f"{annotation}: mask is {first.mask.shape[1]}x{first.mask.shape[0]}, "
                         f"video {video} is {size[1]}x{size[0]}")
    seen = processing_size(*size, settings.size)
    if seen != size:
        reader.close()
        reader = open_video(video, backend=backend, size=seen)
    stride = extractor.stride
    labels = to_grid(one_hot(first.mask, first.ids), grid_size(*seen, stride), stride=stride, frame=seen)
    name = name or video.stem
    names = frame_names(video, reader.num_frames)
    stream = propagate(read_frames(reader, batch=settings.batch), labels, extractor, settings=settings)

    def frames_done() -> Iterator[np.ndarray]:
        for index, (frame, soft) in enumerate(tqdm(stream, total=reader.num_frames, desc=name, unit="frame",
                                                   disable=not progress, leave=False)):
            mask = first.mask if index == 0 else to_mask(soft, first.ids, size, stride=stride, frame=seen)
            write_mask(out / name / f"{names[index]}.png", mask, first.palette)
            if on_mask is not None:
                on_mask(index, names[index], mask)
            yield mask_overlay(frame, mask, first.palette) if overlay else frame

    try:
        if overlay:  # write_video pulls the frames lazily: one frame in memory at a time
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            return write_video(out / f"{name}.mp4", frames_done(), reader.fps or 24.0)
        return sum(1 for _ in frames_done())
    finally:
        reader.close()


def propagate_keypoints(
    video: Path,
    points: Keypoints,
    out: Path,
    extractor: FeatureExtractor,
    *,
    settings: PropagationConfig,
    name: str,
    overlay: bool = False,
    backend: str = "auto",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Propagate the first frame of ``points`` through ``video`` as per-joint heatmaps.

    Writes ``out/<name>.json`` (:func:`vidssl.propagation.keypoints.write_keypoints`, with the
    heatmap peaks as ``scores``) and, with ``overlay``, ``out/<name>.mp4``.

    Returns:
        (T, J, 2) predicted pixel coordinates (frame 0: the given ones; NaN for a joint whose
        heatmap is empty, e.g. one given outside the frame) and (T, J) peak values.
    """
    from vidssl.data.backends import open_video
    from vidssl.data.video_writer import write_video
    from vidssl.propagation.keypoints import JHMDB_JOINTS, JHMDB_SKELETON, heatmaps, peaks, write_keypoints
    from vidssl.propagation.masks import grid_size
    from vidssl.propagation.overlay import keypoint_overlay

    reader = open_video(video, backend=backend)
    size = (reader.height, reader.width)
    seen = processing_size(*size, settings.size)
    if seen != size:
        reader.close()
        reader = open_video(video, backend=backend, size=seen)
    scale = np.array([seen[1] / size[1], seen[0] / size[0]])  # x, y: pixels seen per pixel given
    stride = extractor.stride
    first_xy, first_visible = points.xy[0], points.visible[0]
    labels = heatmaps((first_xy + 0.5) * scale - 0.5, first_visible, grid_size(*seen, stride), stride=stride,
                      sigma=settings.sigma)
    stream = propagate(read_frames(reader, batch=settings.batch), labels, extractor, settings=settings)
    skeleton = JHMDB_SKELETON if points.names == JHMDB_JOINTS else ()
    trajectory: list[np.ndarray] = []
    scores: list[np.ndarray] = []

    def frames_done() -> Iterator[np.ndarray]:
        for index, (frame, soft) in enumerate(tqdm(stream, total=reader.num_frames, desc=name, unit="frame",
                                                   disable=not progress, leave=False)):
            if index == 0:
                xy = np.where(first_visible[:, None], first_xy, np.nan)
                score = labels.flatten(1).amax(dim=1).numpy()
            else:
                xy, score = peaks(soft, stride=stride, topk=settings.peak_topk)
                xy = (xy + 0.5) / scale - 0.5
            trajectory.append(xy)
            scores.append(score)
            yield keypoint_overlay(frame, xy, size=size, skeleton=skeleton) if overlay else frame

    try:
        if overlay:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            write_video(out / f"{name}.mp4", frames_done(), reader.fps or 24.0)
        else:
            for _ in frames_done():
                pass
    finally:
        reader.close()
    xy, score = np.stack(trajectory), np.stack(scores)
    write_keypoints(out / f"{name}.json", Keypoints(xy=xy, visible=np.isfinite(xy).all(axis=2), names=points.names,
                                                    groups=points.groups), scores=score, size=size)
    return xy, score


def run_propagate(cfg: PropagateConfig) -> dict:
    """``vidssl propagate``: masks (a ``.png`` first-frame annotation) or keypoints (``.json`` /
    ``.mat``) through ``cfg.video``; writes the outputs and ``cfg.out/propagation.json`` (kind,
    frames, seconds, frames per second, every setting) and returns that record."""
    from vidssl.propagation.keypoints import read_keypoints

    if not cfg.video or not cfg.labels:
        raise ConfigError("propagate needs a video and its first frame's labels: vidssl propagate VIDEO labels=FILE")
    video, labels, out = Path(cfg.video), Path(cfg.labels), Path(cfg.out)
    if not video.exists():
        raise FileNotFoundError(f"{video}: no such video file or frame folder")
    if not labels.exists():
        raise FileNotFoundError(f"{labels}: no such first-frame label file")
    extractor = extractor_for(cfg)
    started = time.perf_counter()
    name = video.stem if video.is_file() else video.name
    if labels.suffix.lower() == ".png":
        kind = "masks"
        frames = propagate_masks(video, labels, out, extractor, settings=cfg, name=name, overlay=cfg.overlay,
                                 backend=cfg.backend)
        outputs = [f"{name}/"] + ([f"{name}.mp4"] if cfg.overlay else [])
    elif labels.suffix.lower() in (".json", ".mat"):
        kind = "keypoints"
        xy, _ = propagate_keypoints(video, read_keypoints(labels), out, extractor, settings=cfg, name=name,
                                    overlay=cfg.overlay, backend=cfg.backend)
        frames = len(xy)
        outputs = [f"{name}.json"] + ([f"{name}.mp4"] if cfg.overlay else [])
    else:
        raise ValueError(f"{labels}: first-frame labels must be a mask .png or keypoints .json / .mat")
    seconds = time.perf_counter() - started
    record = {"kind": kind, "video": str(video), "labels": str(labels), "frames": frames, "seconds": seconds,
              "fps": frames / seconds, "outputs": outputs, "features": extractor.name, "settings": to_dict(cfg)}
    atomic_write_json(out / "propagation.json", record, indent=1)
    return record
