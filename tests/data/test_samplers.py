"""Samplers are pure functions of (length, settings, generator)."""

from __future__ import annotations

import pytest
import torch

from vidssl.data import samplers
from vidssl.data.samplers import SAMPLERS, PairSampler, TooShortError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_pair_gap_bounds_and_coverage() -> None:
    g = gen()
    gaps, starts = set(), set()
    for _ in range(2000):
        a, b = samplers.pair(50, min_gap=3, max_gap=10, generator=g)
        assert 0 <= a < b < 50 and 3 <= b - a <= 10
        gaps.add(b - a)
        starts.add(a)
    assert gaps == set(range(3, 11))
    assert min(starts) == 0 and max(starts) == 49 - 3


def test_pair_zero_gap_and_clipped_max() -> None:
    assert len(set(samplers.pair(10, min_gap=0, max_gap=0, generator=gen()))) == 1
    for _ in range(100):
        a, b = samplers.pair(5, min_gap=1, max_gap=100, generator=gen(_))
        assert 0 <= a < b <= 4


def test_pair_in_seconds() -> None:
    sampler = PairSampler(min_gap=1.0, max_gap=1.0, unit="seconds")
    a, b = sampler(100, 24.0, gen())
    assert b - a == 24
    assert sampler.min_frames(24.0) == 25
    with pytest.raises(TooShortError):
        sampler(20, 24.0, gen())


def test_sequence_reference_target_clip() -> None:
    idx = samplers.sequence(40, length=5, stride=3, generator=gen())
    assert [b - a for a, b in zip(idx[:-1], idx[1:], strict=True)] == [3] * 4 and 0 <= idx[0] and idx[-1] < 40
    refs = samplers.reference_target(20, num_refs=3, stride=2, generator=gen())
    assert len(refs) == 4 and refs[-1] - refs[0] == 6
    clip = samplers.clip(8, length=8, generator=gen())
    assert clip == list(range(8))
    with pytest.raises(TooShortError, match="13 needed"):
        samplers.sequence(12, length=5, stride=3, generator=gen())


def test_deterministic_given_generator() -> None:
    for name, cls in SAMPLERS.items():
        s = cls()
        n = 200
        assert s(n, 30.0, gen(7)) == s(n, 30.0, gen(7)), name
        draws = {tuple(s(n, 30.0, gen(k))) for k in range(20)}
        assert len(draws) > 1, name
        assert len(s(n, 30.0, gen(0))) >= 2


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_min_frames_is_exact(name: str) -> None:
    s = SAMPLERS[name]()
    need = s.min_frames(30.0)
    s(need, 30.0, gen())
    with pytest.raises(TooShortError):
        s(need - 1, 30.0, gen())
