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


def segments(num_frames: int, *, num_segments: int, generator: torch.Generator) -> list[int]:
    """One random frame in each of ``num_segments`` equal segments of the whole video: the released
    VFS sampler (Xu & Wang, 2021, arXiv:2103.17263; mmaction2's ``SampleFrames`` in training mode
    with ``clip_len=1, frame_interval=0``, ``out_of_bound_opt='loop'``), step by step:

    * segment length ``a = (num_frames + 1) // num_segments`` (the ``+ 1`` is mmaction's, for a clip
      of ``clip_len * frame_interval = 0`` frames); if ``a > 0``, frame ``k a + u_k`` with ``u_k``
      uniform in [0, a) for segment k; else (fewer than ``num_segments - 1`` frames) the fixed
      frames ``round(k (num_frames + 1) / num_segments)``, rounding half to even as ``np.around``;
    * indices wrap modulo ``num_frames`` (``loop``). Only ``8 a = num_frames + 1`` lets the last
      segment reach frame ``num_frames``, which wraps to frame 0, as in the released code.

    Returns ``num_segments`` indices in segment order.
    """
    if num_segments < 1:
        raise ValueError(f"need num_segments >= 1, got {num_segments}")
    if num_frames < 1:
        raise TooShortError("an empty video has no frames to sample")
    seg = (num_frames + 1) // num_segments
    if seg > 0:
        offsets = [k * seg + int(u) for k, u in enumerate(torch.randint(seg, (num_segments,), generator=generator))]
    else:
        ratio = (num_frames + 1) / num_segments
        offsets = [round(k * ratio) for k in range(num_segments)]  # Python rounds half to even, as np.around
    return [o % num_frames for o in offsets]


def halves(num_frames: int, *, per_half: int, num_segments: int = 8, generator: torch.Generator) -> list[int]:
    """:func:`segments`, then ``per_half`` frames of the first half's segments followed by
    ``per_half`` of the second half's, so each frame of the first half pairs with one of the second.

    The released VFS model (``Clip2Frame(clip_len=4)``) takes all of them: 8 segments, the first 4
    frames against the last 4 (``per_half=4``, its 16 cross pairs). ``per_half=1`` keeps one random
    frame of each half: a random one of those 16 pairs, so its pair distribution is the released
    one. Fewer than all keeps a random subset of each half, in segment order.
    """
    if num_segments < 2 or num_segments % 2:
        raise ValueError(f"need an even num_segments >= 2, got {num_segments}")
    half = num_segments // 2
    if not 1 <= per_half <= half:
        raise ValueError(f"need 1 <= per_half <= {half} (num_segments / 2), got {per_half}")
    frames = segments(num_frames, num_segments=num_segments, generator=generator)
    if per_half == half:
        return frames
    keep = [sorted(torch.randperm(half, generator=generator)[:per_half].tolist()) for _ in range(2)]
    return [frames[j] for j in keep[0]] + [frames[half + j] for j in keep[1]]


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


@dataclass(frozen=True)
class HalvesSampler:
    """:func:`halves`: the released VFS sampler, ``per_half`` frames of each half of the video."""

    per_half: int = 4
    num_segments: int = 8

    def __call__(self, num_frames: int, fps: float, generator: torch.Generator) -> list[int]:
        return halves(num_frames, per_half=self.per_half, num_segments=self.num_segments, generator=generator)

    def min_frames(self, fps: float) -> int:
        return 1  # shorter videos than segments repeat frames, as the released sampler


Sampler = PairSampler | SequenceSampler | ReferenceTargetSampler | ClipSampler | HalvesSampler

SAMPLERS: dict[str, type] = {
    "pair": PairSampler,
    "sequence": SequenceSampler,
    "reference_target": ReferenceTargetSampler,
    "clip": ClipSampler,
    "halves": HalvesSampler,
}
