"""One step of label propagation: a target frame's soft labels from its context frames.

The step of CRW (Jabri et al., 2020, arXiv:2006.14613) and DINO (Caron et al., 2021,
arXiv:2104.14294): for every position of the target's L2-normalized feature map, the affinity
(cosine similarity) to every context position within ``radius`` feature cells, the ``topk``
largest over all context frames together, a softmax of those divided by ``temperature``, and the
weighted sum of the context's soft labels::

    labels = propagate_labels_local(query, keys, context_labels, radius=12, topk=10, temperature=0.05)
    # query (C, h, w), keys (T, C, h, w), context_labels (T, L, h, w) -> labels (L, h, w)

:func:`propagate_labels_local` never builds the full target x context affinity. The target grid is
cut into ``tile`` x ``tile`` tiles; a tile only needs the context inside its window, the tile grown
by the largest in-radius offset on every side. The context is kept padded and channels-last, so a
window is a strided slice of it (what ``unfold`` would give); a chunk of tiles stacks its windows
(the only copy of context features) and one batched matmul gives each tile's
(tile^2, T * window^2) affinities. The radius mask, the same for every tile, and the padding mask
are applied inside the window, then top-k over all context frames together, softmax and the
weighted label sum. Chunks are sized so the working set stays under ``chunk_mb``: peak memory
does not depend on the video's length and grows only linearly with the frame's area (the context
itself).

:func:`propagate_labels_naive` is the straightforward version (full affinity, then mask, top-k,
softmax): the reference for tests and the baseline of ``tools/bench_propagation.py``.

Unlike CRW's code, which leaves the first frame unrestricted, the radius applies to every context
frame, as in DINO's ``restrict_neighborhood``; ``radius=0`` lifts the restriction everywhere.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def window_reach(radius: float, height: int, width: int) -> int:
    """Largest offset ``d`` (feature cells, per axis) of a context position kept for ``radius``:
    integer offsets with ``dy^2 + dx^2 < radius^2`` have ``|dy|, |dx| <= ceil(radius) - 1``.
    ``radius <= 0`` (no restriction) reaches the whole ``height`` x ``width`` map."""
    whole = max(height, width) - 1
    if radius <= 0:
        return whole
    return min(math.ceil(radius) - 1, whole)


@functools.lru_cache(maxsize=4)
def radius_mask(height: int, width: int, radius: float, *, device: torch.device | None = None) -> torch.Tensor:
    """(h*w, h*w) bool: position i may attend to position j (``dy^2 + dx^2 < radius^2``, CRW's
    ``MaskedAttention``); all True for ``radius <= 0``. Row-major positions (``y * w + x``).
    Cached: a video asks for the same mask every frame (do not modify the result)."""
    yy, xx = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    yy, xx = yy.flatten(), xx.flatten()
    if radius <= 0:
        return torch.ones(yy.numel(), yy.numel(), dtype=torch.bool, device=device)
    d2 = (yy[:, None] - yy[None]) ** 2 + (xx[:, None] - xx[None]) ** 2
    return d2 < radius**2


def _check(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, topk: int, temperature: float) -> None:
    if query.ndim != 3 or keys.ndim != 4 or labels.ndim != 4:
        raise ValueError(
            f"expected query (C, h, w), keys (T, C, h, w), labels (T, L, h, w); got {tuple(query.shape)}, "
            f"{tuple(keys.shape)}, {tuple(labels.shape)}"
        )
    if keys.shape[1:] != query.shape or labels.shape[0] != keys.shape[0] or labels.shape[2:] != query.shape[1:]:
        raise ValueError(
            f"shapes do not fit: query {tuple(query.shape)}, keys {tuple(keys.shape)}, labels {tuple(labels.shape)}"
        )
    if topk < 1 or temperature <= 0:
        raise ValueError(f"topk must be >= 1 and temperature > 0, got topk={topk}, temperature={temperature}")


def propagate_labels_naive(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    *,
    radius: float,
    topk: int,
    temperature: float,
) -> torch.Tensor:
    """Reference propagation: the full (h*w, T*h*w) affinity, then mask, top-k, softmax, label sum.

    Args:
        query: (C, h, w) L2-normalized target features.
        keys: (T, C, h, w) L2-normalized context features.
        labels: (T, L, h, w) soft labels of the context.
        radius: context positions at distance >= radius (feature cells) are excluded; <= 0: none.
        topk: neighbours kept per target position (over all context frames together).
        temperature: softmax temperature of the kept affinities.

    Returns:
        (L, h, w) float32 soft labels of the target.
    """
    _check(query, keys, labels, topk, temperature)
    channels, height, width = query.shape
    frames, n = keys.shape[0], height * width
    q = query.reshape(channels, n).T
    k = keys.reshape(frames, channels, n).permute(1, 0, 2).reshape(channels, frames * n)
    affinity = q @ k  # (n, T * n): the whole thing, which is what this reference is for
    allowed = radius_mask(height, width, radius, device=query.device)
    affinity.view(n, frames, n).masked_fill_(~allowed[:, None, :], float("-inf"))
    values, index = affinity.topk(min(topk, frames * n), dim=1)
    weights = torch.softmax(values.float() / temperature, dim=1)
    context = labels.float().permute(0, 2, 3, 1).reshape(frames * n, -1)
    out = (context[index] * weights[..., None]).sum(dim=1)  # (n, L)
    return out.T.reshape(-1, height, width)


@dataclass(frozen=True)
class TileGrid:
    """How a (h, w) map is cut into square tiles and padded so that every tile's window lies
    inside the buffer.

    Buffers are channels-last, (..., rows * tile + 2 * reach, cols * tile + 2 * reach, C), with the
    map at offset (reach, reach): the window of tile (r, c) is then the slice
    ``[r * tile : r * tile + window, c * tile : c * tile + window]``, whose rows are contiguous runs
    of ``window * C`` values, so gathering it is a cheap copy.
    """

    height: int
    width: int
    tile: int
    reach: int

    @staticmethod
    def make(height: int, width: int, *, tile: int, radius: float) -> TileGrid:
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        return TileGrid(height, width, tile, window_reach(radius, height, width))

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile)

    @property
    def window(self) -> int:
        return self.tile + 2 * self.reach

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.rows * self.tile + 2 * self.reach, self.cols * self.tile + 2 * self.reach

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(..., h, w, C) -> (..., *padded_shape, C), zeros around the map."""
        ph, pw = self.padded_shape
        r = self.reach
        return F.pad(x, (0, 0, r, pw - self.width - r, r, ph - self.height - r))

    def valid(self, device: torch.device | None = None) -> torch.Tensor:
        """(*padded_shape) bool: True on the map, False on the padding."""
        return self.pad(torch.ones(self.height, self.width, 1, dtype=torch.bool, device=device))[..., 0]

    def offsets_mask(self, radius: float, device: torch.device | None = None) -> torch.Tensor:
        """(tile^2, window^2) bool, shared by every tile: query (i, j) of the tile may use window
        position (u, v), i.e. offset (u - reach - i, v - reach - j), when it lies within ``radius``."""
        if radius <= 0:
            return torch.ones(self.tile**2, self.window**2, dtype=torch.bool, device=device)
        t = torch.arange(self.tile, device=device)
        u = torch.arange(self.window, device=device)
        dy = u[None, :] - self.reach - t[:, None]  # (tile, window): the same for columns
        d2 = dy[:, None, :, None] ** 2 + dy[None, :, None, :] ** 2  # (i, j, u, v)
        return (d2 < radius**2).reshape(self.tile**2, self.window**2)


