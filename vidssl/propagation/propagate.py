"""Label propagation through a video, streamed, under the protocol of a published codebase.

    extractor = extractor_for(PropagationConfig(preset="crw", encoder="runs/fti"))
    for frame, soft in propagate(frames, first_labels, extractor, settings=PropagationConfig(preset="crw")):
        ...   # frame (H, W, 3) uint8; soft (L, h, w) labels on the feature grid, frame 0 first

The protocol: L2-normalized dense features; the context of frame t is the first frame (with its
given labels) and the ``context`` frames before t (with their predicted soft labels); each target
position takes the ``topk`` most similar context positions within its neighbourhood, a softmax of
similarity / ``temperature``, and their labels' weighted sum (:mod:`vidssl.propagation.affinity`).

Published numbers are comparable only under the codebase's own protocol, so ``preset=`` sets every
key in which they differ (:data:`PRESETS`; explicit keys still override), including how the first
mask is put on the feature grid and how predictions are upsampled (``first_mask``, ``upsample``:
:mod:`vidssl.propagation.masks`), and float32 throughout (``precision``: the released codes run
float32; vidssl's own ``auto`` stores features in float16 on a GPU). Without a preset the defaults
are vidssl's own: CRW's numbers (stride 8, 20 + first, top-k 10, temperature 0.05, circle of radius
12) with DINO's handling of the first frame (restricted like the others) and of the start (only
frames that exist), cell averages for the first mask and upsampling on the cells' geometry.

Memory does not grow with the video: frames are read ``batch`` at a time, and the context is a
fixed ring of (1 + ``context``) feature maps and soft labels at feature resolution, allocated once
(:class:`vidssl.propagation.affinity.Context`), with each step's working set capped by ``chunk_mb``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from vidssl.config import ConfigError, option, to_dict
from vidssl.data.backends import VideoReader, backend_help
from vidssl.features import CopyFirst, FeatureExtractor, Input, input_option, resolve_features, resolve_input
from vidssl.files import atomic_write_json
from vidssl.propagation.affinity import Context, Neighbourhood, TileGrid, dense_is_cheaper
from vidssl.propagation.keypoints import Keypoints
from vidssl.propagation.masks import FirstMask

log = logging.getLogger(__name__)

DEFAULTS: dict[str, object] = {
    "stride": 8, "layer": "", "context": 20, "topk": 10, "temperature": 0.05, "radius": 12.0,
    "neighbourhood": "circle", "first_unrestricted": False, "fill": "none", "size": 0, "size_multiple": 1,
    "norm_mask": False, "first_mask": "area", "upsample": "grid", "ties": False, "precision": "auto",
}
"""The protocol keys without a preset (vidssl's own protocol: module docstring)."""

PRESETS: dict[str, dict[str, object]] = {
    # ajabri/videowalk code/test.py, README command (--topk 10 --videoLen 20 --radius 12
    # --temperature 0.05 --cropSize -1); utils.MaskedAttention: dist < radius; test.py adds the mask
    # to every key frame but long_mem (the first): A[0, :, len(long_mem):] += D; data/vos.py repeats
    # frame 0 videoLen times before the video (test_utils.context_index_bank), so the early context
    # is copies of the first frame; --remove-layers layer4: the trunk ends at layer3 (res3 here);
    # vos.py: the one-hot first mask cv2.resize'd (bilinear) to ceil(H / 8) x ceil(W / 8);
    # test_utils.dump_predictions: the soft labels cv2.resize'd (bilinear) to the frame, np.argmax
    # (norm_mask off in the README command). Deviations: frame 0's output is the annotation itself
    # (CRW writes its grid labels stretched back; DAVIS scores neither); a void (255) region of the
    # first mask is background here (CRW makes it a label of its own colour); labels are ordered by
    # id (CRW by their BGR colour: the same order up to 7 objects; it only breaks exact ties).
    "crw": {"stride": 8, "layer": "res3", "context": 20, "topk": 10, "temperature": 0.05, "radius": 12.0,
            "neighbourhood": "circle", "first_unrestricted": True, "fill": "repeat", "size": 0,
            "size_multiple": 1, "norm_mask": False, "first_mask": "bilinear", "upsample": "stretch", "ties": False,
            "precision": "float32"},
    # xvjiarui/VFS configs/r18_sgd_cos_100e_r2_1xNx8_k400.py test_cfg (precede_frames=20, topk=10,
    # temperature=0.07, strides=(1, 2, 1, 1), out_indices=(2,), neighbor_range=24, with_first,
    # with_first_neighbor) and the test pipeline Resize(scale=(-1, 480)); mmaction/models/trackers/
    # vanilla_tracker.py: keys = frames max(0, t - 20) .. t - 1 plus the first (frame 0 twice early),
    # spatial_neighbor(mode='circle'): dist < neighbor_range // 2, applied to every frame; ref_seg_map
    # nearest-resized to the grid; predictions min-max normalized per label before argmax.
    # out_indices=(2,) is torchvision's layer3 (mmaction counts stages from 0), i.e. res3 here, not
    # the res4 the table says; seg_logit F.interpolate'd (bilinear, align_corners=False)
    # straight to the original frame size: upsample=stretch (here by OpenCV, the same rule; the
    # weights may differ in their last bit).
    "vfs": {"stride": 8, "layer": "res3", "context": 20, "topk": 10, "temperature": 0.07, "radius": 12.0,
            "neighbourhood": "circle", "first_unrestricted": False, "fill": "include_first", "size": 480,
            "size_multiple": 1, "norm_mask": True, "first_mask": "nearest", "upsample": "stretch", "ties": False,
            "precision": "float32"},
    # facebookresearch/dino eval_video_segmentation.py: --n_last_frames 7, --topk 5,
    # --size_mask_neighborhood 12 (restrict_neighborhood: a (2*12+1)^2 square, every frame), exp(aff /
    # 0.1) normalized over the kept top-k (= softmax at 0.1), a queue of frames after the first;
    # read_frame: short side 480, long side floored to a multiple of 64; read_seg: nearest resize to
    # the patch grid (PIL NEAREST of the full-size annotation); aff[aff < tk_val_min] = 0 keeps
    # every value tied with the k-th (ties); F.interpolate(scale_factor=patch, bilinear) at the
    # processing size, norm_mask, argmax, then PIL NEAREST of the label map to the frame size
    # (upsample=grid_nearest). Deviations: weights exp(a / 0.1) / sum as a softmax (the same up to
    # rounding); frames resized by the video backend (PIL bilinear for frame folders; DINO:
    # cv2.resize INTER_LINEAR): the features, not the protocol; square frames: DINO's read_seg
    # swaps the sides (a bug), vidssl does not.
    "dino": {"stride": 0, "layer": "", "context": 7, "topk": 5, "temperature": 0.1, "radius": 12.0,
             "neighbourhood": "square", "first_unrestricted": False, "fill": "none", "size": 480,
             "size_multiple": 64, "norm_mask": True, "first_mask": "nearest", "upsample": "grid_nearest",
             "ties": True, "precision": "float32"},
    # The DINOv3 segmentation-tracking notebook (paper App. D.5): max_context_length 7,
    # neighborhood_size 12 with shape "circle" (make_neighborhood_mask: norm <= size, every frame),
    # topk 5 (values >= the k-th kept), softmax at temperature 0.2, probabilities upsampled
    # bilinearly to full resolution and min-max normalized per label (postprocess_probs) before
    # argmax. Deviations: the notebook's own frame resizing was not available to check; frames are
    # used at their size, the long side floored to a multiple of the 16-pixel patch (the ViT drops
    # a partial patch of the short side); its first-mask and upsampling rules were not checked
    # either (vidssl's own: area, grid).
    "dinov3": {"stride": 0, "layer": "", "context": 7, "topk": 5, "temperature": 0.2, "radius": 12.0,
               "neighbourhood": "closed_circle", "first_unrestricted": False, "fill": "none", "size": 0,
               "size_multiple": 16, "norm_mask": True, "first_mask": "area", "upsample": "grid", "ties": True,
               "precision": "float32"},
    # qianduoduolr/Spa-then-Temp configs/test/res18_d8.py test_cfg_davis (precede_frames=20, topk=10,
    # temperature=0.07, out_indices=(2,), neighbor_range=24, mode='square', with_first,
    # with_first_neighbor) and base_data.py (Resize(scale=(-1, 480))); vcl/models/trackers/
    # vanilla_tracker.py as VFS's (frame 0 twice early, min-max before argmax). Square of side
    # 2 * (24 // 2) + 1. Deviations: its encoders read Lab input (Normalize mean [50, 0, 0], std
    # [50, 127, 127]), vidssl feeds RGB; the d8 stride tuple is read as stride 8 (the config's name);
    # upsample=stretch taken from VFS's tracker (its code is not mirrored here to check).
    "spa-then-temp": {"stride": 8, "layer": "res3", "context": 20, "topk": 10, "temperature": 0.07,
                      "radius": 12.0, "neighbourhood": "square", "first_unrestricted": False,
                      "fill": "include_first", "size": 480, "size_multiple": 1, "norm_mask": True,
                      "first_mask": "nearest", "upsample": "stretch", "ties": False, "precision": "float32"},
}
"""Every protocol key of each published codebase (comments: the files followed and what differs)."""


@dataclass(frozen=True)
class PropagationConfig:
    """How labels are propagated; shared by ``vidssl propagate``, ``eval davis`` and ``eval jhmdb``
    and recorded with their results. Keys left at None take the preset's value (or
    :data:`DEFAULTS`): after construction every key holds its resolved value."""

    preset: Literal["", "default", "crw", "vfs", "dino", "dinov3", "spa-then-temp"] = option(
        "", "protocol of a published codebase: crw | vfs | dino | dinov3 | spa-then-temp (explicit keys override); "
        "'' or default = vidssl's own"
    )
    encoder: str = option(
        "pixels", "random (random-init resnet18) | pixels (Lab colour) | copy (first labels repeated) | run folder "
        "| .safetensors | random:NAME"
    )
    stride: int | None = option(None, "feature stride: ResNets are rebuilt at it (8, 16, 32); 0 = the encoder's own "
                                "(default 8)")
    layer: Literal["", "res3", "res4"] | None = option(
        None, "ResNet layer: res3 (trunk up to layer3, CRW) | res4 (layer4) | '' = the encoder's output (default '')"
    )
    context: int | None = option(None, "previous frames in the context, besides the first frame (default 20)")
    topk: int | None = option(None, "context positions kept per target position (default 10)")
    temperature: float | None = option(None, "softmax temperature of the kept affinities (default 0.05)")
    radius: float | None = option(None, "neighbourhood radius in feature cells; 0 = none (default 12)")
    neighbourhood: Literal["circle", "closed_circle", "square"] | None = option(
        None, "circle: d < radius | closed_circle: d <= radius | square: |dy|, |dx| <= radius (default circle)"
    )
    first_unrestricted: bool | None = option(None, "the first frame ignores the neighbourhood (CRW; default false)")
    fill: Literal["none", "repeat", "include_first"] | None = option(
        None, "early context: none (frames that exist) | repeat (copies of frame 0, CRW) | include_first "
        "(the previous frames counting frame 0, VFS) (default none)"
    )
    size: int | None = option(None, "short side the frames are resized to before the encoder; 0 = as they are "
                              "(default 0)")
    size_multiple: int | None = option(None, "then the long side floored to a multiple of this (DINO: 64; default 1)")
    norm_mask: bool | None = option(None, "masks: min-max normalize each label's map before argmax (default false)")
    first_mask: Literal["area", "nearest", "bilinear"] | None = option(
        None, "masks: first mask on the grid by cell averages (area) | PIL nearest (DINO, VFS) | OpenCV bilinear of "
        "the one-hot (CRW) (default area)"
    )
    upsample: Literal["grid", "stretch", "grid_nearest"] | None = option(
        None, "masks: soft labels to the frame: bilinear on the cells' geometry (grid) | the grid resized bilinearly "
        "to the frame (stretch: CRW, VFS) | grid at the encoder's size, argmax, nearest to the frame "
        "(grid_nearest: DINO) (default grid)"
    )
    ties: bool | None = option(None, "keep every neighbour tied with the k-th, not exactly topk (DINO; default false)")
    sigma: float = option(0.5, "keypoints: Gaussian heatmap sigma in feature cells (CRW: 0.5)")
    peak_topk: int = option(3, "keypoints: a joint is the value-weighted mean of its heatmap's top cells (CRW: 3)")
    input: Input = input_option()
    impl: Literal["auto", "local", "dense", "naive"] = option(
        "auto", "step: auto (local, or dense for small maps) | local | dense | naive (reference)"
    )
    tile: int = option(0, "side of the target tiles of the local step (feature cells); 0 = 12, or 3 for < 32 channels")
    chunk_mb: float = option(256.0, "working-set cap of one batch of tiles (MiB)")
    batch: int = option(4, "frames per encoder forward pass")
    device: str = option("auto", "auto (CUDA when available) | cpu | cuda:N")
    precision: Literal["auto", "float32", "float16", "bfloat16"] | None = option(
        None, "features and the step: float32 (encoder in float32 too) | auto = float16 on CUDA (encoder under bf16 "
        "autocast), float32 on CPU (default auto; every preset: float32)"
    )
    seed: int = option(0, "seed of a random encoder")

    def __post_init__(self) -> None:
        if self.preset == "default":  # the name 'vidssl bench preset=' gives vidssl's own protocol; recorded as ''
            object.__setattr__(self, "preset", "")
        if self.preset and self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        # resolved here, so results record what the encoder was given
        object.__setattr__(self, "input", resolve_input(self.input, self.encoder))
        chosen = PRESETS.get(self.preset, DEFAULTS)
        for key, value in chosen.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.context < 0 or self.topk < 1 or self.temperature <= 0 or self.batch < 1 or self.tile < 0:
            got = ", ".join(f"{k}={getattr(self, k)}" for k in ("context", "topk", "temperature", "batch", "tile"))
            raise ConfigError(f"need context >= 0, topk >= 1, temperature > 0, batch >= 1, tile >= 0; got {got}")
        if self.size < 0 or self.size_multiple < 1 or self.stride < 0:
            raise ConfigError(f"need size >= 0, size_multiple >= 1, stride >= 0: {self}")

    @property
    def neighbourhood_spec(self) -> Neighbourhood:
        return Neighbourhood(self.radius, self.neighbourhood, self.first_unrestricted)


PROTOCOL_KEYS = tuple(DEFAULTS)
assert all(set(p) == set(DEFAULTS) for p in PRESETS.values())  # every preset sets every protocol key
assert set(PROTOCOL_KEYS) <= {f.name for f in fields(PropagationConfig)}


def extractor_for(settings: PropagationConfig) -> FeatureExtractor:
    """The feature extractor ``settings`` name (encoder, stride, layer, device, precision, input)."""
    return resolve_features(settings.encoder, stride=settings.stride or None, device=settings.device,
                            precision=settings.precision, seed=settings.seed, gray=settings.input == "gray",
                            layer=settings.layer)


def read_frames(reader: VideoReader, *, batch: int = 4) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 frames of ``reader`` in order, ``batch`` decoded at a time."""
    for start in range(0, reader.num_frames, batch):
        yield from reader.get_frames(range(start, min(start + batch, reader.num_frames)))


def make_context(height: int, width: int, *, channels: int, num_labels: int, settings: PropagationConfig,
                 dtype: torch.dtype, device: torch.device) -> Context:
    """The context ring for ``settings`` on an (h, w) grid: ``impl=auto`` is ``local``, or ``dense``
    where the full affinity is no larger than the windows' (small maps) or there is no radius."""
    tile = settings.tile or (12 if channels >= 32 else 3)
    nb = settings.neighbourhood_spec
    impl = settings.impl
    if impl == "auto":
        grid = TileGrid(height, width, tile, nb.reach(height, width))
        small = dense_is_cheaper(grid, frames=1 + settings.context, chunk_mb=settings.chunk_mb)
        impl = "dense" if nb.unrestricted or small else "local"
    return Context(height, width, context=settings.context, channels=channels, num_labels=num_labels,
                   neighbourhood=nb, impl=impl, tile=tile, chunk_mb=settings.chunk_mb, dtype=dtype, device=device)


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
        extractor: maps (B, H, W, 3) uint8 frames to (B, h, w, C) L2-normalized features
            (:class:`vidssl.features.CopyFirst`: every frame gets ``first_labels``).
        settings: the protocol keys, impl, tile, chunk_mb, batch.

    Yields:
        (frame, labels): each frame with its (L, h, w) float32 soft labels on ``extractor``'s
        device; frame 0 comes with ``first_labels``.
    """
    ctx: Context | None = None
    labels0 = first_labels.to(extractor.device, torch.float32)
    copy = isinstance(extractor, CopyFirst)
    iterator = iter(frames)
    while batch := [f for _, f in zip(range(settings.batch), iterator, strict=False)]:
        features = extractor(np.stack(batch))  # (B, h, w, C)
        for frame, feats in zip(batch, features, strict=True):
            if labels0.shape[1:] != feats.shape[:2]:
                raise ValueError(
                    f"first-frame labels are on a {tuple(labels0.shape[1:])} grid, the features "
                    f"{tuple(feats.shape[:2])}; build them for the grid of the frames the encoder sees"
                )
            if copy:
                yield frame, labels0
                continue
            if ctx is None:
                ctx = make_context(*feats.shape[:2], channels=feats.shape[2], num_labels=labels0.shape[0],
                                   settings=settings, dtype=feats.dtype, device=feats.device)
                ctx.set_first(feats, labels0)
                if settings.fill == "repeat":
                    ctx.fill_with_first(settings.context)
                elif settings.fill == "include_first":
                    ctx.fill_with_first(1)
                yield frame, labels0
                continue
            labels = ctx.step(feats, topk=settings.topk, temperature=settings.temperature, ties=settings.ties)
            ctx.push(feats, labels)
            yield frame, labels


def processing_size(height: int, width: int, size: int | None, multiple: int = 1) -> tuple[int, int]:
    """(H', W') the encoder sees for a ``height`` x ``width`` video: short side ``size`` (0 or None:
    as it is), then the long side floored to a multiple of ``multiple``. With ``multiple`` > 1 the
    long side is floored from its exact value, as DINO's read_frame does (``int(size * W / H // 64 *
    64)``; a square frame's width counts as its long side), not from the rounded one."""
    from vidssl.data.backends import output_size

    h, w = output_size(height, width, size or None)
    if multiple > 1 and size:
        exact = size * max(height, width) / min(height, width)  # read_frame's float arithmetic
        long = max(multiple, int(exact // multiple * multiple))
        return (size, long) if height <= width else (long, size)
    if h <= w:
        return h, max(multiple, w // multiple * multiple)
    return max(multiple, h // multiple * multiple), w


def seen_size(video: Path, settings: PropagationConfig, *, backend: str = "auto") -> tuple[int, int]:
    """(H', W') the encoder sees for ``video`` under ``settings``."""
    from vidssl.data.backends import open_video

    reader = open_video(video, backend=backend)
    try:
        return processing_size(reader.height, reader.width, settings.size, settings.size_multiple)
    finally:
        reader.close()


def protocol_record(settings: PropagationConfig, frame_size: tuple[int, int] | None) -> dict:
    """What every result file records besides its figures: every resolved key (preset included),
    the frame size the encoder saw ([H, W]) and the torch version."""
    return {"settings": to_dict(settings), "frame_size": list(frame_size) if frame_size else None,
            "torch": torch.__version__}


@dataclass(frozen=True)
class PropagateConfig(PropagationConfig):
    """``vidssl propagate VIDEO labels=FILE``: masks or keypoints through one video."""

    video: str = option("", "video file or frame folder")
    labels: str = option("", "first frame's labels: a palette/grayscale mask PNG, or keypoints (.json, JHMDB .mat)")
    out: str = option(
        "runs/propagate", "output folder: <name>/<frame>.png or <name>.json, <name>.mp4, propagation.json"
    )
    overlay: bool = option(True, "also write <name>.mp4 with the labels drawn over the frames")
    backend: str = option("auto", backend_help())


def frame_names(video: Path, num_frames: int) -> list[str]:
    """Output names of a video's frames: a frame folder's file stems (so DAVIS results line up
    with the annotations), else 00000, 00001, ..."""
    if video.is_dir():
        from vidssl.data.backends import list_frame_files

        return [p.stem for p in list_frame_files(video)]
    return [f"{i:05d}" for i in range(num_frames)]


@dataclass(frozen=True)
class MaskRun:
    """What :func:`propagate_masks` did: frames written, the video's (H, W) and the (H', W') its
    encoder saw (recorded with results, so no caller opens the video again to learn them)."""

    frames: int
    size: tuple[int, int]
    seen: tuple[int, int]


def propagate_masks(
    video: Path,
    annotation: Path | FirstMask,
    out: Path,
    extractor: FeatureExtractor,
    *,
    settings: PropagationConfig,
    name: str | None = None,
    overlay: bool = False,
    backend: str = "auto",
    on_mask: Callable[[int, str, np.ndarray], None] | None = None,
    progress: bool = True,
    names: list[str] | None = None,
) -> MaskRun:
    """Propagate a first-frame mask PNG (or one already read, :func:`vidssl.propagation.masks.read_first_mask`)
    through ``video``; returns the frame count and the sizes (:class:`MaskRun`).

    The video is opened once, and once more at the size the encoder sees when that differs (the
    backend resizes). ``names``: the frames' output names when the caller has listed them.

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
    from vidssl.propagation.masks import first_labels, grid_size, read_first_mask, to_mask, write_mask
    from vidssl.propagation.overlay import mask_overlay

    first = annotation if isinstance(annotation, FirstMask) else read_first_mask(annotation)
    reader = open_video(video, backend=backend)
    size = (reader.height, reader.width)
    if first.mask.shape != size:
        reader.close()
        shown = first.path or "first-frame annotation"
        raise ValueError(f"{shown}: mask is {first.mask.shape[1]}x{first.mask.shape[0]}, "
                         f"video {video} is {size[1]}x{size[0]}")
    seen = processing_size(*size, settings.size, settings.size_multiple)
    if seen != size:
        reader.close()
        reader = open_video(video, backend=backend, size=seen)
    stride = extractor.stride
    labels = first_labels(first.mask, first.ids, grid_size(*seen, stride), stride=stride, frame=seen,
                          rule=settings.first_mask)
    copy = isinstance(extractor, CopyFirst)
    name = name or video.stem
    names = names if names is not None else frame_names(video, reader.num_frames)
    stream = propagate(read_frames(reader, batch=settings.batch), labels, extractor, settings=settings)

    def frames_done() -> Iterator[np.ndarray]:
        for index, (frame, soft) in enumerate(tqdm(stream, total=reader.num_frames, desc=name, unit="frame",
                                                   disable=not progress, leave=False)):
            if index == 0 or copy:
                mask = first.mask
            else:
                mask = to_mask(soft, first.ids, size, stride=stride, frame=seen, norm=settings.norm_mask,
                               upsample=settings.upsample)
            write_mask(out / name / f"{names[index]}.png", mask, first.palette)
            if on_mask is not None:
                on_mask(index, names[index], mask)
            yield mask_overlay(frame, mask, first.palette) if overlay else frame

    try:
        if overlay:  # write_video pulls the frames lazily: one frame in memory at a time
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            count = write_video(out / f"{name}.mp4", frames_done(), reader.fps or 24.0)
        else:
            count = sum(1 for _ in frames_done())
    finally:
        reader.close()
    return MaskRun(frames=count, size=size, seen=seen)


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
    seen = processing_size(*size, settings.size, settings.size_multiple)
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
            if index == 0 or isinstance(extractor, CopyFirst):
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
    seen: tuple[int, int] | None = None
    if labels.suffix.lower() == ".png":
        kind = "masks"
        run = propagate_masks(video, labels, out, extractor, settings=cfg, name=name, overlay=cfg.overlay,
                              backend=cfg.backend)
        frames, seen = run.frames, run.seen
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
              "fps": frames / seconds, "outputs": outputs, "features": extractor.name,
              **protocol_record(cfg, seen or seen_size(video, cfg, backend=cfg.backend))}
    atomic_write_json(out / "propagation.json", record, indent=1)
    return record
