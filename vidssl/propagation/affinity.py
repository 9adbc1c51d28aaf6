"""One step of label propagation: a target frame's soft labels from its context frames.

The step of CRW (Jabri et al., 2020, arXiv:2006.14613), VFS (Xu & Wang, 2021, arXiv:2103.17263),
DINO (Caron et al., 2021, arXiv:2104.14294) and their successors: for every position of the
target's L2-normalized feature map, the affinity (cosine similarity) to every context position in
its spatial neighbourhood, the ``topk`` largest over all context frames together, a softmax of
those divided by ``temperature``, and the weighted sum of the context's soft labels::

    labels = propagate_labels_naive(query, keys, context_labels, radius=12, topk=10, temperature=0.05)
    # query (C, h, w), keys (T, C, h, w), context_labels (T, L, h, w) -> labels (L, h, w)

The neighbourhood (:class:`Neighbourhood`) is the codebases' main difference: ``circle``
(offsets with ``dy^2 + dx^2 < radius^2``: CRW's ``MaskedAttention``, VFS's ``spatial_neighbor``),
``closed_circle`` (``<= radius^2``: the DINOv3 tracking notebook), ``square`` (``|dy|, |dx| <=
radius``: DINO's ``restrict_neighborhood``, Spa-then-Temp's ``mode='square'``); ``radius <= 0``
lifts it; ``first_unrestricted`` leaves the first context frame (the annotated one) unrestricted,
as CRW's code does (``A[0, :, len(long_mem):] += D`` masks every frame but the first).

``ties``: keep every context position whose weight ``exp(affinity / temperature)`` equals the
k-th's, not exactly k (DINO's ``aff[aff < tk_val_min] = 0`` on those weights and the DINOv3
notebook keep all values >= the k-th; CRW's and VFS's ``torch.topk`` keep k). It matters only where
weights tie exactly in float (repeated frames, flat colour features).

Implementations, all giving :func:`propagate_labels_naive`'s result up to float rounding and the
order of ties (tested), held by one :class:`Context` that streams frames through a ring:

``local`` (the default): the target grid is cut into ``tile`` x ``tile`` tiles; a tile needs only
    the context inside its window (the tile grown by the neighbourhood's reach on every side).
    Context frames are stored once, when they enter the ring, as overlapping channel-first column
    bands of the window's width, so that every tile's window of every frame is one (C, window^2)
    matrix in place: one batched matmul per context frame and row of tiles reads it without
    copying windows per target, and skips the window rows that lie outside the map (the first and
    last rows of tiles). Of each window only the in-neighbourhood offsets are gathered (about 440
    of 1,156 cells at radius 12), top-k runs over those of all frames together, and the padding
    around the map is masked only in the tiles that touch it. The first frame of ``first_unrestricted`` is a
    plain (h*w, C) matrix scored against whole rows of tiles, its top-k merged with the rest.
``dense``: chunks of target positions against the whole context, then mask, top-k: small maps
    (JHMDB's 40 x 30), where every window covers most of the map, and ``radius <= 0``.
``naive``: :func:`propagate_labels_naive` on the whole context (memory grows with area^2).

Memory: the ring is allocated once (``local`` stores keys about window / tile, 2.8x at tile 12
and radius 12, the plain size; labels plainly); each step's working set is capped by ``chunk_mb``,
so peak memory does not grow with the video's length.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Shape = Literal["circle", "closed_circle", "square"]
SHAPES: tuple[str, ...] = ("circle", "closed_circle", "square")
Impl = Literal["local", "dense", "naive"]
IMPLS: tuple[str, ...] = ("local", "dense", "naive")


@dataclass(frozen=True)
class Neighbourhood:
    """Which context positions a target position may use (module docstring).

    Attributes:
        radius: in feature cells; <= 0: every position.
        shape: ``circle`` (d < radius), ``closed_circle`` (d <= radius) or ``square`` (Chebyshev
            distance <= radius).
        first_unrestricted: the first context frame ignores the neighbourhood (CRW).
    """

    radius: float = 12.0
    shape: Shape = "circle"
    first_unrestricted: bool = False

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"neighbourhood shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")

    @property
    def unrestricted(self) -> bool:
        return self.radius <= 0

    def allows(self, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """Bool tensor: offset (dy, dx) (broadcast integer tensors) lies in the neighbourhood."""
        if self.unrestricted:
            return torch.ones(torch.broadcast_shapes(dy.shape, dx.shape), dtype=torch.bool, device=dy.device)
        if self.shape == "square":
            return (dy.abs() <= self.radius) & (dx.abs() <= self.radius)
        d2 = dy**2 + dx**2
        return d2 < self.radius**2 if self.shape == "circle" else d2 <= self.radius**2

    def reach(self, height: int, width: int) -> int:
        """Largest offset per axis (feature cells) in the neighbourhood, at most the map's extent."""
        whole = max(height, width) - 1
        if self.unrestricted:
            return whole
        reach = math.ceil(self.radius) - 1 if self.shape == "circle" else math.floor(self.radius)
        return max(0, min(reach, whole))


