"""The tiled local-affinity propagation equals the full-affinity reference, and streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidssl.propagation.affinity import (
    TileGrid,
    propagate_labels_local,
    propagate_labels_naive,
    radius_mask,
    window_reach,
)
from vidssl.propagation.propagate import PropagationConfig, dense_is_cheaper, propagate


def _random(frames: int, channels: int, height: int, width: int, labels: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = F.normalize(torch.randn(channels, height, width, generator=g), dim=0)
    keys = F.normalize(torch.randn(frames, channels, height, width, generator=g), dim=1)
    context = torch.rand(frames, labels, height, width, generator=g)
    return query, keys, context


@pytest.mark.parametrize(
    ("frames", "channels", "height", "width", "radius", "topk", "tile", "chunk_mb"),
    [
        (3, 16, 13, 17, 3.0, 5, 4, 256.0),  # tiles cut by both edges
        (5, 8, 20, 9, 12.0, 10, 8, 0.01),  # CRW's radius, larger than the map; one tile per chunk
        (2, 4, 6, 7, 0.0, 5, 3, 256.0),  # no radius restriction
        (4, 8, 11, 11, 2.5, 50, 5, 0.05),  # fractional radius; topk larger than most neighbourhoods
        (1, 8, 5, 5, 1.0, 10, 8, 256.0),  # radius 1: only the same position in each frame
        (21, 32, 16, 24, 12.0, 10, 12, 1.0),  # CRW's context length and settings
    ],
)
def test_local_equals_naive(frames, channels, height, width, radius, topk, tile, chunk_mb) -> None:
    query, keys, context = _random(frames, channels, height, width, 3)
    naive = propagate_labels_naive(query, keys, context, radius=radius, topk=topk, temperature=0.05)
    local = propagate_labels_local(query, keys, context, radius=radius, topk=topk, temperature=0.05, tile=tile,
                                   chunk_mb=chunk_mb)
    assert local.shape == naive.shape == (3, height, width)
    torch.testing.assert_close(local, naive, rtol=1e-5, atol=1e-5)


def test_naive_matches_a_loop_over_positions() -> None:
    """The reference itself, against the definition written out position by position."""
    query, keys, context = _random(3, 6, 5, 4, 2, seed=1)
    out = propagate_labels_naive(query, keys, context, radius=2.0, topk=4, temperature=0.1)
    for y in range(5):
        for x in range(4):
            candidates = []
            for t in range(3):
                for yy in range(5):
                    for xx in range(4):
                        if (yy - y) ** 2 + (xx - x) ** 2 < 4.0:
                            candidates.append((float(query[:, y, x] @ keys[t, :, yy, xx]), context[t, :, yy, xx]))
            candidates.sort(key=lambda c: -c[0])
            best = candidates[:4]
            weights = np.exp(np.array([c[0] for c in best]) / 0.1)
            weights /= weights.sum()
            expected = sum(w * c[1] for w, c in zip(weights, best, strict=True))
            torch.testing.assert_close(out[:, y, x], expected.float(), rtol=1e-5, atol=1e-6)


def test_radius_mask_and_window_reach() -> None:
    mask = radius_mask(4, 5, 2.0)
    assert mask.shape == (20, 20) and mask.diagonal().all()
    assert bool(mask[0, 1]) and bool(mask[0, 6]) and not bool(mask[0, 2])  # (0,1) and (1,1) in, (0,2) out
    assert window_reach(12.0, 60, 107) == 11 and window_reach(12.5, 60, 107) == 12
    assert window_reach(0.0, 6, 7) == 6 and window_reach(12.0, 5, 5) == 4


def test_offsets_mask_is_the_radius_mask_inside_a_window() -> None:
    grid = TileGrid.make(10, 10, tile=3, radius=2.5)
    offsets = grid.offsets_mask(2.5).reshape(3, 3, grid.window, grid.window)
    for i in range(3):
        for j in range(3):
            dy = np.arange(grid.window)[:, None] - grid.reach - i
            dx = np.arange(grid.window)[None, :] - grid.reach - j
            assert np.array_equal(offsets[i, j].numpy(), dy**2 + dx**2 < 2.5**2)


class _RandomMaps:
    """A feature extractor that returns fixed random maps, one per frame (the frame's first pixel
    says which), so the streaming loop can be compared across settings."""

    stride, device, dtype, name = 4, torch.device("cpu"), torch.float32, "random maps"

    def __init__(self, frames: int, height: int, width: int) -> None:
        g = torch.Generator().manual_seed(3)
        self.maps = F.normalize(torch.randn(frames, height, width, 8, generator=g), dim=-1)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        return self.maps[torch.as_tensor(frames[:, 0, 0, 0].astype(np.int64))]


def _frames(count: int):
    for i in range(count):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[0, 0, 0] = i
        yield frame


def test_streaming_local_equals_streaming_naive_and_keeps_a_bounded_context() -> None:
    extractor = _RandomMaps(9, 12, 16)
    first = torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(4))
    settings = PropagationConfig(context=3, radius=2.0, tile=4, batch=2)
    assert not dense_is_cheaper(TileGrid.make(12, 16, tile=4, radius=2.0), frames=4, chunk_mb=settings.chunk_mb)
    local = [labels for _, labels in propagate(_frames(9), first, extractor, settings=settings)]
    naive = [labels for _, labels in propagate(_frames(9), first, extractor, settings=PropagationConfig(
        context=3, radius=2.0, tile=4, batch=2, impl="naive"))]
    assert len(local) == 9
    torch.testing.assert_close(local[0], first)
    for a, b in zip(local, naive, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Context = first frame + the 3 frames before: frame 8 from frames 0, 5, 6, 7 only.
    keys = extractor.maps[[0, 5, 6, 7]].permute(0, 3, 1, 2)
    previous = torch.stack([first, local[5], local[6], local[7]])
    expected = propagate_labels_naive(extractor.maps[8].permute(2, 0, 1), keys, previous, radius=2.0, topk=10,
                                      temperature=0.05)
    torch.testing.assert_close(local[8], expected, rtol=1e-5, atol=1e-5)


def test_frames_are_read_lazily() -> None:
    """Streaming: when frame k comes out, at most one batch beyond it has been read."""
    pulled = []

    def frames():
        for i, frame in enumerate(_frames(12)):
            pulled.append(i)
            yield frame

    extractor = _RandomMaps(12, 12, 16)
    settings = PropagationConfig(context=2, radius=2.0, tile=4, batch=3)
    for k, _ in enumerate(propagate(frames(), torch.rand(2, 12, 16), extractor, settings=settings)):
        assert len(pulled) <= (k // 3 + 1) * 3


def test_half_precision_features_give_nearly_the_same_labels() -> None:
    """CUDA stores features in float16 (unit vectors: 11 significant bits suffice); the result
    stays within rounding of float32's (checked here on the CPU)."""
    query, keys, context = _random(5, 16, 20, 24, 3)
    full = propagate_labels_local(query, keys, context, radius=4.0, topk=10, temperature=0.05, tile=6)
    half = propagate_labels_local(query.half(), keys.half(), context, radius=4.0, topk=10, temperature=0.05, tile=6)
    assert half.dtype == torch.float32
    assert (full - half).abs().mean() < 1e-3 and (full - half).abs().max() < 0.05
