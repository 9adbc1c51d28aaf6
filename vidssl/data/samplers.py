"""Frame samplers: pure functions from a video's length to the frame indices of one sample.

Each sampler takes an explicit ``torch.Generator`` so a sample is a function of (seed, epoch,
index) alone: that makes data loading reproducible across worker counts and lets a resumed run
continue with exactly the samples it would have drawn. The dataclasses below bind a sampler's
settings once (from a config) and report the shortest video they can sample from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


class TooShortError(ValueError):
    """A video has fewer frames than the sampler's window."""


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return low + int(torch.randint(high - low + 1, (1,), generator=generator))


def pair(num_frames: int, *, min_gap: int, max_gap: int, generator: torch.Generator) -> list[int]:
    """Two frames ``gap`` apart, gap uniform in [min_gap, min(max_gap, num_frames - 1)].

    Frame-temporal invariance (Purushwalkam & Gupta, 2020, arXiv:2007.13916): two frames of one
    video are a positive pair; ``min_gap = max_gap = 0`` gives the same frame twice (SimCLR).
    Returns ``[t, t + gap]``.
    """
    if min_gap < 0 or max_gap < min_gap:
        raise ValueError(f"need 0 <= min_gap <= max_gap, got min_gap={min_gap}, max_gap={max_gap}")
    if num_frames < min_gap + 1:
        raise TooShortError(f"{num_frames} frames cannot hold a pair {min_gap} frames apart")
    gap = _randint(min_gap, min(max_gap, num_frames - 1), generator)
    start = _randint(0, num_frames - 1 - gap, generator)
    return [start, start + gap]


def sequence(num_frames: int, *, length: int, stride: int, generator: torch.Generator) -> list[int]:
    """``length`` frames ``stride`` apart at a uniform start (CPC, 2018, arXiv:1807.03748)."""
    span = (length - 1) * stride + 1
    if length < 1 or stride < 1:
        raise ValueError(f"need length >= 1 and stride >= 1, got {length}, {stride}")
    if num_frames < span:
        raise TooShortError(f"{num_frames} frames cannot hold {length} frames at stride {stride} ({span} needed)")
    start = _randint(0, num_frames - span, generator)
    return [start + k * stride for k in range(length)]


def reference_target(num_frames: int, *, num_refs: int, stride: int, generator: torch.Generator) -> list[int]:
    """``num_refs`` reference frames before a target: ``[t - R*s, ..., t - s, t]``.

    Colorization as tracking (Vondrick et al., 2018, arXiv:1806.09594) copies colours from the
    references to the target; the target is always the last index.
    """
    return sequence(num_frames, length=num_refs + 1, stride=stride, generator=generator)


def clip(num_frames: int, *, length: int, generator: torch.Generator) -> list[int]:
    """``length`` contiguous frames at a uniform start."""
    return sequence(num_frames, length=length, stride=1, generator=generator)


def to_frames(value: float, unit: Literal["frames", "seconds"], fps: float) -> int:
    """A gap given in frames or seconds, in frames (seconds are rounded to the nearest frame)."""
    if unit == "frames":
        return int(value)
    if fps <= 0:
        raise ValueError("a gap in seconds needs the video's fps")
    return int(round(value * fps))


@dataclass(frozen=True)
class PairSampler:
    """:func:`pair` with gaps in frames or seconds (converted with each video's fps)."""

    min_gap: float = 0
    max_gap: float = 30
    unit: Literal["frames", "seconds"] = "frames"

    def __call__(self, num_frames: int, fps: float, generator: torch.Generator) -> list[int]:
        return pair(
            num_frames,
            min_gap=to_frames(self.min_gap, self.unit, fps),
            max_gap=to_frames(self.max_gap, self.unit, fps),
            generator=generator,
        )

    def min_frames(self, fps: float) -> int:
        return to_frames(self.min_gap, self.unit, fps) + 1


@dataclass(frozen=True)
class SequenceSampler:
    """:func:`sequence`: T frames at stride s."""

    length: int = 8
    stride: int = 2

    def __call__(self, num_frames: int, fps: float, generator: torch.Generator) -> list[int]:
        return sequence(num_frames, length=self.length, stride=self.stride, generator=generator)

    def min_frames(self, fps: float) -> int:
        return (self.length - 1) * self.stride + 1


@dataclass(frozen=True)
class ReferenceTargetSampler:
    """:func:`reference_target`: R references then the target."""

    num_refs: int = 3
    stride: int = 1

    def __call__(self, num_frames: int, fps: float, generator: torch.Generator) -> list[int]:
        return reference_target(num_frames, num_refs=self.num_refs, stride=self.stride, generator=generator)

    def min_frames(self, fps: float) -> int:
        return self.num_refs * self.stride + 1


@dataclass(frozen=True)
class ClipSampler:
    """:func:`clip`: contiguous frames."""

    length: int = 8

    def __call__(self, num_frames: int, fps: float, generator: torch.Generator) -> list[int]:
        return clip(num_frames, length=self.length, generator=generator)

    def min_frames(self, fps: float) -> int:
        return self.length


Sampler = PairSampler | SequenceSampler | ReferenceTargetSampler | ClipSampler

SAMPLERS: dict[str, type] = {
    "pair": PairSampler,
    "sequence": SequenceSampler,
    "reference_target": ReferenceTargetSampler,
    "clip": ClipSampler,
}
