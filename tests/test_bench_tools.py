"""The benchmark scripts leave nothing behind in the temporary folder: a run of the suite or of a
benchmark once left gigabytes in /tmp and filled a CI machine's disk."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_propagation_synthetic_video_is_read_then_removed(tmp_path, monkeypatch) -> None:
    tool = load_tool("bench_propagation")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    frames, masks = tool.load_sequence(tool.BenchConfig(data=""), 2)
    assert len(frames) == len(masks) == 2 and frames[0].shape[:2] == (480, 854) and masks[0].shape == (480, 854)
    assert list(tmp_path.iterdir()) == []


def test_benchmarks_with_a_scratch_folder_remove_it(tmp_path, monkeypatch) -> None:
    seen = []
    for name in ("bench_train", "bench_loader", "bench_cpc"):
        tool = load_tool(name)

        def fake_bench(cfg, tmp: Path) -> dict:
            (tmp / "checkpoint.pt").write_bytes(b"x" * 1024)
            seen.append(tmp)
            return {}

        monkeypatch.setattr(tool, "bench", fake_bench)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        assert tool.main([]) == {}
    assert len(seen) == 3 and list(tmp_path.iterdir()) == []


def test_tile_bound_times_each_tiles_matmuls_against_the_tiled_step() -> None:
    tool = load_tool("bench_propagation")
    import torch

    cfg = tool.BenchConfig(context=2, radius=3.0, bound_tiles=(2, 4))
    bound = tool.tile_bound((10, 14), cfg, 8, torch.float32, torch.device("cpu"), tiled_fps=1.0, naive_fps=0.5)
    assert set(bound["tiles"]) == {"2", "4"} and bound["best_tile"] in (2, 4)
    for tile, row in bound["tiles"].items():
        t = int(tile)
        grid = tool.TileGrid.make(10, 14, tile=t, radius=3.0)
        assert grid.reach == 2 and grid.window == t + 4  # d < 3: offsets up to 2
        # every target of a tile against its whole window, in 1 + 2 frames, 8 channels
        assert row["padded_gmac"] * 1e9 == pytest.approx(grid.rows * grid.cols * t**2 * grid.window**2 * 3 * 8)
        # ... counting only targets and cells inside the 10 x 14 map, by brute force
        inside = sum(
            min(t, 10 - r * t) * min(t, 14 - c * t)
            * (min(10, (r + 1) * t + 2) - max(0, r * t - 2)) * (min(14, (c + 1) * t + 2) - max(0, c * t - 2))
            for r in range(grid.rows) for c in range(grid.cols))
        assert row["gmac"] * 1e9 == pytest.approx(inside * 3 * 8) and row["gmac"] < row["padded_gmac"]
        assert row["matmul_only_fps"] == pytest.approx(row["gmac_s"] / row["gmac"])
        assert row["over_tiled"] == row["matmul_only_fps"] and row["over_naive"] == 2 * row["matmul_only_fps"]
    assert bound["best_over_tiled"] == max(r["over_tiled"] for r in bound["tiles"].values())
