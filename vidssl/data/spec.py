"""What a method asks of the loader: a :class:`DataSpec`.

The trainer reads it to build the dataset; nothing in it knows about methods, so the same pieces
(samplers, view recipes in :mod:`vidssl.data.views`, pair sources in :mod:`vidssl.data.pairs`)
serve any method that composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from vidssl.data.samplers import Sampler

SampleTransform = Callable[..., "torch.Tensor | dict[str, torch.Tensor]"]
"""The frames of one sample -> uint8 (V, 3, h, w) views, or a dict of such tensors (e.g. DINO's
``{"frames": global crops, "local": local crops}``). Called with uint8 (T, 3, H, W) decoded
frames, or with a list of T uint8 (3, h_i, w_i) crops of different sizes (object-track pairs)."""

DatasetFactory = Callable[..., Dataset]
"""Called with the keyword arguments of :class:`vidssl.data.datasets.VideoFrameDataset`
(``videos, sampler, backend, size, transform, consistent, samples_per_epoch, seed``) plus
``data_root``, the training folder."""


@dataclass(frozen=True)
class DataSpec:
    """What a method needs from the loader.

    Attributes:
        sampler: which frames of a video make one sample.
        consistent: the augmentation is drawn once per sample and shared by its frames (CPC,
            colorization) rather than drawn per frame (FTI pairs).
        transform: replaces the default augmentation (random resized crop to ``image_size``,
            flip, then colour) with a view recipe called once per sample (multi-crop, BYOL's
            asymmetric pair). It runs in the loader workers with torch's RNG seeded per sample,
            and does its own colour augmentation if it wants any.
        color: with the default transform, apply SimCLR colour augmentation (jitter, grayscale,
            blur), in the workers or batched on the device (``color_on``). Off for methods whose
            target is the colour itself (colorization) or that must not see it (pretext tasks).
        dataset: builds the dataset instead of :class:`~vidssl.data.datasets.VideoFrameDataset`
            (object-track crops); gets the same keyword arguments plus ``data_root``.
        views: the batch keys holding image views, uint8 (B, V, 3, H, W): the ones the trainer's
            device colour pass augments. Every tensor of a batch reaches the method on the
            training device, unchanged otherwise; the method normalizes pixels itself
            (:meth:`vidssl.methods.base.Method.normalize`).
    """

    sampler: Sampler
    consistent: bool = False
    transform: SampleTransform | None = None
    color: bool = True
    dataset: DatasetFactory | None = None
    views: tuple[str, ...] = ("frames",)


def pixels_per_sample(spec: DataSpec, *, image_size: int) -> int:
    """Encoder input pixels of one sample of ``spec`` trained at ``image_size``: every view the
    trained encoder sees (frames, crops or patches, times their area), summed over the view keys
    (``spec.views``; a MoCo / BYOL key encoder's forward pass is not counted).

    Read from the data pieces themselves, so it holds for any method: the sampler says how many
    frames a sample decodes; without a view recipe each frame becomes one ``image_size`` crop per
    view key (a frame pair and a track-crop pair: 4 views); a view recipe (CRW's patch grid, DINO's
    multi-crop) is run once on blank frames and its output counted. Views a method makes from the
    batch on the device are not in the spec and not counted (rotation's four rotations of each
    frame, jigsaw's and relpatch's tiles): compare such methods on steps, not on this budget.
    """
    fps = 30.0  # any rate: it decides which frames, not how many
    frames = len(spec.sampler(spec.sampler.min_frames(fps) + 1000, fps, torch.Generator().manual_seed(0)))
    if spec.transform is None:
        return len(spec.views) * frames * image_size * image_size
    with torch.random.fork_rng(devices=[]):  # the recipe draws crops from torch's RNG: leave the caller's alone
        torch.manual_seed(0)
        out = spec.transform(torch.zeros(frames, 3, image_size, image_size, dtype=torch.uint8))
    if isinstance(out, dict):  # one entry per view key (DINO: global and local crops)
        return sum(v.shape[0] * v.shape[-2] * v.shape[-1] for v in out.values())
    return len(spec.views) * out.shape[0] * out.shape[-2] * out.shape[-1]  # crops go through the same recipe
