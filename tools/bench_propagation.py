"""Mask propagation speed and memory: the local step against the previous tiled step and the naive reference.

    python tools/bench_propagation.py [data=../shared/data/davis2016] [seq=blackswan]
        [encoders=(random, pixels)] [layer=res3] [frames=4] [tiled_frames=2] [naive_frames=1]
        [wide_encoder=pixels] [wide_frames=(4, 12)] [out=FILE]

At 480p (a DAVIS sequence's JPEGs, 854x480), for each of ``encoders`` (``random``: a random-init
ResNet-18 at stride 8 read at ``layer``, res3 = CRW's 256-d trunk; ``pixels``: Lab colour): the
features of 1 + 20 + ``frames`` frames are computed once (timed: encoder frames/s), a context of
the first frame and 20 frames with their ground-truth masks is filled, then one propagation step
per target frame is timed for three implementations on the same features and context: ``local``
(the default of :class:`vidssl.propagation.affinity.Context`), ``tiled`` (the previous step, kept
here only, :class:`TiledStep`: every window copied per target, masked and ranked whole) and
``naive`` (the whole (h*w, 21*h*w) affinity, then mask, top-k, softmax), with CRW's settings
(circle of radius 12, top-k 10, temperature 0.05). Outputs are compared; reported per
implementation: step frames/s, end-to-end frames/s (encoder + step), peak memory during the steps
(CUDA max allocated on GPU, the process's peak RSS on CPU, sampled every 10 ms), and the ratios
local / naive and local / tiled measured in this run. With ``bound_tiles``, for each tile side
the frames/s of the step's matmuls alone at that tile (:func:`tile_bound`): an upper bound on any
exact step that scores square tiles against their windows, as a ratio to the tiled step.

Wide-video check: ``wide_frames`` counts of 1920x1080 frames (the sequence's first frame
upscaled, panned, made one at a time) stream through :func:`vidssl.propagation.propagate.propagate`
with ``wide_encoder``; peak memory for each count shows it does not grow with the number of
frames. On a CPU the default is ``pixels`` (a ResNet-18 at stride 8 on 1080p takes many seconds a
frame there); on a GPU use ``wide_encoder=random wide_frames=(20, 200)``.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from vidssl.config import option, parse_overrides, to_dict
from vidssl.features import resolve_features
from vidssl.propagation.affinity import Context, Neighbourhood, TileGrid
from vidssl.propagation.masks import grid_size, one_hot, read_mask, to_grid
from vidssl.propagation.propagate import PropagationConfig, propagate

REPO = Path(__file__).resolve().parents[1]
IMPLS = ("local", "tiled", "naive")


class TiledStep:
    """The previous ``tiled`` step, kept for this comparison only (vidssl uses the local step):
    context frames in channels-last buffers padded by a :class:`TileGrid`; per chunk of tiles every
    tile's window of every frame is copied, scored against the tile's targets, the neighbourhood
    applied to the whole window, and top-k taken over all of it. ``set_first``, ``push`` and
    ``step`` as :class:`vidssl.propagation.affinity.Context` (no unrestricted first frame)."""

    def __init__(self, height: int, width: int, *, context: int, channels: int, num_labels: int,
                 neighbourhood: Neighbourhood, tile: int = 12, chunk_mb: float = 256.0,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.grid = TileGrid(height, width, tile, neighbourhood.reach(height, width))
        self.chunk_mb, self.context = chunk_mb, context
        padded = (1 + context, *self.grid.padded_shape)
        self.keys = torch.zeros(*padded, channels, dtype=dtype, device=device)
        self.labels = torch.zeros(*padded, num_labels, dtype=torch.float32, device=device)
        self.valid = self.grid.valid(torch.device(device))
        self.offsets = self.grid.offsets_mask(neighbourhood.radius, torch.device(device), neighbourhood.shape)
        self.filled, self.next = 0, 1

    def _write(self, slot: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        r, h, w = self.grid.reach, self.grid.height, self.grid.width
        self.keys[slot, r : r + h, r : r + w] = features
        self.labels[slot, r : r + h, r : r + w] = labels.permute(1, 2, 0)

    def set_first(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self._write(0, features, labels)

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.context:
            self._write(self.next, features, labels)
            self.filled = min(self.filled + 1, self.context)
            self.next = 1 + self.next % self.context

    def step(self, query: torch.Tensor, *, topk: int, temperature: float) -> torch.Tensor:
        """(h, w, C) target features -> (L, h, w) float32 soft labels."""
        used = 1 + self.filled
        return propagate_tiles(query, self.keys[:used], self.labels[:used], self.grid, topk=topk,
                               temperature=temperature, chunk_mb=self.chunk_mb, offsets=self.offsets,
                               valid=self.valid)


def propagate_tiles(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, grid: TileGrid, *, topk: int,
                    temperature: float, chunk_mb: float, offsets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The ``tiled`` step on channels-last buffers padded by ``grid``: query (h, w, C), keys
    (T, *grid.padded_shape, C), labels (T, *grid.padded_shape, L) -> (L, h, w) float32."""
    frames, channels = keys.shape[0], keys.shape[-1]
    num_labels = labels.shape[-1]
    tile, window, cols = grid.tile, grid.window, grid.cols
    num_tiles = grid.rows * cols
    k = min(topk, frames * window**2)
    q = F.pad(query, (0, 0, 0, cols * tile - grid.width, 0, grid.rows * tile - grid.height))
    q = q.reshape(grid.rows, tile, cols, tile, channels).transpose(1, 2).reshape(num_tiles, tile**2, channels)
    # tiles per batched matmul so one chunk's gathered keys, labels and affinities fit chunk_mb
    per_tile = frames * window**2 * (channels * keys.element_size() + tile**2 * keys.element_size() + num_labels * 4)
    step = max(1, int(chunk_mb * 2**20 // per_tile))
    out = torch.empty(num_tiles, tile**2, num_labels, dtype=torch.float32, device=query.device)
    for start in range(0, num_tiles, step):
        corners = [(t // cols * tile, t % cols * tile) for t in range(start, min(start + step, num_tiles))]
        n = len(corners)
        context = torch.stack([keys[:, y : y + window, x : x + window] for y, x in corners])
        context_labels = torch.stack([labels[:, y : y + window, x : x + window] for y, x in corners])
        inside = torch.stack([valid[y : y + window, x : x + window] for y, x in corners])  # (n, win, win)
        affinity = torch.bmm(q[start : start + n], context.view(n, frames * window**2, channels).transpose(1, 2))
        allowed = offsets[None] & inside.view(n, 1, window**2)  # (n, tile^2, win^2), every frame alike
        affinity.view(n, tile**2, frames, window**2).masked_fill_(~allowed[:, :, None, :], float("-inf"))
        values, index = affinity.topk(k, dim=2)  # over all context frames together
        weights = torch.softmax(values.float() / temperature, dim=2)
        picked = torch.gather(context_labels.view(n, frames * window**2, num_labels).float(), 1,
                              index.view(n, -1, 1).expand(-1, -1, num_labels))
        out[start : start + n] = (picked.view(n, tile**2, k, num_labels) * weights[..., None]).sum(dim=2)
    out = out.view(grid.rows, cols, tile, tile, num_labels).permute(4, 0, 2, 1, 3)
    return out.reshape(num_labels, grid.rows * tile, cols * tile)[:, : grid.height, : grid.width]


@dataclass(frozen=True)
class BenchConfig:
    data: str = option(
        str(REPO / ".." / "shared" / "data" / "davis2016"), "DAVIS-layout folder ('' = a synthetic 854x480 video)"
    )
    seq: str = option("blackswan", "sequence (at least 1 + context + frames frames)")
    encoders: tuple[str, ...] = option(("random", "pixels"), "features of the 480p comparison, one run each")
    layer: str = option("res3", "ResNet layer of a ResNet encoder: res3 (CRW, 256-d) | res4 (512-d)")
    frames: int = option(4, "target frames timed for the local step (0: skip the 480p comparison)")
    tiled_frames: int = option(2, "target frames timed for the previous tiled step")
    naive_frames: int = option(1, "target frames timed for the naive step (it is slow)")
    context: int = option(20, "previous frames in the context (CRW: 20)")
    topk: int = option(10, "CRW: 10")
    radius: float = option(12.0, "CRW: 12")
    tile: int = option(0, "tile side of the local step (0: its default, 12 or 3 for < 32 channels)")
    chunk_mb: float = option(256.0, "working-set cap of one batch of tiles (MiB)")
    bound_tiles: tuple[int, ...] = option((), "tile sides whose matmuls alone are timed: the bound on any tiled "
                                          "exact step, e.g. (2,4,6,8,12,16)")
    wide_encoder: str = option("pixels", "features of the 1920x1080 memory check")
    wide_frames: tuple[int, ...] = option((4, 12), "frame counts of the 1920x1080 memory check (empty: skip)")
    device: str = option("auto", "auto | cpu | cuda")
    out: str = option("", "also write the JSON figures to this file")


class PeakMemory:
    """Peak CUDA allocation, or peak resident memory of this process (sampled), inside a block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.peak = self.start = psutil.Process().memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, psutil.Process().memory_info().rss)

    @property
    def mib(self) -> float:
        return self.peak / 2**20

    @property
    def growth_mib(self) -> float:
        """Peak minus what was held when the block started."""
        return (self.peak - self.start) / 2**20


def load_sequence(cfg: BenchConfig, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` frames and masks of the sequence (or of a synthetic 854x480 video)."""
    if not cfg.data:
        import tempfile

        from vidssl.data.synth import SynthConfig, generate

        with tempfile.TemporaryDirectory(prefix="vidssl-bench-prop-") as root:  # read whole, then removed
            generate(Path(root), SynthConfig(num_videos=1, num_frames=count, height=480, width=854), progress=False)
            return read_sequence(Path(root) / "davis", "synth_000", count)
    return read_sequence(Path(cfg.data), cfg.seq, count)


def read_sequence(davis: Path, seq: str, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from vidssl.data.backends import list_frame_files, open_video

    folder = davis / "JPEGImages" / "480p" / seq
    files = list_frame_files(folder)
    if len(files) < count:
        raise SystemExit(f"{folder} has {len(files)} frames; this run needs {count}")
    frames = list(open_video(folder).get_frames(range(count)))
    masks = [read_mask(davis / "Annotations" / "480p" / seq / f"{f.stem}.png") for f in files[:count]]
    return frames, masks


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_480p(cfg: BenchConfig, device: torch.device, encoder: str) -> dict:
    count = 1 + cfg.context + max(cfg.frames, cfg.tiled_frames, cfg.naive_frames)
    frames, masks = load_sequence(cfg, count)
    extractor = resolve_features(encoder, stride=8, device=str(device),
                                 layer=cfg.layer if encoder not in ("pixels", "copy") else "")
    extractor(np.stack(frames[:1]))  # warm-up (allocations, kernels)
    sync(device)
    started = time.perf_counter()
    features = torch.cat([extractor(np.stack(frames[i : i + 4])) for i in range(0, count, 4)])
    sync(device)
    encoder_fps = count / (time.perf_counter() - started)
    height, width = frames[0].shape[:2]
    grid_hw = grid_size(height, width, 8)
    ids = tuple(int(i) for i in np.unique(masks[0]))
    labels = [to_grid(one_hot(m, ids), grid_hw, stride=8).to(device) for m in masks]
    channels = int(features.shape[-1])
    tile = cfg.tile or (12 if channels >= 32 else 3)
    targets = list(range(1 + cfg.context, count))
    print(f"480p: {width}x{height}, grid {grid_hw[1]}x{grid_hw[0]}, {channels} channels ({extractor.name}), "
          f"context 1 + {cfg.context} frames, tile {tile}; encoder {encoder_fps:.2f} frames/s", flush=True)

    rows, outputs = {}, {}
    for impl, n in zip(IMPLS, (cfg.frames, cfg.tiled_frames, cfg.naive_frames), strict=True):
        kind = TiledStep if impl == "tiled" else functools.partial(Context, impl=impl)
        ctx = kind(*grid_hw, context=cfg.context, channels=channels, num_labels=len(ids),
                   neighbourhood=Neighbourhood(cfg.radius), tile=tile if impl == "local" else 12,
                   chunk_mb=cfg.chunk_mb, dtype=features.dtype, device=device)
        ctx.set_first(features[0], labels[0])
        for t in range(1, 1 + cfg.context):
            ctx.push(features[t], labels[t])
        with PeakMemory(device) as memory:
            sync(device)
            started = time.perf_counter()
            outputs[impl] = [ctx.step(features[t], topk=cfg.topk, temperature=0.05) for t in targets[:n]]
            sync(device)
            seconds = time.perf_counter() - started
        step_fps = n / seconds
        rows[impl] = {"step_fps": step_fps, "end_to_end_fps": 1 / (1 / encoder_fps + 1 / step_fps), "frames": n,
                      "peak_mib": memory.mib}
        print(f"  {impl:<6} step {step_fps:7.3f} frames/s   end-to-end {rows[impl]['end_to_end_fps']:7.3f} frames/s"
              f"   peak {memory.mib:8.0f} MiB   ({n} frames)", flush=True)
        del ctx
    work = step_work(TileGrid.make(*grid_hw, tile=tile, radius=cfg.radius), frames=1 + cfg.context,
                     channels=channels, radius=cfg.radius)
    work |= {"sgemm_gmac_s": sgemm_rate(work["tile_shape"], channels, features.dtype, device)}
    work["local_gmac_s"] = work["local_gmac"] * rows["local"]["step_fps"]
    work["efficiency"] = work["local_gmac_s"] / work["sgemm_gmac_s"]
    work["exact_bound_x"] = work["local_gmac"] / work["in_radius_gmac"] / work["efficiency"]
    print(f"  work per frame: local step {work['local_gmac']:.1f} GMAC (every cell of each tile's window in the "
          f"map's rows; {work['window_gmac']:.1f} with whole windows), "
          f"{work['in_radius_gmac']:.1f} GMAC within the radius; step at {work['local_gmac_s']:.1f} GMAC/s against "
          f"{work['sgemm_gmac_s']:.1f} GMAC/s for the same matmuls alone ({100 * work['efficiency']:.0f}%): an exact "
          f"step doing only in-radius products at that rate would be at most {work['exact_bound_x']:.1f}x the local "
          "step", flush=True)
    if cfg.bound_tiles:
        work["tile_bound"] = tile_bound(grid_hw, cfg, channels, features.dtype, device,
                                        tiled_fps=rows["tiled"]["step_fps"], naive_fps=rows["naive"]["step_fps"])
    rows["work"] = work
    diffs = {impl: max(((a - b).abs().max().item() for a, b in zip(outputs["local"], outputs[impl], strict=False)),
                       default=float("nan")) for impl in ("tiled", "naive")}
    ratios = {f"local/{impl}": rows["local"]["step_fps"] / rows[impl]["step_fps"] for impl in ("tiled", "naive")}
    if cfg.naive_frames:
        rows["differences"] = explain_differences(features[: 1 + cfg.context], features[targets[0]],
                                                  outputs["local"][0], outputs["naive"][0], cfg)
        d = rows["differences"]
        print(f"  positions where local and naive differ (> 1e-5): {d['positions']}, of which {d['ties']} have "
              f"their {cfg.topk}th and {cfg.topk + 1}th affinities tied (within 1e-6)", flush=True)
    print(f"  step ratios: local / tiled {ratios['local/tiled']:.2f}x, local / naive {ratios['local/naive']:.2f}x; "
          f"max |local - tiled| {diffs['tiled']:.2e}, |local - naive| {diffs['naive']:.2e}", flush=True)
    return {"size": [width, height], "grid": [grid_hw[1], grid_hw[0]], "channels": channels,
            "features": extractor.name, "tile": tile, "context_frames": 1 + cfg.context, "encoder_fps": encoder_fps,
            **rows, "step_ratio": ratios, "max_abs_difference": diffs}


def explain_differences(context: torch.Tensor, query: torch.Tensor, local: torch.Tensor, naive: torch.Tensor,
                        cfg: BenchConfig) -> dict:
    """Target positions where the local step and the naive reference disagree, and how many of them
    hold a tie at the top-k boundary (the k-th and (k+1)-th in-radius affinities equal within 1e-6),
    where either choice is right and the two steps may pick different ones."""
    from vidssl.propagation.affinity import radius_mask

    height, width, channels = query.shape
    n = height * width
    bad = ((local - naive).abs().amax(0).flatten() > 1e-5).nonzero().flatten().tolist()
    keys = context.reshape(-1, n, channels)
    allowed = radius_mask(height, width, cfg.radius, device=query.device)
    ties = 0
    for p in bad:
        affinity = keys @ query.reshape(n, channels)[p]  # (frames, n)
        affinity[:, ~allowed[p]] = float("-inf")
        top = affinity.flatten().topk(cfg.topk + 1).values
        ties += int((top[-2] - top[-1]).abs() <= 1e-6)
    return {"positions": len(bad), "ties": ties}


def step_work(grid, *, frames: int, channels: int, radius: float) -> dict:
    """Multiply-accumulates of one step (GMAC): every tile's targets against every cell of its
    window (``window_gmac``); the local step's (the same with the windows' rows outside the map
    left out, as the step does); and the least any exact step needs (each target against the cells
    within ``radius``, clipped at the map's border)."""
    height, width, tile, window = grid.height, grid.width, grid.tile, grid.window
    full = grid.rows * grid.cols * tile**2 * window**2 * frames * channels
    rows_in_map = sum(rows for _, rows in tile_spans(grid, height))
    local = grid.cols * tile**2 * window * rows_in_map * frames * channels
    reach = int(radius)
    dy, dx = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij")
    offsets = [(a, b) for a, b in zip(dy.ravel(), dx.ravel(), strict=True) if a * a + b * b < radius * radius]
    pairs = sum((height - abs(a)) * (width - abs(b)) for a, b in offsets)  # (target, cell) pairs inside the map
    return {"window_gmac": full / 1e9, "local_gmac": local / 1e9, "in_radius_gmac": pairs * frames * channels / 1e9,
            "tile_shape": [tile**2, window**2], "cells_in_radius": len(offsets), "window_cells": window**2}


def sgemm_rate(shape: list[int], channels: int, dtype: torch.dtype, device: torch.device, *, batch: int = 9,
               repeats: int = 5) -> float:
    """GMAC/s of the local step's matmul shape alone: (batch, tile^2, C) @ (batch, C, window^2)."""
    targets, cells = shape
    a = torch.randn(batch, targets, channels, dtype=dtype, device=device)
    b = torch.randn(batch, channels, cells, dtype=dtype, device=device)
    out = torch.empty(batch, targets, cells, dtype=dtype, device=device)
    torch.bmm(a, b, out=out)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.bmm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - started)
    return batch * targets * cells * channels / best / 1e9


def tile_spans(grid, size: int) -> list[tuple[int, int]]:
    """Per tile along an axis of ``size`` cells: its targets inside the map, its window's cells inside the map."""
    return [(min(grid.tile, size - i * grid.tile),
             min(size, (i + 1) * grid.tile + grid.reach) - max(0, i * grid.tile - grid.reach))
            for i in range(-(-size // grid.tile))]


def in_map_products(grid) -> int:
    """(target, cell) pairs of a tiled step when border tiles clip their windows to the map: per
    tile, its targets inside the map times its window's cells inside the map."""
    return sum(ty * tx * wy * wx for ty, wy in tile_spans(grid, grid.height) for tx, wx in tile_spans(grid, grid.width))


def tile_bound(grid_hw: tuple[int, int], cfg: BenchConfig, channels: int, dtype: torch.dtype, device: torch.device,
               *, tiled_fps: float, naive_fps: float) -> dict:
    """The fastest any step built on square tiles could be: per tile side, the frames/s of its
    matmuls alone (every target of a tile against every cell of its window, in each context frame,
    at the rate :func:`sgemm_rate` measures for that shape), with border windows clipped to the map
    at no loss of rate, and no gather, top-k, softmax or memory traffic besides. Smaller tiles waste
    fewer products (window (t + 2 reach)^2 per target) but run smaller, slower matmuls; the best of
    them bounds every exact tiled step."""
    rows = {}
    for tile in cfg.bound_tiles:
        grid = TileGrid.make(*grid_hw, tile=tile, radius=cfg.radius)
        work = step_work(grid, frames=1 + cfg.context, channels=channels, radius=cfg.radius)
        gmac = in_map_products(grid) * (1 + cfg.context) * channels / 1e9
        # about 2 MB of operands per call at every tile size, so small shapes are not timed on empty caches
        batch = max(1, 2**19 // ((work["tile_shape"][0] + work["tile_shape"][1]) * channels))
        rate = sgemm_rate(work["tile_shape"], channels, dtype, device, batch=batch)
        fps = rate / gmac
        rows[str(tile)] = {"gmac": gmac, "padded_gmac": work["window_gmac"], "gmac_s": rate, "matmul_only_fps": fps,
                           "over_tiled": fps / tiled_fps, "over_naive": fps / naive_fps}
        print(f"  tile {tile:2d}: {gmac:5.1f} GMAC a frame in the map ({work['window_gmac']:5.1f} padded) at "
              f"{rate:5.1f} GMAC/s -> matmuls alone {fps:6.3f} frames/s = {fps / tiled_fps:5.2f}x the tiled step, "
              f"{fps / naive_fps:5.1f}x the naive one", flush=True)
    best = max(rows, key=lambda t: rows[t]["matmul_only_fps"])
    print(f"  bound: no square-tiled exact step beats {rows[best]['over_tiled']:.2f}x the tiled step or "
          f"{rows[best]['over_naive']:.1f}x the naive one here (tile {best}, its matmuls alone)", flush=True)
    return {"tiles": rows, "best_tile": int(best), "best_over_tiled": rows[best]["over_tiled"],
            "best_over_naive": rows[best]["over_naive"]}


def wide_check(cfg: BenchConfig, device: torch.device) -> dict:
    """Peak memory of streaming ``n`` 1920x1080 frames, for each ``n`` of ``cfg.wide_frames``."""
    import cv2

    frames, masks = load_sequence(cfg, 1)
    size = (1920, 1080)
    base = cv2.resize(frames[0], size, interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(masks[0], size, interpolation=cv2.INTER_NEAREST)
    extractor = resolve_features(cfg.wide_encoder, stride=8, device=str(device),
                                 layer=cfg.layer if cfg.wide_encoder not in ("pixels", "copy") else "")
    settings = PropagationConfig(context=cfg.context, topk=cfg.topk, radius=cfg.radius, tile=cfg.tile,
                                 chunk_mb=cfg.chunk_mb, batch=1)
    ids = tuple(int(i) for i in np.unique(mask))
    first = to_grid(one_hot(mask, ids), grid_size(size[1], size[0], 8), stride=8)

    def stream(n: int):
        for i in range(n):  # made one at a time: a slow pan over the upscaled frame
            yield np.roll(base, 4 * i, axis=1)

    rows = []
    for n in cfg.wide_frames:
        with PeakMemory(device) as memory:
            started = time.perf_counter()
            for _ in propagate(stream(n), first, extractor, settings=settings):
                pass
            sync(device)
            seconds = time.perf_counter() - started
        rows.append({"frames": n, "peak_mib": memory.mib, "growth_mib": memory.growth_mib, "fps": n / seconds})
        print(f"1920x1080 x {n:4d} frames ({extractor.name}): peak {memory.mib:8.0f} MiB "
              f"(+{memory.growth_mib:.0f} over the start), {n / seconds:.3f} frames/s", flush=True)
    return {"size": list(size), "features": extractor.name, "runs": rows}


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchConfig, argv)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          "cpu" if cfg.device == "auto" else cfg.device)
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}: {machine}; load average {load:.1f} at the start; torch {torch.__version__}", flush=True)
    figures = {"machine": machine, "device": str(device), "load_average": load, "torch": torch.__version__,
               "config": to_dict(cfg)}
    if cfg.frames:
        figures["480p"] = {encoder: compare_480p(cfg, device, encoder) for encoder in cfg.encoders}
    if cfg.wide_frames:
        figures["wide"] = wide_check(cfg, device)
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
