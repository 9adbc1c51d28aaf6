"""Rotation, jigsaw and relative patch location: one step, learning on tiny images, the labels
(against torch.rot90, by reassembling puzzles, from patch offsets), the permutation set, the
chromatic-aberration counter-measures, exact resume, and training through the real loop from the
CLI on an image folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from testdata import assert_resume_is_bit_exact

from vidssl.cli import main
from vidssl.config import ConfigError
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import normalize
from vidssl.engine.config import method_class
from vidssl.engine.trainer import run_config
from vidssl.methods import METHODS
from vidssl.methods.base import Method
from vidssl.methods.jigsaw import Jigsaw, jigsaw_permutations, normalize_tiles, shuffle_tiles, tile_positions
from vidssl.methods.relpatch import NEIGHBOURS, RelPatch, patch_positions, suppress_aberration
from vidssl.methods.rotation import rotations
from vidssl.models.color import imagenet_to_rgb
from vidssl.models.encoders import build_encoder
from vidssl.models.patches import crop_patches

NAMES = ["rotation", "jigsaw", "relpatch"]
SMALL_HEADS: dict[str, dict[str, Any]] = {
    "rotation": {},
    "jigsaw": dict(tile_dim=32, hidden=64),
    "relpatch": dict(hidden=64),
}
LOOP = dict(batch_size=2, image_size=48, decode_size=56, workers=0, lr=0.01, log_every=1, save_every=2)
TINY_ENCODER = "timm:test_resnet"  # 0.4M parameters: learning runs in seconds on a shared CPU


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster than several, and far faster on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, encoder: str = "resnet18", *, image_size: int = 48, **kw: Any) -> tuple[Method, DataSpec]:
    torch.manual_seed(0)
    cls = METHODS[name]
    method = cls(build_encoder(encoder), cls.Config(**{**SMALL_HEADS[name], **kw}), image_size=image_size)
    return method, method.data()


def pictures(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 1, 3, size, size), raw pixels as the loader gives them: smooth random colour
    fields (distinct content in every region) over a light-from-above ramp (an orientation cue)."""
    g = torch.Generator().manual_seed(seed)
    fields = F.interpolate(torch.randn(n, 3, 6, 6, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    ramp = torch.linspace(1, -1, size).view(size, 1) + 0.5 * torch.linspace(-1, 1, size).view(1, size)
    # The pattern is defined in ImageNet-normalized units (what methods were fed before they
    # normalized pixels themselves); these are its pixels, clipped to [0, 255] where it goes beyond
    # (about 10% of the values), so the encoder sees the same input as before everywhere else.
    return (imagenet_to_rgb(fields + 1.5 * ramp).clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1)


def coordinates(size: int) -> torch.Tensor:
    """float (1, 3, size, size) in [0, 1] RGB: red = row / size, green = column / size."""
    rows = torch.arange(size).view(size, 1).expand(size, size) / size
    cols = torch.arange(size).view(1, size).expand(size, size) / size
    return torch.stack([rows, cols, torch.full_like(rows, 0.5)])[None]


# --- every method: one step, shapes the bench feeds, learning ---------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("frames", [1, 2])
def test_one_step_is_finite_and_reaches_the_encoder(name: str, frames: int) -> None:
    method, spec = build(name)
    assert spec.sampler.min_frames(25.0) == 1 and spec.color is False and spec.transform is None
    batch = torch.randint(0, 256, (2, frames, 3, 48, 48), dtype=torch.uint8)  # (B, T, 3, S, S) as the loader gives
    out = method.training_step({"frames": batch})
    assert torch.isfinite(out.loss) and set(out.logs) == {"loss", "acc"}
    out.loss.backward()
    assert method.encoder.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in method.named_parameters() if not n.startswith("encoder."))


LEARNING = {  # steps, image size, batch, options: enough for a clear change on a fixed batch
    "rotation": (20, 32, 4, {}),
    "jigsaw": (40, 48, 8, dict(permutations=10, tile_dim=64, hidden=128)),
    "relpatch": (80, 64, 8, dict(hidden=128)),
}


@pytest.mark.parametrize("name", NAMES)
def test_a_short_run_lowers_the_loss_and_raises_the_accuracy(name: str) -> None:
    steps, size, batch, options = LEARNING[name]
    method, _ = build(name, TINY_ENCODER, image_size=size, **options)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    frames = pictures(batch, size)
    logs = []
    for _ in range(steps):
        out = method.training_step({"frames": frames})
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        logs.append(out.logs)
    first = logs[0]
    last = {k: sum(log[k] for log in logs[-5:]) / 5 for k in ("loss", "acc")}
    print(f"{name}: step 1 loss {first['loss']:.3f} acc {first['acc']:.3f} -> "
          f"last 5 steps loss {last['loss']:.3f} acc {last['acc']:.3f}")
    assert last["loss"] < 0.8 * first["loss"] and last["acc"] > first["acc"]
    chance = {"rotation": 1 / 4, "jigsaw": 1 / 10, "relpatch": 1 / 8}[name]
    assert last["acc"] > 2 * chance


# --- rotation -------------------------------------------------------------------------------


def test_rotation_k_is_rot90_by_k() -> None:
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    views, labels = rotations(images)
    assert views.shape == (8, 3, 5, 5) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for k in range(4):
        for i in range(2):
            assert torch.equal(views[k * 2 + i], torch.rot90(images[i], k, dims=(-2, -1)))
    dot = torch.zeros(1, 1, 3, 3)
    dot[..., 0, 2] = 1  # top-right
    turned, _ = rotations(dot)
    corners = [tuple(int(v) for v in (turned[k, 0] == 1).nonzero()[0]) for k in range(4)]
    assert corners == [(0, 2), (0, 0), (2, 0), (2, 2)]  # counter-clockwise quarter turns
    with pytest.raises(ValueError, match="square"):
        rotations(torch.zeros(1, 3, 4, 5))


# --- jigsaw ---------------------------------------------------------------------------------


def test_permutation_set_is_deterministic_unique_and_far_apart() -> None:
    perms = jigsaw_permutations(100)
    assert perms.shape == (100, 9) and perms.dtype == torch.int64
    assert all(sorted(row) == list(range(9)) for row in perms.tolist())
    assert len({tuple(row) for row in perms.tolist()}) == 100
    distance = (perms[:, None] != perms[None]).sum(-1)
    off_diagonal = distance[~torch.eye(100, dtype=torch.bool)].float()
    assert off_diagonal.min() == 6 and 8.0 < off_diagonal.mean() < 8.2  # as the jigsaw docstring states
    assert torch.equal(perms, jigsaw_permutations(100))
    assert not torch.equal(jigsaw_permutations(10, seed=1), jigsaw_permutations(10))
    # another process (another run, another DDP rank) computes the very same set
    code = "from vidssl.methods.jigsaw import jigsaw_permutations as p; print(p(100).tolist())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert json.loads(other) == perms.tolist()
    method, _ = build("jigsaw", permutations=100)
    assert torch.equal(method.permutations, perms)
    with pytest.raises(ValueError, match=r"permutations must be in 1\.\.362880"):
        jigsaw_permutations(0)
    with pytest.raises(ValueError, match=r"permutations must be in 1\.\.362880"):
        build("jigsaw", permutations=0)


def test_unpermuted_tiles_reassemble_the_crop() -> None:
    image = torch.rand(2, 3, 50, 50)
    g = torch.Generator().manual_seed(0)
    tops, lefts = tile_positions(2, height=50, width=50, cell=16, tile=16, generator=g, device="cpu")  # no gap
    tiles = crop_patches(image, tops, lefts, 16)  # (2, 9, 3, 16, 16), cells in row-major order
    perms = jigsaw_permutations(100)[torch.tensor([3, 57])]
    shuffled = shuffle_tiles(tiles, perms)
    assert torch.equal(shuffled[1, 0], tiles[1, perms[1, 0]])  # position i shows cell perms[i]
    restored = shuffle_tiles(shuffled, perms.argsort(1))
    rows = [torch.cat(list(restored[:, 3 * r : 3 * r + 3].unbind(1)), dim=-1) for r in range(3)]
    assert torch.equal(torch.cat(rows, dim=-2), image[..., 1:49, 1:49])  # the centred 48 px grid


def test_tiles_lie_in_their_cells_with_a_random_gap() -> None:
    g = torch.Generator().manual_seed(0)
    tops, lefts = tile_positions(64, height=48, width=48, cell=16, tile=14, generator=g, device="cpu")
    cell_tops = torch.arange(3).repeat_interleave(3) * 16
    cell_lefts = torch.arange(3).repeat(3) * 16
    assert (tops - cell_tops).unique().tolist() == (lefts - cell_lefts).unique().tolist() == [0, 1, 2]
    tiles = crop_patches(coordinates(48).expand(64, -1, -1, -1), tops, lefts, 14)
    assert torch.allclose(tiles[:, :, 0, 0, 0] * 48, tops.float())
    assert torch.allclose(tiles[:, :, 1, 0, 0] * 48, lefts.float())


def test_puzzles_are_permuted_normalized_tiles_of_the_frame() -> None:
    method, _ = build("jigsaw", tile=16, gray=0.0, channel_jitter=0)  # tile = cell: no gap
    assert isinstance(method, Jigsaw) and (method.cell, method.tile) == (16, 16)
    raw = torch.randint(0, 256, (3, 3, 48, 48), dtype=torch.uint8)  # as the loader gives
    rgb = raw / 255
    tiles, labels = method.puzzles(raw, torch.Generator().manual_seed(0))
    same, same_labels = method.puzzles(rgb, torch.Generator().manual_seed(0))  # [0, 1] floats: the same puzzles
    assert torch.equal(labels, same_labels)
    torch.testing.assert_close(same, tiles)
    assert tiles.shape == (3, 9, 3, 16, 16)
    cells = rgb.unfold(2, 16, 16).unfold(3, 16, 16).permute(0, 2, 3, 1, 4, 5).reshape(3, 9, 3, 16, 16)
    restored = shuffle_tiles(tiles, method.permutations[labels].argsort(1))
    torch.testing.assert_close(restored, normalize_tiles(cells), atol=1e-4, rtol=1e-4)
    assert tiles.mean(dim=(-2, -1)).abs().max() < 1e-4
    assert (tiles.std(dim=(-2, -1), unbiased=False) - 1).abs().max() < 1e-3


def test_jigsaw_defaults_scale_with_image_size() -> None:
    assert (lambda m: (m.cell, m.tile, m.channel_jitter))(build("jigsaw", image_size=225)[0]) == (75, 64, 2)
    assert (lambda m: (m.cell, m.tile, m.channel_jitter))(build("jigsaw", image_size=48)[0]) == (16, 14, 0)
    with pytest.raises(ValueError, match=r"tile must be in 1\.\.16"):
        build("jigsaw", tile=17)


def test_gray_puzzles_and_channel_jitter() -> None:
    gray, _ = build("jigsaw", gray=1.0, channel_jitter=2)
    tiles, _ = gray.puzzles(torch.rand(2, 3, 48, 48), torch.Generator().manual_seed(0))
    assert torch.allclose(tiles[:, :, 0], tiles[:, :, 1], atol=1e-5)
    assert torch.allclose(tiles[:, :, 0], tiles[:, :, 2], atol=1e-5)
    colour, _ = build("jigsaw", gray=0.0, channel_jitter=2, tile=16)
    flat = torch.rand(1, 1, 48, 48).expand(4, 3, 48, 48)  # equal channels: only jitter can tell them apart
    tiles, _ = colour.puzzles(flat, torch.Generator().manual_seed(0))
    assert not torch.allclose(tiles[:, :, 0], tiles[:, :, 1], atol=1e-3)


# --- relative patch location ----------------------------------------------------------------


def test_neighbour_label_matches_the_offset() -> None:
    labels = torch.arange(8).repeat(8)
    for jitter in (0, 3):
        tops, lefts = patch_positions(labels, height=64, width=64, patch=12, gap=6, jitter=jitter,
                                      generator=torch.Generator().manual_seed(0))
        expected = torch.tensor(NEIGHBOURS)[labels] * (12 + 6)
        offset = torch.stack([tops[:, 1] - tops[:, 0], lefts[:, 1] - lefts[:, 0]], dim=1)
        assert (offset - expected).abs().max() <= 2 * jitter
        assert tops.min() >= 0 and tops.max() + 12 <= 64 and lefts.min() >= 0 and lefts.max() + 12 <= 64
    assert NEIGHBOURS[1] == (-1, 0) and NEIGHBOURS[4] == (0, 1)  # label 1 = above, 4 = right of the centre
    # through the method: the patches are the frame's pixels where the label says
    method, _ = build("relpatch", image_size=64, aberration="none")
    assert isinstance(method, RelPatch) and (method.patch, method.gap, method.jitter) == (15, 7, 1)
    patches, labels = method.pairs(coordinates(64).expand(32, -1, -1, -1), torch.Generator().manual_seed(1))
    corner = patches[..., :2, 0, 0] * 64  # (N, 2, (row, column)) of each patch: pairs returns [0, 1] RGB
    step = torch.round((corner[:, 1] - corner[:, 0]) / (15 + 7))
    assert step.tolist() == [list(NEIGHBOURS[k]) for k in labels.tolist()]


def test_relpatch_defaults_scale_with_image_size() -> None:
    m = build("relpatch", image_size=224)[0]
    assert (m.patch, m.gap, m.jitter) == (54, 27, 3)
    with pytest.raises(ValueError, match="do not fit"):
        build("relpatch", image_size=48, patch=16)
    with pytest.raises(ValueError, match="aberration must be drop, project, gray or none"):
        build("relpatch", aberration="blur")


def test_chromatic_aberration_counter_measures() -> None:
    patches = torch.rand(4, 2, 3, 8, 8)  # [0, 1] RGB, as pairs() cuts them
    g = torch.Generator().manual_seed(0)
    dropped = suppress_aberration(patches, "drop", g)
    kept = (dropped == patches).flatten(-2).all(-1)  # (N, K, 3)
    assert (kept.sum(-1) == 1).all()  # exactly one channel survives in every patch
    noise_std = dropped[~kept].flatten(-2).std(-1)
    assert noise_std.max() < 0.05 * patches.std(dim=(-2, -1)).min()
    # a dropped channel sits at its ImageNet mean: about 0 once normalized, as in the paper's inputs
    normalized = normalize(dropped)
    assert normalized.permute(0, 1, 3, 4, 2)[~kept[..., None, None, :].expand(-1, -1, 8, 8, -1)].abs().max() < 0.05
    projected = suppress_aberration(patches, "project", g)
    assert (projected * torch.tensor([1.0, -2.0, 1.0]).view(3, 1, 1)).sum(-3).abs().max() < 1e-5  # no green-magenta
    gray_rgb = torch.full((1, 1, 3, 4, 4), 0.3)
    torch.testing.assert_close(suppress_aberration(gray_rgb, "project", g), gray_rgb)  # grays are kept
    grayed = suppress_aberration(patches, "gray", g)
    assert torch.allclose(grayed[:, :, 0], grayed[:, :, 1], atol=1e-6)
    assert suppress_aberration(patches, "none", g) is patches


# --- options, the real loop -----------------------------------------------------------------


def test_options_are_config_keys() -> None:
    assert {"permutations", "tile", "gray"} <= set(method_class("jigsaw").Config.__dataclass_fields__)
    assert {"gap", "aberration"} <= set(method_class("relpatch").Config.__dataclass_fields__)
    assert "hidden" in method_class("rotation").Config.__dataclass_fields__
    # and they reach the method's config (not the engine's) through the flat keys
    _, jigsaw_cfg = run_config(method="jigsaw", permutations=10, tile=12)
    assert jigsaw_cfg == method_class("jigsaw").Config(permutations=10, tile=12)
    assert run_config(method="relpatch", aberration="gray")[1].aberration == "gray"
    with pytest.raises(ConfigError, match="belongs to relpatch"):
        run_config(method="rotation", aberration="gray")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vidssl.data.synth_images import make_image_folder

    root = tmp_path_factory.mktemp("pretext_images")
    return make_image_folder(root / "images", num_videos=2, num_frames=8, size=48, height=96, width=128, every=4,
                             min_area=50, progress=False) / "train"


@pytest.mark.parametrize("name", NAMES)
def test_trains_on_an_image_folder_from_the_cli(name: str, image_folder: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / name
    options = {**SMALL_HEADS[name], **({"permutations": 10} if name == "jigsaw" else {})}
    args = [str(image_folder), "data_kind=images", f"method={name}", f"encoder={TINY_ENCODER}", "steps=2",
            f"out={out}", *(f"{k}={v}" for k, v in {**LOOP, **options}.items())]
    assert main(["train", *args]) == 0
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2] and all(0 <= x["acc"] <= 1 for x in lines)
    assert (out / "encoder.safetensors").exists()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert all(config["method"][k] == v for k, v in options.items())


@pytest.mark.parametrize("name", ["jigsaw", "relpatch"])
def test_resume_continues_exactly(name: str, tmp_path: Path, synth_dir: Path, cache_dir: Path, monkeypatch) -> None:
    cfg, method_cfg = run_config(method=name, data=str(synth_dir / "videos"), out=str(tmp_path / "full"), steps=4,
                                 export=False, encoder=TINY_ENCODER, **{**LOOP, **SMALL_HEADS[name]})
    state = assert_resume_is_bit_exact(cfg, method_cfg, monkeypatch)
    assert int(state["draws"]) == 4