def chunk_tiles(
    grid: TileGrid, *, frames: int, channels: int, num_labels: int, element_size: int, chunk_mb: float
) -> int:
    """Tiles per batched matmul so one chunk's working set (gathered keys and labels, affinities)
    stays under ``chunk_mb`` MiB; at least 1."""
    per_key = frames * grid.window**2
    per_tile = per_key * (channels * element_size + grid.tile**2 * element_size + num_labels * 4)
    return max(1, int(chunk_mb * 2**20 // per_tile))


def propagate_tiles(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    grid: TileGrid,
    *,
    radius: float,
    topk: int,
    temperature: float,
    chunk_mb: float = 256.0,
    offsets: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`propagate_labels_local` on channels-last buffers already padded by ``grid`` (the
    streaming loop keeps its context that way, so nothing is re-laid out per frame).

    Args:
        query: (h, w, C) target features.
        keys: (T, *grid.padded_shape, C) context features, zero padding.
        labels: (T, *grid.padded_shape, L) context soft labels.
        offsets, valid: ``grid.offsets_mask(radius)`` and ``grid.valid()``, when the caller caches them.

    Returns:
        (L, h, w) float32.
    """
    frames, channels = keys.shape[0], keys.shape[-1]
    num_labels = labels.shape[-1]
    device = query.device
    tile, window, cols = grid.tile, grid.window, grid.cols
    num_tiles = grid.rows * cols
    offsets = grid.offsets_mask(radius, device) if offsets is None else offsets
    valid = grid.valid(device) if valid is None else valid
    k = min(topk, frames * window**2)

    # Queries per tile: (tiles, tile^2, C), zero rows past the map's edge (dropped at the end).
    q = F.pad(query, (0, 0, 0, cols * tile - grid.width, 0, grid.rows * tile - grid.height))
    q = q.reshape(grid.rows, tile, cols, tile, channels).transpose(1, 2).reshape(num_tiles, tile**2, channels)

    step = chunk_tiles(grid, frames=frames, channels=channels, num_labels=num_labels,
                       element_size=keys.element_size(), chunk_mb=chunk_mb)
    out = torch.empty(num_tiles, tile**2, num_labels, dtype=torch.float32, device=device)
    for start in range(0, num_tiles, step):
        corners = [(t // cols * tile, t % cols * tile) for t in range(start, min(start + step, num_tiles))]
        n = len(corners)
        # The only copy of context per chunk: each tile's window (a strided view of the buffer).
        context = torch.stack([keys[:, y : y + window, x : x + window] for y, x in corners])
        context_labels = torch.stack([labels[:, y : y + window, x : x + window] for y, x in corners])
        inside = torch.stack([valid[y : y + window, x : x + window] for y, x in corners])  # (n, win, win)
        affinity = torch.bmm(q[start : start + n], context.view(n, frames * window**2, channels).transpose(1, 2))
        allowed = offsets[None] & inside.view(n, 1, window**2)  # (n, tile^2, win^2), every frame alike
        affinity.view(n, tile**2, frames, window**2).masked_fill_(~allowed[:, :, None, :], float("-inf"))
        values, index = affinity.topk(k, dim=2)  # over all context frames together
        weights = torch.softmax(values.float() / temperature, dim=2)
        picked = torch.gather(
            context_labels.view(n, frames * window**2, num_labels).float(), 1,
            index.view(n, -1, 1).expand(-1, -1, num_labels),
        )
        out[start : start + n] = (picked.view(n, tile**2, k, num_labels) * weights[..., None]).sum(dim=2)
    out = out.view(grid.rows, cols, tile, tile, num_labels).permute(4, 0, 2, 1, 3)
    return out.reshape(num_labels, grid.rows * tile, cols * tile)[:, : grid.height, : grid.width]


def propagate_labels_local(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    *,
    radius: float,
    topk: int,
    temperature: float,
    tile: int = 12,
    chunk_mb: float = 256.0,
) -> torch.Tensor:
    """Propagation restricted to a radius, computed tile by tile (module docstring).

    Same arguments and result as :func:`propagate_labels_naive` (up to float rounding and the
    order of ties), plus:

    Args:
        tile: side of the square target tiles (feature cells). Each tile reads a window of
            ``tile + 2 * (ceil(radius) - 1)`` cells: small tiles waste less of it on positions out
            of radius, large tiles make larger matmuls.
        chunk_mb: working-set budget of one batched matmul (MiB); bounds peak memory.
    """
    _check(query, keys, labels, topk, temperature)
    grid = TileGrid.make(query.shape[1], query.shape[2], tile=tile, radius=radius)
    return propagate_tiles(
        query.permute(1, 2, 0), grid.pad(keys.permute(0, 2, 3, 1)), grid.pad(labels.permute(0, 2, 3, 1)), grid,
        radius=radius, topk=topk, temperature=temperature, chunk_mb=chunk_mb,
    )
