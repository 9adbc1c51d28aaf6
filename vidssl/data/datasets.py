"""Map-style datasets of sampled video frames.

A sample is a function of ``(seed, epoch, index)`` only: the video is taken from a per-epoch
permutation, the frame indices from a sampler fed a generator seeded with that triple, and the
augmentation draws from the same seed. So the same run gives the same samples with any number of
DataLoader workers, and a resumed run picks up exactly where it stopped.

A video that fails to decode is excluded for the rest of the run and replaced by another video,
so an epoch never crashes on one bad file; it is reported once per run, not once per DataLoader
worker (the workers agree through :class:`ReportOnce`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidssl.data.backends import Size, VideoReader, VideoReadError, open_video
from vidssl.data.index import VideoInfo
from vidssl.data.samplers import Sampler

log = logging.getLogger(__name__)

FrameTransform = Callable[[torch.Tensor], torch.Tensor]
"""uint8 (T, 3, H, W) -> (T, 3, h, w); torchvision v2 transforms fit."""


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends on all three numbers (and not on their sum)."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


_INHERITED_READERS: list[VideoReader] = []


class ReaderCache:
    """The last ``capacity`` open readers of this process (opening costs an index build)."""

    def __init__(self, *, backend: str, size: Size, capacity: int = 8, threads: int = 1) -> None:
        self.backend, self.size, self.capacity, self.threads = backend, size, capacity, threads
        self._readers: OrderedDict[str, VideoReader] = OrderedDict()
        self._pid = os.getpid()

    def get(self, path: str) -> VideoReader:
        if self._pid != os.getpid():
            # A forked DataLoader worker inherits the parent's open decoders. Their threads did
            # not survive the fork, so freeing them here would wait forever on those threads
            # (FFmpeg's swscale does): keep them unreferenced-but-alive and open fresh ones.
            _INHERITED_READERS.extend(self._readers.values())
            self._readers, self._pid = OrderedDict(), os.getpid()
        if path in self._readers:
            self._readers.move_to_end(path)
            return self._readers[path]
        reader = open_video(path, backend=self.backend, size=self.size, threads=self.threads)
        self._readers[path] = reader
        if len(self._readers) > self.capacity:
            self._readers.popitem(last=False)[1].close()
        return reader

    def drop(self, path: str) -> None:
        reader = self._readers.pop(path, None)
        if reader is not None:
            reader.close()

    def __getstate__(self) -> dict:  # open decoders do not cross process boundaries
        return {**self.__dict__, "_readers": OrderedDict()}


class ReportOnce:
    """Which messages were already shown, shared by a process and every process it starts
    (DataLoader workers, forked or spawned): one empty file per message in a private temporary
    folder, created exclusively, so exactly one process wins. The folder goes when the process
    that made it lets go of this object."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="vidssl-reported-")
        weakref.finalize(self, _remove_if_owner, self.folder, os.getpid())

    def first(self, message_key: str) -> bool:
        """True for the first caller with ``message_key`` in this run, False for every later one."""
        name = hashlib.blake2b(message_key.encode(), digest_size=12).hexdigest()
        try:
            os.close(os.open(os.path.join(self.folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        except OSError:
            return True  # the folder vanished: better said twice than never
        return True


def _remove_if_owner(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked worker exiting must not remove the parent's folder
        shutil.rmtree(folder, ignore_errors=True)


class VideoFrameDataset(Dataset):
    """Frames sampled from a list of videos.

    Each item is a dict:
        ``frames``: uint8 (T, 3, H, W) RGB (after ``transform``; a consistent transform may
        return a dict of such tensors instead, whose keys then replace ``frames``),
        ``indices``: int64 (T,) frame indices in the video,
        ``video``: int, the video's position in ``videos``.

    Args:
        videos: usable videos (from :func:`vidssl.data.index.scan`); videos too short for the
            sampler are left out here.
        sampler: frame sampler (see :mod:`vidssl.data.samplers`).
        backend: decoding backend name or ``auto``.
        size: resize on decode (short side int, or (H, W)); None keeps the native size.
        transform: applied to the decoded frames, uint8 (T, 3, H, W) -> (T, 3, h, w).
        consistent: True applies ``transform`` once to the whole clip (same crop and colour for
            every frame: CPC, colorization); False draws it independently per frame (FTI pairs).
        samples_per_epoch: epoch length; default one sample per video.
        seed: base seed of sampling and augmentation.
    """

    def __init__(
        self,
        videos: Sequence[VideoInfo],
        sampler: Sampler,
        *,
        backend: str = "auto",
        size: Size = None,
        transform: FrameTransform | None = None,
        consistent: bool = False,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        reader_cache: int = 8,
    ) -> None:
        self.videos = [v for v in videos if v.num_frames >= sampler.min_frames(v.fps)]
        self.too_short = len(videos) - len(self.videos)
        if not self.videos:
            raise ValueError(
                f"none of the {len(videos)} videos is long enough for the sampler {sampler} "
                f"(it needs {sampler.min_frames(videos[0].fps) if videos else '?'} frames)"
            )
        self.sampler = sampler
        self.transform = transform
        self.consistent = consistent
        self.samples_per_epoch = samples_per_epoch or len(self.videos)
        self.seed = seed
        self.epoch = 0
        self.readers = ReaderCache(backend=backend, size=size, capacity=reader_cache)
        self.excluded: set[int] = set()
        self.reported = ReportOnce()
        self._order: tuple[int, torch.Tensor] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns."""
        self.epoch = epoch
        self._order = None

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _video_for(self, index: int) -> int:
        """Videos in a fresh random order for every block of len(videos) samples."""
        block, offset = divmod(index, len(self.videos))
        if self._order is None or self._order[0] != block:
            g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1 - block))
            self._order = (block, torch.randperm(len(self.videos), generator=g))
        return int(self._order[1][offset])

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        video = self._video_for(index)
        while True:
            if video not in self.excluded:
                try:
                    return self._load(video, generator)
                except VideoReadError as err:
                    self._exclude(video, err)
            remaining = [v for v in range(len(self.videos)) if v not in self.excluded]
            if not remaining:
                raise RuntimeError(f"all {len(self.videos)} videos failed to decode; see the warnings above")
            video = remaining[int(torch.randint(len(remaining), (1,), generator=generator))]

    def _exclude(self, video: int, err: Exception) -> None:
        self.excluded.add(video)
        self.readers.drop(self.videos[video].path)
        if self.reported.first(self.videos[video].path):
            log.warning("vidssl: skipping %s for the rest of the run: %s", self.videos[video].path, err)

    def _load(self, video: int, generator: torch.Generator) -> dict[str, Any]:
        info = self.videos[video]
        reader = self.readers.get(info.path)
        indices = self.sampler(min(info.num_frames, reader.num_frames), info.fps, generator)
        frames = torch.from_numpy(np.ascontiguousarray(reader.get_frames(indices))).permute(0, 3, 1, 2)
        views: dict[str, torch.Tensor] = {"frames": frames}
        if self.transform is not None:
            # Augmentations draw from torch's global RNG: seed it from this sample so that
            # augmentation, like sampling, depends on (seed, epoch, index) alone.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
                if self.consistent:
                    out = self.transform(frames)
                    views = out if isinstance(out, dict) else {"frames": out}
                else:
                    views = {"frames": torch.stack([self.transform(f) for f in frames])}
        return {**views, "indices": torch.tensor(indices), "video": video}
