"""Jigsaw puzzles (context-free network: Noroozi & Favaro, 2016, arXiv:1603.09246).

A square crop is split into a 3 x 3 grid of cells and one random tile is cut inside each cell, so
neighbouring tiles are separated by a random gap (no edge continuity to exploit). The nine tiles
are shuffled by one permutation of a fixed set and the network predicts which: the encoder sees
every tile on its own (shared weights), its pooled features go through a per-tile layer (fc6),
are concatenated in the shuffled order, and an MLP (fc7) gives the permutation logits.

Paper settings and what they become here (S = ``image_size``; the paper's numbers are for S = 225):

* cell = S // 3 (75 px), tile = round(cell * 64 / 75) (64 px) unless ``tile`` is given;
  at the default S = 224: cells of 74 px, tiles of 63 px. The grid is centred in the frame.
* a permutation set of ``permutations`` (100, the paper's size for its ablations; 1000 in
  its final model) chosen greedily from all 9! permutations for the largest Hamming distance to
  the ones already chosen, from a fixed seed: every run and every DDP rank has the same set. The
  paper's greedy step maximises the *mean* distance; here the *minimum* distance comes first (ties
  by the mean, then by a seeded random order), which gives the set a guaranteed minimum distance
  (6 for 100 permutations, 5 for 1000; the mean is 8.08 and 8.01, the paper's about 8.0).
* each tile is normalized on its own (mean and std per channel), against low-level-statistics
  shortcuts.
* against chromatic aberration: 30% of the puzzles are made from the grayscale image, and in the
  others every colour channel of every tile is shifted by up to 2 px (round(2 * S / 225) here).
  The data pipeline's SimCLR colour augmentation is off (``color=False``), as in the paper.
* fc6 512 per tile, fc7 4096, as the paper's CFN; BatchNorm is added in the head (the paper's
  AlexNet trunk predates it).

Deviation: the crop comes from the shared random resized crop (scale 0.2-1, any aspect 3/4-4/3,
flip) rather than a fixed-scale 225 px crop of a 256 px image.

Random choices (tile positions, gray, channel shifts, permutations) are drawn on the training
device from :meth:`~vidssl.methods.base.Method.draw_generator` (seeded by the run's seed, the
micro-batches drawn so far and the DDP rank), so a resumed run draws what the uninterrupted run
would have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.config import option
from vidssl.data.samplers import ClipSampler
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import unit_float
from vidssl.methods.base import Method, StepOutput
from vidssl.models.encoders import Encoder
from vidssl.models.heads import projection_mlp
from vidssl.models.patches import crop_patches

GRID = 3
NUM_TILES = GRID * GRID
PERMUTATION_SEED = 0  # fixed: the set is part of the task definition, not of a run
_LUMA = (0.299, 0.587, 0.114)


def _all_permutations(n: int) -> torch.Tensor:
    """uint8 (n!, n): every permutation of 0..n-1, built by inserting n-1 into those of n-1."""
    perms = torch.zeros(1, 1, dtype=torch.uint8)
    for m in range(1, n):
        new = torch.full((len(perms), 1), m, dtype=torch.uint8)
        perms = torch.cat([torch.cat([perms[:, :j], new, perms[:, j:]], 1) for j in range(m + 1)])
    return perms


@functools.lru_cache(maxsize=8)
def _permutation_set(count: int, num_tiles: int, seed: int) -> torch.Tensor:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~10 vector ops over n! items per pick: thread hand-offs cost more than they save
    try:
        return _greedy_permutations(count, num_tiles, seed)
    finally:
        torch.set_num_threads(threads)


def _greedy_permutations(count: int, num_tiles: int, seed: int) -> torch.Tensor:
    candidates = _all_permutations(num_tiles)
    if not 1 <= count <= len(candidates):
        raise ValueError(f"permutations must be in 1..{len(candidates)}, got {count}")
    candidates = candidates[torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))]
    # matches[i * n + v] is 1 where a candidate has tile v at position i: the distance of every
    # candidate to p is n minus the sum of the n rows (i, p[i]).
    values = torch.arange(num_tiles, dtype=torch.uint8)
    matches = (candidates.T.contiguous()[:, None, :] == values[None, :, None]).to(torch.uint8).view(num_tiles**2, -1)
    min_dist = torch.full((len(candidates),), num_tiles + 1, dtype=torch.int32)
    total = torch.zeros(len(candidates), dtype=torch.int32)
    chosen, best = [], 0  # the first is the first candidate of the seeded order
    for step in range(count):
        if step:
            # farthest first: the largest minimum distance, ties by the largest total (the
            # paper's criterion), then by the seeded order (argmax keeps the first maximum).
            best = int((min_dist * (num_tiles * count + 1) + total).argmax())
        chosen.append(best)
        rows = (torch.arange(num_tiles) * num_tiles + candidates[best].long()).tolist()
        dist = num_tiles - functools.reduce(torch.add, [matches[r] for r in rows]).to(torch.int32)
        torch.minimum(min_dist, dist, out=min_dist)
        total += dist
    return candidates[chosen].long()


def jigsaw_permutations(count: int, *, num_tiles: int = NUM_TILES, seed: int = PERMUTATION_SEED) -> torch.Tensor:
    """A set of ``count`` maximally distant permutations (Noroozi & Favaro 2016, Algorithm 1).

    Greedy farthest-point selection over all ``num_tiles!`` permutations by Hamming distance (the
    number of positions where two permutations differ): start from a seeded random permutation,
    then repeatedly add the one whose minimum distance to the chosen set is largest (ties: the
    largest total distance, then a seeded random order). Deterministic: the same arguments give
    the same set in any process.

    Returns:
        int64 (count, num_tiles), unique rows, each a permutation of ``0..num_tiles-1``.
    """
    return _permutation_set(count, num_tiles, seed).clone()


def tile_positions(
    n: int, *, height: int, width: int, cell: int, tile: int, generator: torch.Generator, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners of one random ``tile``-px window inside each cell of a centred 3 x 3 grid.

    Returns:
        tops, lefts: int64 (N, 9), cells in row-major order (cell k is row k // 3, column k % 3).
    """
    if not 0 < tile <= cell or min(height, width) < GRID * cell:
        raise ValueError(f"need 0 < tile <= cell and a {GRID * cell} px grid inside the {height}x{width} "
                         f"frames, got tile={tile}, cell={cell}")
    grid = torch.arange(GRID, device=device) * cell
    cell_tops = ((height - GRID * cell) // 2 + grid).repeat_interleave(GRID)
    cell_lefts = ((width - GRID * cell) // 2 + grid).repeat(GRID)
    offsets = torch.randint(cell - tile + 1, (2, n, NUM_TILES), generator=generator, device=device)
    return cell_tops + offsets[0], cell_lefts + offsets[1]


def shuffle_tiles(tiles: torch.Tensor, permutations: torch.Tensor) -> torch.Tensor:
    """Put tile ``permutations[n, i]`` at position ``i``: (N, 9, ...) tiles, (N, 9) int64 ->
    (N, 9, ...). ``shuffle_tiles(out, permutations.argsort(1))`` gives the tiles back."""
    return tiles[torch.arange(len(tiles), device=tiles.device)[:, None], permutations]


def normalize_tiles(tiles: torch.Tensor, *, eps: float = 1 / 255) -> torch.Tensor:
    """Zero mean and unit std per tile and channel: (..., C, h, w) -> (..., C, h, w). The std is
    floored at ``eps`` (one 8-bit grey level for [0, 1] images) so flat tiles stay flat."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-2, -1), keepdim=True, unbiased=False).clamp_min(eps)
    return (tiles - mean) / std


class Jigsaw(Method):
    """Context-free network: 9 tiles through the shared encoder -> permutation index.

    Config (:class:`Jigsaw.Config`): ``permutations`` (size of the permutation set: the classes),
    ``tile`` (tile side; None: round(cell * 64 / 75), cells are image_size // 3), ``tile_dim``
    (per-tile feature width, fc6), ``hidden`` (classifier hidden width, fc7), ``gray`` (probability
    that a puzzle is made from the grayscale image), ``channel_jitter`` (largest shift in px of each
    colour channel of a tile; None: round(2 * image_size / 225)).
    """

    permutations: torch.Tensor
    draws: torch.Tensor

    @dataclass(frozen=True)
    class Config:
        permutations: int = option(100, "size of the fixed permutation set (the number of classes)")
        tile: int | None = option(None, "tile side in px (None: round(cell * 64 / 75), cell = image_size // 3)")
        tile_dim: int = option(512, "per-tile feature width before concatenation (the paper's fc6)")
        hidden: int = option(4096, "hidden width of the permutation classifier (the paper's fc7)")
        gray: float = option(0.3, "share of puzzles made from the grayscale image")
        channel_jitter: int | None = option(
            None, "largest per-channel shift of a tile in px (None: round(2 * image_size / 225))"
        )

    def __init__(self, encoder: Encoder, cfg: Any = None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        cfg = self.cfg
        self.cell = image_size // GRID
        self.tile = round(self.cell * 64 / 75) if cfg.tile is None else cfg.tile
        if not 0 < self.tile <= self.cell:
            raise ValueError(f"tile must be in 1..{self.cell} (image_size // 3), got {self.tile}")
        self.channel_jitter = round(2 * image_size / 225) if cfg.channel_jitter is None else cfg.channel_jitter
        if self.channel_jitter < 0 or not 0 <= cfg.gray <= 1:
            raise ValueError(f"need channel_jitter >= 0 and 0 <= gray <= 1, got {self.channel_jitter}, {cfg.gray}")
        self.gray = cfg.gray
        self.register_buffer("permutations", jigsaw_permutations(cfg.permutations))
        self.register_draw_counter()
        self.tile_head = nn.Sequential(nn.Linear(encoder.out_dim, cfg.tile_dim, bias=False),
                                       nn.BatchNorm1d(cfg.tile_dim), nn.ReLU(inplace=True))
        self.classifier = projection_mlp(NUM_TILES * cfg.tile_dim, cfg.hidden, cfg.permutations)

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"permutations": 10, "tile_dim": 16, "hidden": 32}

    def data(self) -> DataSpec:
        """One frame per sample, random crop and flip, no colour jitter (the paper's own colour
        handling is in :meth:`puzzles`)."""
        return DataSpec(ClipSampler(length=1), color=False)

    @torch.no_grad()
    def puzzles(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffled, normalized tiles and their permutation indices.

        Args:
            images: (N, 3, H, W) RGB, uint8 or float in [0, 1]; H and W at least 3 cells.

        Returns:
            tiles: float (N, 9, 3, tile, tile); position i holds the tile of cell
            ``permutations[labels[n], i]``. labels: int64 (N,) indices into ``self.permutations``.
        """
        n, _, h, w = images.shape
        dev = images.device
        rgb = unit_float(images)
        gray = torch.rand(n, generator=generator, device=dev) < self.gray
        luma = (rgb * torch.tensor(_LUMA, device=dev).view(3, 1, 1)).sum(1, keepdim=True)
        rgb = torch.where(gray.view(n, 1, 1, 1), luma.expand_as(rgb), rgb)
        tops, lefts = tile_positions(n, height=h, width=w, cell=self.cell, tile=self.tile, generator=generator,
                                     device=dev)
        j = self.channel_jitter
        shift = torch.randint(-j, j + 1, (2, n, NUM_TILES, 3), generator=generator, device=dev)
        shift = shift * (~gray).view(1, n, 1, 1)  # a gray image has no colour channels to misalign
        tiles = crop_patches(rgb, tops[..., None] + shift[0], lefts[..., None] + shift[1], self.tile)
        labels = torch.randint(len(self.permutations), (n,), generator=generator, device=dev)
        return normalize_tiles(shuffle_tiles(tiles, self.permutations[labels])), labels

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        """``batch["frames"]``: (B, T, 3, S, S), each frame one puzzle; the encoder sees 9BT tiles."""
        images = batch["frames"].flatten(0, 1)
        tiles, labels = self.puzzles(images, self.draw_generator(images.device))
        n = len(images)
        features = self.tile_head(self.encoder(tiles.flatten(0, 1)))  # (9N, tile_dim)
        logits = self.classifier(features.reshape(n, -1)).float()  # tiles concatenated in shuffled order
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return StepOutput(loss, {"loss": loss.item(), "acc": acc.item()})

