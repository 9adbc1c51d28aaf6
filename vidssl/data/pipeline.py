"""The training data pipeline: a folder of videos (or images) -> batches on the training device.

    data = build_loader(data=folder, spec=method.data(), device=device, dist=dist, ...)
    for batch in data.loader:
        batch = data.to_device(batch, step=step, micro=micro)

Index (:func:`~vidssl.data.index.scan`, or :func:`~vidssl.data.index.scan_images` for image
folders) -> dataset (the method's :class:`~vidssl.data.spec.DataSpec`: sampler, view recipe, pair
source) -> a DataLoader over this rank's share of one global stream of sample numbers
(:class:`SampleRange`) -> on the device, the batched colour augmentation when it runs there. The
training loop (:mod:`vidssl.engine.trainer`) builds nothing of this itself.

Every sample is a function of (seed, sample number), and every device colour draw of (seed, step,
micro-batch, view key, rank), so a run resumed at step s sees exactly the batches the
uninterrupted run saw from step s on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vidssl.data.backends import Size
from vidssl.data.datasets import VideoFrameDataset, sample_seed
from vidssl.data.gpu_augment import color_augment
from vidssl.data.index import VideoIndex, VideoInfo, held_out, scan, scan_images
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import random_crop, simclr_augment
from vidssl.distributed import DistInfo

log = logging.getLogger(__name__)


class SampleRange(Sampler[int]):
    """Sample numbers ``first, first+1, ...`` of this rank's share of a global stream.

    Global micro-batch m holds samples [m*B*W, (m+1)*B*W); rank r takes its r-th slice of B."""

    def __init__(self, *, first_micro_batch: int, num_micro_batches: int, batch_size: int, dist: DistInfo) -> None:
        self.first, self.count, self.batch_size, self.dist = first_micro_batch, num_micro_batches, batch_size, dist

    def __iter__(self) -> Iterator[int]:
        global_batch = self.batch_size * self.dist.world_size
        for m in range(self.first, self.first + self.count):
            base = m * global_batch + self.dist.rank * self.batch_size
            yield from range(base, base + self.batch_size)

    def __len__(self) -> int:
        return self.count * self.batch_size


def training_folder(data: str, out: Path, *, dist: DistInfo) -> Path:
    """``data``, or when it is empty the synthetic videos of ``out/synth`` (generated once, by the
    main process, the others waiting for it)."""
    if data:
        return Path(data)
    from vidssl.data.synth import SynthConfig, generate

    synth = out / "synth"
    if dist.is_main and not (synth / "synth.json").exists():
        generate(synth, SynthConfig(out=str(synth)), progress=True)
    if dist.world_size > 1:
        torch.distributed.barrier()
    return synth / "videos"


def is_views(value: object) -> bool:
    """Image views in a batch: uint8 (B, V, 3, H, W)."""
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim == 5 and value.shape[2] == 3


@dataclass
class TrainingData:
    """One run's data: what was indexed, the dataset, this rank's loader, and how a batch reaches
    the device (:meth:`to_device`)."""

    index: VideoIndex
    dataset: Dataset
    loader: DataLoader
    spec: DataSpec
    device: torch.device
    device_color: bool  # the default transform's colour augmentation runs batched on the device
    seed: int
    accum: int
    dist: DistInfo
    held_out: list[VideoInfo] = dataclasses.field(default_factory=list)  # kept out for validation

    @staticmethod
    def images_in(batch: dict[str, Any]) -> int:
        """Frames the encoder sees in ``batch``: B * V summed over its image views."""
        return sum(v.shape[0] * v.shape[1] for v in batch.values() if is_views(v))

    def to_device(self, batch: dict[str, Any], *, step: int, micro: int) -> dict[str, Any]:
        """``batch`` with every tensor on the training device and, with device colour, its views
        (:attr:`DataSpec.views`) colour-augmented there: uint8 (B, V, 3, H, W) -> float [0, 1]."""
        batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                 for k, v in batch.items()}
        if self.device_color:
            for i, key in enumerate(k for k in self.spec.views if k in batch):
                # a stream per (step, micro-batch, view key, rank): resumable
                stream = (micro + self.accum * i) * self.dist.world_size + self.dist.rank
                g = torch.Generator(self.device).manual_seed(sample_seed(self.seed, step, stream))
                v = batch[key]
                share = v.shape[1] if self.spec.consistent else 1
                batch[key] = color_augment(v.flatten(0, 1).float().div_(255), g, share=share).view(v.shape)
        return batch


def build_loader(
    *,
    data: Path,
    spec: DataSpec,
    device: torch.device,
    dist: DistInfo,
    images: bool = False,
    backend: str = "auto",
    decode_size: Size = None,
    image_size: int,
    color_on: Literal["auto", "loader", "device"] = "auto",
    batch_size: int,
    accum: int = 1,
    workers: int = 0,
    seed: int = 0,
    first_step: int = 0,
    steps: int,
    hold_out: int = 0,
) -> TrainingData:
    """Index ``data`` and build the dataset and this rank's loader for steps ``first_step`` to ``steps``.

    Args:
        data: the training folder (videos, or images with ``images=True``).
        spec: what the method asks of the loader.
        device: the training device; CUDA pins host memory and, with ``color_on=auto``, takes the
            colour augmentation.
        dist: this process's rank and the world size.
        images: ``data`` is an image folder (every image a one-frame video).
        backend: the video backend that indexes and reads the files (``auto``: per file).
        decode_size: short side frames are resized to while decoding.
        image_size: side of the square views of the default transform.
        color_on: where the default transform's colour augmentation runs.
        batch_size, accum: per-rank micro-batch size and micro-batches per step.
        workers: DataLoader worker processes.
        seed: the run's seed (samples and colour draws are functions of it).
        first_step, steps: the loader yields ``(steps - first_step) * accum`` micro-batches.
        hold_out: videos kept out of training for validation (:func:`~vidssl.data.index.held_out`:
            chosen by name); they are ``TrainingData.held_out``.

    Raises:
        ValueError: ``data`` holds nothing usable (the message carries the index summary).
    """
    if images:
        index = scan_images(data, progress=dist.is_main)
    else:  # probed by the backend that will read each file
        index = scan(data, backend=backend, progress=dist.is_main)
    if dist.is_main:
        log.info("%s", index.summary())
    if not index.videos:
        raise ValueError(f"{data}: no usable {'images' if images else 'videos'} ({index.summary()})")
    try:
        kept_out = held_out(index.videos, hold_out)
    except ValueError as err:
        raise ValueError(f"{data}: {err}") from None
    if kept_out:
        names = {v.path for v in kept_out}
        index = dataclasses.replace(index, videos=[v for v in index.videos if v.path not in names])
        if dist.is_main:
            log.info("%d videos held out of training for validation: %s", len(kept_out),
                     ", ".join(Path(v.path).name for v in kept_out))
    cuda = device.type == "cuda"
    # Colour augmentation of the default transform, batched on the device or in the workers.
    device_color = spec.transform is None and spec.color and (color_on == "device" or (color_on == "auto" and cuda))
    if spec.transform is not None:
        transform = spec.transform
    elif spec.color and not device_color:
        transform = simclr_augment(image_size)
    else:
        transform = random_crop(image_size)
    kwargs = dict(videos=index.videos, sampler=spec.sampler, backend="image" if images else backend,
                  size=decode_size, transform=transform, samples_per_epoch=2**62, seed=seed,
                  consistent=spec.consistent or spec.transform is not None)
    dataset = spec.dataset(**kwargs, data_root=data) if spec.dataset else VideoFrameDataset(**kwargs)
    if dist.is_main and getattr(dataset, "too_short", 0):
        log.warning("%d videos are too short for %s and were left out", dataset.too_short, spec.sampler)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SampleRange(first_micro_batch=first_step * accum, num_micro_batches=max(0, steps - first_step) * accum,
                            batch_size=batch_size, dist=dist),
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),  # leaves the global RNG alone
        pin_memory=cuda,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_one_thread,
    )
    return TrainingData(index=index, dataset=dataset, loader=loader, spec=spec, device=device,
                        device_color=device_color, seed=seed, accum=accum, dist=dist, held_out=kept_out)


def _one_thread(worker_id: int) -> None:
    """Loader workers decode and augment one sample at a time; letting each also start a pool of
    intra-op threads oversubscribes the cores the training step needs."""
    torch.set_num_threads(1)
