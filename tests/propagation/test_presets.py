"""Presets of published protocols against a straightforward reference written from each
codebase's description, and the pieces they set (neighbourhood shapes, early-context fill)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidssl.config import ConfigError
from vidssl.propagation.affinity import Neighbourhood, propagate_labels_local, propagate_labels_naive
from vidssl.propagation.propagate import DEFAULTS, PRESETS, PropagationConfig, propagate


def _allowed(shape: str, radius: float, dy: int, dx: int) -> bool:
    """The neighbourhood rules as the codebases write them."""
    if shape == "circle":  # CRW MaskedAttention / VFS spatial_neighbor: distance < radius
        return math.sqrt(dy * dy + dx * dx) < radius
    if shape == "closed_circle":  # DINOv3 notebook: norm <= size
        return math.sqrt(dy * dy + dx * dx) <= radius
    return abs(dy) <= radius and abs(dx) <= radius  # DINO restrict_neighborhood, Spa-then-Temp square


def _context_frames(t: int, *, fill: str, context: int) -> list[int]:
    """Frame indices of target t's context, first frame first, as each codebase builds it."""
    if fill == "repeat":  # CRW: frame 0 repeated `context` times before the video; keys t..t+context-1 of it
        return [0] + [max(0, p - context) for p in range(t, t + context)]
    if fill == "include_first":  # VFS: frames max(0, t - context) .. t - 1, plus the first
        return [0] + list(range(max(0, t - context), t))
    return [0] + list(range(max(1, t - context), t))  # DINO: a queue of frames after the first


def _reference(maps: torch.Tensor, first: torch.Tensor, *, settings: PropagationConfig) -> list[torch.Tensor]:
    """Label propagation written out position by position (slow; tiny maps only)."""
    frames, height, width, _ = maps.shape
    labels = [first]
    for t in range(1, frames):
        out = torch.zeros_like(first)
        for y in range(height):
            for x in range(width):
                candidates = []
                for slot, s in enumerate(_context_frames(t, fill=settings.fill, context=settings.context)):
                    free = slot == 0 and settings.first_unrestricted
                    for yy in range(height):
                        for xx in range(width):
                            if free or _allowed(settings.neighbourhood, settings.radius, yy - y, xx - x):
                                candidates.append((float(maps[t, y, x] @ maps[s, yy, xx]), labels[s][:, yy, xx]))
                candidates.sort(key=lambda c: -c[0])
                best = candidates[: settings.topk]
                weights = np.exp(np.array([c[0] for c in best]) / settings.temperature)
                weights /= weights.sum()
                out[:, y, x] = sum(float(w) * c[1] for w, c in zip(weights, best, strict=True))
        labels.append(out)
    return labels


class _Maps:
    """A feature extractor returning fixed random maps (the frame's first pixel says which)."""

    stride, device, dtype, name = 4, torch.device("cpu"), torch.float32, "random maps"

    def __init__(self, maps: torch.Tensor) -> None:
        self.maps = maps

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        return self.maps[torch.as_tensor(frames[:, 0, 0, 0].astype(np.int64))]


def _frames(count: int, height: int, width: int):
    for i in range(count):
        frame = np.zeros((height * 4, width * 4, 3), np.uint8)
        frame[0, 0, 0] = i
        yield frame


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("impl", ["local", "dense"])
def test_each_preset_equals_its_reference(preset: str, impl: str) -> None:
    """Small maps and a short context (explicit keys override the preset's), the preset's own
    shape, first-frame rule and fill; 8 frames, so the fill matters for most of them."""
    g = torch.Generator().manual_seed(7)
    maps = F.normalize(torch.randn(8, 6, 7, 5, generator=g), dim=-1)
    first = torch.rand(2, 6, 7, generator=g)
    settings = PropagationConfig(preset=preset, context=3, radius=2.0, topk=4, impl=impl, tile=3)
    assert settings.neighbourhood == PRESETS[preset]["neighbourhood"] and settings.fill == PRESETS[preset]["fill"]
    got = [labels for _, labels in propagate(_frames(8, 6, 7), first, _Maps(maps), settings=settings)]
    want = _reference(maps, first, settings=settings)
    for t, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b.float(), rtol=1e-5, atol=1e-5, msg=f"{preset} frame {t}")


def test_presets_set_every_protocol_key_and_explicit_keys_win() -> None:
    crw = PropagationConfig(preset="crw")
    assert (crw.layer, crw.first_unrestricted, crw.fill, crw.temperature) == ("res3", True, "repeat", 0.05)
    dino = PropagationConfig(preset="dino", topk=7)
    assert (dino.topk, dino.context, dino.neighbourhood, dino.size, dino.size_multiple) == (7, 7, "square", 480, 64)
    plain = PropagationConfig()
    assert all(getattr(plain, key) == value for key, value in DEFAULTS.items())
    with pytest.raises(ConfigError, match="preset"):
        PropagationConfig(preset="crw2")  # type: ignore[arg-type]


def test_default_names_vidssls_own_protocol_as_the_bench_spells_it() -> None:
    from vidssl.config import parse_overrides

    named = PropagationConfig(preset="default")
    assert named == PropagationConfig() and named.preset == ""  # recorded as '': one protocol, one record
    assert parse_overrides(PropagationConfig, ["preset=default"]) == PropagationConfig()


def test_neighbourhood_shapes_and_reach() -> None:
    dy, dx = torch.tensor([0, 3, 3, 2]), torch.tensor([3, 0, 3, 2])
    assert Neighbourhood(3.0, "circle").allows(dy, dx).tolist() == [False, False, False, True]
    assert Neighbourhood(3.0, "closed_circle").allows(dy, dx).tolist() == [True, True, False, True]
    assert Neighbourhood(3.0, "square").allows(dy, dx).tolist() == [True, True, True, True]
    assert [Neighbourhood(12.0, s).reach(60, 107) for s in ("circle", "closed_circle", "square")] == [11, 12, 12]
    with pytest.raises(ValueError, match="shape"):
        Neighbourhood(3.0, "diamond")  # type: ignore[arg-type]


@pytest.mark.parametrize("tile", [12, 5])
@pytest.mark.parametrize("shape", ["circle", "closed_circle", "square"])
@pytest.mark.parametrize("first_unrestricted", [False, True])
def test_local_step_equals_naive_on_a_480p_like_grid(shape: str, first_unrestricted: bool, tile: int) -> None:
    """The band layout (many channels), CRW's radius, a grid cut by the tiles on both edges; at tile 5
    the windows of the first two and last two rows of tiles reach into the padding by different
    amounts (their rows outside the map are not scored)."""
    g = torch.Generator().manual_seed(1)
    query = F.normalize(torch.randn(64, 30, 41, generator=g), dim=0)
    keys = F.normalize(torch.randn(6, 64, 30, 41, generator=g), dim=1)
    labels = torch.rand(6, 3, 30, 41, generator=g)
    kw = dict(radius=12.0, topk=10, temperature=0.05, shape=shape, first_unrestricted=first_unrestricted)
    naive = propagate_labels_naive(query, keys, labels, **kw)
    local = propagate_labels_local(query, keys, labels, tile=tile, chunk_mb=8.0, **kw)
    torch.testing.assert_close(local, naive, rtol=1e-5, atol=1e-5)