def window_reach(radius: float, height: int, width: int) -> int:
    """Largest offset ``d`` per axis of CRW's circle ``dy^2 + dx^2 < radius^2``
    (``ceil(radius) - 1``); the whole map for ``radius <= 0``."""
    return Neighbourhood(radius).reach(height, width)


@functools.lru_cache(maxsize=4)
def radius_mask(height: int, width: int, radius: float, *, device: torch.device | None = None,
                shape: Shape = "circle") -> torch.Tensor:
    """(h*w, h*w) bool: position i may attend to position j; row-major positions (``y * w + x``).
    Cached: a video asks for the same mask every frame (do not modify the result)."""
    yy, xx = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    yy, xx = yy.flatten(), xx.flatten()
    return Neighbourhood(radius, shape).allows(yy[None] - yy[:, None], xx[None] - xx[:, None])


def top_k(x: torch.Tensor, k: int, *, ties: bool = False, temperature: float = 1.0,
          rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest values of ``x`` along its last dim and their indices, largest first.

    With ``ties`` also every further value whose weight ``exp(x / temperature)``, computed in
    ``x``'s dtype, equals the k-th's: DINO compares those weights (``aff[aff < tk_val_min] = 0``
    after ``exp(aff / 0.1)``), and float rounding makes affinities a last bit apart tie there. The
    rows are then padded to the longest with -inf values, whose softmax weight is 0. ``rows``
    (``x.shape[:-1]`` bool): the rows whose ties count (others, e.g. targets past the map's edge,
    get exactly k and more only by chance)."""
    values, index = x.topk(k, dim=-1)
    if not ties:
        return values, index
    kth = torch.exp(values[..., -1:] / temperature)
    # weights are monotone in x: the values tied with the k-th are the largest ones, counted here
    wide = torch.exp(x / temperature) >= kth
    counts = (wide & (values[..., -1:] > float("-inf"))).sum(-1)  # -inf k-th: fewer than k allowed
    if rows is not None:
        counts = counts * rows
    most = int(counts.max()) if counts.numel() else 0
    if most > k:
        values, index = x.topk(most, dim=-1)
        values = values.masked_fill(torch.exp(values / temperature) < kth, float("-inf"))
    return values, index


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
    shape: Shape = "circle",
    first_unrestricted: bool = False,
    ties: bool = False,
) -> torch.Tensor:
    """Reference propagation: the full (h*w, T*h*w) affinity, then mask, top-k, softmax, label sum.

    Args:
        query: (C, h, w) L2-normalized target features.
        keys: (T, C, h, w) L2-normalized context features.
        labels: (T, L, h, w) soft labels of the context.
        radius, shape, first_unrestricted: the :class:`Neighbourhood`.
        topk: neighbours kept per target position (over all context frames together).
        temperature: softmax temperature of the kept affinities.
        ties: also keep every affinity equal to the k-th (:func:`top_k`).

    Returns:
        (L, h, w) float32 soft labels of the target.
    """
    _check(query, keys, labels, topk, temperature)
    channels, height, width = query.shape
    frames, n = keys.shape[0], height * width
    q = query.reshape(channels, n).T
    k = keys.reshape(frames, channels, n).permute(1, 0, 2).reshape(channels, frames * n)
    affinity = q @ k  # (n, T * n): the whole thing, which is what this reference is for
    allowed = radius_mask(height, width, radius, device=query.device, shape=shape)
    masked = affinity.view(n, frames, n)[:, 1:] if first_unrestricted else affinity.view(n, frames, n)
    masked.masked_fill_(~allowed[:, None, :], float("-inf"))
    values, index = top_k(affinity, min(topk, frames * n), ties=ties, temperature=temperature)
    weights = torch.softmax(values.float() / temperature, dim=1)
    context = labels.float().permute(0, 2, 3, 1).reshape(frames * n, -1)
    out = (context[index] * weights[..., None]).sum(dim=1)  # (n, L)
    return out.T.reshape(-1, height, width)


# ------------------------------------------------------------------------------------------------
# The tile layout of the local step


@dataclass(frozen=True)
class TileGrid:
    """How a (h, w) map is cut into square tiles and padded so that every tile's window lies
    inside the buffer.

    Buffers are channels-last, (..., rows * tile + 2 * reach, cols * tile + 2 * reach, C), with the
    map at offset (reach, reach): the window of tile (r, c) is then the slice
    ``[r * tile : r * tile + window, c * tile : c * tile + window]``.
    """

    height: int
    width: int
    tile: int
    reach: int

    @staticmethod
    def make(height: int, width: int, *, tile: int, radius: float, shape: Shape = "circle") -> TileGrid:
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        return TileGrid(height, width, tile, Neighbourhood(radius, shape).reach(height, width))

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

    def offsets_mask(self, radius: float, device: torch.device | None = None, shape: Shape = "circle") -> torch.Tensor:
        """(tile^2, window^2) bool, shared by every tile: query (i, j) of the tile may use window
        position (u, v), i.e. offset (u - reach - i, v - reach - j)."""
        t = torch.arange(self.tile, device=device)
        u = torch.arange(self.window, device=device)
        dy = u[None, :] - self.reach - t[:, None]  # (tile, window): the same for columns
        allowed = Neighbourhood(radius, shape).allows(dy[:, None, :, None], dy[None, :, None, :])  # (i, j, u, v)
        return allowed.reshape(self.tile**2, self.window**2)


# ------------------------------------------------------------------------------------------------
# The context ring and its steps


class Context:
    """The first frame and a ring of the ``context`` most recent frames, stored for one step
    implementation, and the step itself::

        ctx = Context(h, w, context=20, channels=C, num_labels=L, neighbourhood=Neighbourhood(12.0))
        ctx.set_first(features0, labels0)           # (h, w, C), (L, h, w)
        labels = ctx.step(features, topk=10, temperature=0.05)   # (L, h, w) float32
        ctx.push(features, labels)                  # drops the oldest once ``context`` are held

    ``fill_with_first(copies)`` puts the first frame (with its labels) into the ring ``copies``
    times, for the protocols whose early context repeats it (CRW fills the whole ring; VFS's
    "previous frames" include frame 0). Buffers are allocated once.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        context: int,
        channels: int,
        num_labels: int,
        neighbourhood: Neighbourhood,
        impl: Impl = "local",
        tile: int = 12,
        chunk_mb: float = 256.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        if tile < 1 or context < 0:
            raise ValueError(f"need tile >= 1 and context >= 0, got tile={tile}, context={context}")
        device = torch.device(device)
        self.height, self.width, self.context = height, width, context
        self.neighbourhood, self.impl, self.chunk_mb = neighbourhood, impl, chunk_mb
        self.filled, self.next = 0, 1  # frames in the ring after slot 0; the slot the next one goes to
        slots = 1 + context
        self.grid = TileGrid(height, width, tile, neighbourhood.reach(height, width))
        grid = self.grid
        if impl in ("dense", "naive"):
            self.keys = torch.zeros(slots, height, width, channels, dtype=dtype, device=device)
            self.labels = torch.zeros(slots, height, width, num_labels, dtype=torch.float32, device=device)
            return
        padded = (slots, *grid.padded_shape)
        self.labels = torch.zeros(*padded, num_labels, dtype=torch.float32, device=device)
        self.valid = grid.valid(device)
        # local: keys as channel-first column bands (slots, cols, C, Hp, window); band c holds padded
        # columns [c * tile, c * tile + window), so tile (r, c)'s window is band c's rows [r * tile, +
        # window): a (C, window^2) matrix with row stride Hp * window, the right-hand operand of a plain
        # (not transposed) matmul, which BLAS runs 8-30% faster at these shapes (BENCHMARKS.md, issue 14,
        # session 7).
        # Small features (pixels) whose every tile window fits chunk_mb are stored per tile instead,
        # (tiles, slots, window^2, C): one matmul per row of tiles for all frames at once.
        element = torch.empty(0, dtype=dtype).element_size()
        per_window = grid.rows * grid.cols * slots * grid.window**2 * channels * element
        self.windows = (torch.zeros(grid.rows * grid.cols, slots, grid.window**2, channels, dtype=dtype,
                                    device=device) if per_window <= chunk_mb * 2**20 else None)
        self.bands = (torch.zeros(slots, grid.cols, channels, grid.padded_shape[0], grid.window, dtype=dtype,
                                  device=device) if self.windows is None else None)
        self.first = (torch.zeros(height * width, channels, dtype=dtype, device=device)
                      if neighbourhood.first_unrestricted else None)
        # The in-neighbourhood window cells of each tile position: (tile^2, R), R the same for all.
        allowed = grid.offsets_mask(neighbourhood.radius, device, neighbourhood.shape)
        counts = allowed.sum(dim=1)
        self.cells = allowed.nonzero()[:, 1].view(grid.tile**2, int(counts[0]))
        self._outside: dict[tuple[int, int], torch.Tensor | None] = {}
        self._scratch: dict[str, torch.Tensor] = {}
        if not bool((counts == counts[0]).all()):  # cannot happen: every tile position sees the same offsets
            raise AssertionError("neighbourhood sizes differ across a tile")

    # -- the ring --------------------------------------------------------------------------------

    def _write(self, slot: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        h, w = self.height, self.width
        if self.impl in ("dense", "naive"):
            self.keys[slot] = features
            self.labels[slot] = labels.permute(1, 2, 0)
            return
        r = self.grid.reach
        self.labels[slot, r : r + h, r : r + w] = labels.permute(1, 2, 0)
        padded = self.grid.pad(features)  # (Hp, Wp, C)
        tile, window = self.grid.tile, self.grid.window
        if self.windows is not None:
            tiles = padded.unfold(0, window, tile).unfold(1, window, tile)  # (rows, cols, C, win, win)
            self.windows[:, slot] = tiles.permute(0, 1, 3, 4, 2).reshape(self.windows.shape[0], window**2, -1)
        else:
            channels_first = padded.permute(2, 0, 1).contiguous()  # (C, Hp, Wp): one transposing copy, then rows
            for c in range(self.grid.cols):
                self.bands[slot, c] = channels_first[:, :, c * tile : c * tile + window]
        if slot == 0 and self.first is not None:
            self.first.copy_(features.reshape(h * w, -1))

    def set_first(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """(h, w, C) features and (L, h, w) labels of frame 0."""
        self._write(0, features, labels)
        self._first = (features, labels)

    def fill_with_first(self, copies: int) -> None:
        """Push the first frame ``copies`` times (at most ``context``)."""
        for _ in range(min(copies, self.context)):
            self.push(*self._first)

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a frame, dropping the oldest one once ``context`` frames are held."""
        if self.context == 0:
            return
        self._write(self.next, features, labels)
        self.filled = min(self.filled + 1, self.context)
        self.next = 1 + self.next % self.context

    @property
    def used(self) -> int:
        """Slots holding frames: 0 and 1..filled (the ring fills slots in order before it wraps)."""
        return 1 + self.filled

    # -- the step --------------------------------------------------------------------------------

    def step(self, query: torch.Tensor, *, topk: int, temperature: float, ties: bool = False) -> torch.Tensor:
        """(h, w, C) target features -> (L, h, w) float32 soft labels from the frames held; ``ties``:
        also every position whose affinity equals the k-th (:func:`top_k`)."""
        if topk < 1 or temperature <= 0:
            raise ValueError(f"topk must be >= 1 and temperature > 0, got topk={topk}, temperature={temperature}")
        nb, used = self.neighbourhood, self.used
        if self.impl == "naive":
            return propagate_labels_naive(
                query.permute(2, 0, 1), self.keys[:used].permute(0, 3, 1, 2), self.labels[:used].permute(0, 3, 1, 2),
                radius=nb.radius, topk=topk, temperature=temperature, shape=nb.shape,
                first_unrestricted=nb.first_unrestricted, ties=ties)
        if self.impl == "dense":
            return self._step_dense(query, used, topk, temperature, ties)
        return self._step_local(query, used, topk, temperature, ties)

    def _step_dense(self, query: torch.Tensor, used: int, topk: int, temperature: float, ties: bool
                    ) -> torch.Tensor:
        """Chunks of target positions against every context position, then mask, top-k."""
        h, w = self.height, self.width
        n, channels = h * w, query.shape[-1]
        nb, device = self.neighbourhood, query.device
        keys = self.keys[:used].reshape(used * n, channels)
        labels = self.labels[:used].reshape(used * n, -1)
        k = min(topk, used * n)
        rows = max(1, int(self.chunk_mb * 2**20 // (used * n * 4 * 2)))
        yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        yy, xx = yy.flatten(), xx.flatten()
        q = query.reshape(n, channels)
        out = torch.empty(n, labels.shape[1], dtype=torch.float32, device=device)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            affinity = (q[start:stop] @ keys.T).view(stop - start, used, n)
            if not nb.unrestricted:
                allowed = nb.allows(yy[None] - yy[start:stop, None], xx[None] - xx[start:stop, None])
                masked = affinity[:, 1:] if nb.first_unrestricted else affinity
                masked.masked_fill_(~allowed[:, None, :], float("-inf"))
            values, index = top_k(affinity.view(stop - start, used * n), k, ties=ties, temperature=temperature)
            weights = torch.softmax(values.float() / temperature, dim=1)
            out[start:stop] = (labels[index] * weights[..., None]).sum(dim=1)
        return out.T.reshape(-1, h, w)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A scratch tensor of ``shape`` kept across steps: a fresh one per chunk of tiles costs the
        operating system a page fault per 4 KiB on first touch (hundreds of MB per frame at 480p)."""
        size = math.prod(shape)
        held = self._scratch.get(name)
        if held is None or held.numel() < size or held.dtype != dtype:
            held = self._scratch[name] = torch.empty(size, dtype=dtype, device=self.labels.device)
        return held[:size].view(shape)

    def _step_local(self, query: torch.Tensor, used: int, topk: int, temperature: float, ties: bool
                    ) -> torch.Tensor:
        """Rows of tiles against their column bands (class docstring and module docstring)."""
        grid, nb = self.grid, self.neighbourhood
        tile, window, reach, cols, rows = grid.tile, grid.window, grid.reach, grid.cols, grid.rows
        (hp, wp), channels = grid.padded_shape, query.shape[-1]
        num_labels = self.labels.shape[-1]
        cells = self.cells  # (t2, R)
        t2, per_frame = cells.shape
        device = query.device
        restricted = range(1, used) if nb.first_unrestricted else range(used)
        frames = len(restricted)
        k = min(topk, frames * per_frame) if frames else 0
        kf = min(topk, self.height * self.width) if nb.first_unrestricted else 0
        labels_flat = self.labels.view(-1, num_labels)

        # Queries by tile: (tiles, t2, C), row-major tiles, zero past the map's edge (dropped at the end).
        q = F.pad(query, (0, 0, 0, cols * tile - grid.width, 0, rows * tile - grid.height))
        q = q.reshape(rows, tile, cols, tile, channels).transpose(1, 2).reshape(rows * cols, t2, channels)
        # Tiles per batch: affinities (frames, n, t2, window^2) and their gathered cells, 4 bytes each.
        whole = self.height * self.width if nb.first_unrestricted else 0
        per_tile = t2 * (frames * (window**2 + 2 * per_frame) + whole) * 4
        step = max(1, int(self.chunk_mb * 2**20 // per_tile))
        if self.windows is not None:  # any run of tiles is one block of the per-tile windows
            chunks = [(a, min(a + step, rows * cols)) for a in range(0, rows * cols, step)]
        else:  # a run of tiles within one row of tiles is one block of the column bands
            step = min(step, cols)
            chunks = [(r * cols + c, r * cols + min(c + step, cols)) for r in range(rows) for c in range(0, cols, step)]
        ti = torch.arange(t2, device=device)
        cell_y, cell_x = cells // window, cells % window  # window coordinates of each kept cell
        slots = torch.as_tensor(list(restricted), dtype=torch.long, device=device)
        out = torch.empty(rows * cols, t2, num_labels, dtype=torch.float32, device=device)
        for a, b in chunks:
            n = b - a
            ids = torch.arange(a, b, device=device)
            ty, tx = (ids // cols * tile)[:, None, None], (ids % cols * tile)[:, None, None]  # window corners
            qt = q[a:b]  # (n, t2, C)
            # targets inside the map: the zero queries past its edge tie everywhere
            inside = ((ty + ti // tile < self.height) & (tx + ti % tile < self.width))[:, 0] if ties else None
            candidates, positions = [], []  # values (n, t2, *) and flat label indices
            if frames:
                index = cells[None, :, None, :].expand(n, t2, frames, per_frame)
                if self.windows is not None:
                    block = self.windows[a:b, restricted.start : used]
                    affinity = self._buffer("affinity", (n, t2, frames * window**2), query.dtype)
                    torch.bmm(qt, block.reshape(n, frames * window**2, channels).transpose(1, 2), out=affinity)
                    kept = self._buffer("kept", (n, t2, frames, per_frame), query.dtype)
                    torch.gather(affinity.view(n, t2, frames, window**2), 3, index, out=kept)  # (n, t2, frames, R)
                else:
                    y, c0 = a // cols * tile, a % cols
                    # Only the window's rows inside the map are scored: the rows of padding above the
                    # first rows of tiles and below the last ones hold no context (their cells are
                    # masked below, so their clamped indices are never used).
                    top, bottom = max(0, reach - y), min(window, reach + self.height - y)
                    span = (bottom - top) * window
                    affinity = self._buffer("affinity", (frames, n, t2, span), query.dtype)
                    for i, s in enumerate(restricted):
                        block = self.bands[s, c0 : c0 + n, :, y + top : y + bottom].flatten(2)  # a view
                        torch.bmm(qt, block, out=affinity[i])
                    if top or bottom < window:
                        shifted = (cells - top * window).clamp_(0, span - 1)
                        index = shifted[None, :, None, :].expand(n, t2, frames, per_frame)
                    kept = self._buffer("kept", (n, t2, frames, per_frame), query.dtype)
                    torch.gather(affinity.permute(1, 2, 0, 3), 3, index, out=kept)  # (n, t2, frames, R)
                if (a, b) not in self._outside:  # cells on the padding around the map, if any
                    outside = ~self.valid[ty + cell_y[None], tx + cell_x[None]]  # (n, t2, R)
                    self._outside[a, b] = outside[:, :, None, :] if bool(outside.any()) else None
                if self._outside[a, b] is not None:
                    kept.masked_fill_(self._outside[a, b], float("-inf"))
                values, index = top_k(kept.view(n, t2, frames * per_frame), k, ties=ties, temperature=temperature,
                                      rows=inside)
                cell = cells[ti[None, :, None], index % per_frame]  # (n, t2, k) window cells
                py, px = ty + cell // window, tx + cell % window
                candidates.append(values)
                positions.append((slots[index // per_frame] * hp + py) * wp + px)
            if kf:
                affinity = self._buffer("first", (n * t2, self.first.shape[0]), query.dtype)
                torch.mm(qt.reshape(n * t2, channels), self.first.T, out=affinity)
                affinity = affinity.view(n, t2, -1)
                values, index = top_k(affinity, kf, ties=ties, temperature=temperature, rows=inside)
                candidates.append(values)
                positions.append((index // self.width + reach) * wp + index % self.width + reach)  # slot 0
            values, position = candidates[0], positions[0]
            if len(candidates) > 1:
                # with ties, each part holds every value >= its own k-th, so every value >= the k-th
                # of the union (which is no smaller than either part's)
                values, index = top_k(torch.cat(candidates, dim=2), min(topk, k + kf), ties=ties,
                                      temperature=temperature, rows=inside)
                position = torch.cat(positions, dim=2).gather(2, index)
            weights = torch.softmax(values.float() / temperature, dim=2)
            out[a:b] = (labels_flat[position] * weights[..., None]).sum(dim=2)
        out = out.view(rows, cols, tile, tile, num_labels).permute(4, 0, 2, 1, 3)
        return out.reshape(num_labels, rows * tile, cols * tile)[:, : grid.height, : grid.width]


def dense_is_cheaper(grid: TileGrid, *, frames: int, chunk_mb: float) -> bool:
    """Whether the full affinity of a map is no larger than the local step's windows (small maps,
    where every window covers most of the map) and fits ``chunk_mb``: then ``dense`` is used."""
    dense = (grid.height * grid.width) ** 2
    local = grid.rows * grid.cols * grid.tile**2 * grid.window**2
    return dense <= local and dense * frames * 4 <= chunk_mb * 2**20


def propagate_labels_local(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    *,
    radius: float,
    topk: int,
    temperature: float,
    shape: Shape = "circle",
    first_unrestricted: bool = False,
    tile: int = 12,
    chunk_mb: float = 256.0,
    impl: Impl = "local",
    ties: bool = False,
) -> torch.Tensor:
    """:func:`propagate_labels_naive`'s result (same arguments, up to float rounding and the order
    of ties) by the ``impl`` of :class:`Context` (``local``: the fast step).

    Args:
        tile: side of the square target tiles (feature cells).
        chunk_mb: working-set budget of one batch of tiles (MiB); bounds peak memory.
    """
    _check(query, keys, labels, topk, temperature)
    frames, channels, height, width = keys.shape
    ctx = Context(height, width, context=frames - 1, channels=channels, num_labels=labels.shape[1],
                  neighbourhood=Neighbourhood(radius, shape, first_unrestricted), impl=impl, tile=tile,
                  chunk_mb=chunk_mb, dtype=keys.dtype, device=keys.device)
    ctx.set_first(keys[0].permute(1, 2, 0), labels[0])
    for t in range(1, frames):
        ctx.push(keys[t].permute(1, 2, 0), labels[t])
    return ctx.step(query.permute(1, 2, 0), topk=topk, temperature=temperature, ties=ties)
