"""``vidssl eval cycle`` and ``vidssl train val_every=``: the label-free round-trip score, the
held-out videos it reads, and what validation leaves alone (the weights) and keeps (the best)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidssl.cli import main
from vidssl.data.index import VideoInfo, held_out
from vidssl.evaluation.cycle import chroma, clip_starts, colour_clip, colour_gain, cycle_clip, regions, score_return
from vidssl.propagation.propagate import PropagationConfig


def test_regions_cut_the_grid_into_near_equal_blocks() -> None:
    r = regions(6, 9, 3)
    assert r.shape == (9, 6, 9) and torch.equal(r.sum(0), torch.ones(6, 9))
    assert [int(r[i].sum()) for i in range(9)] == [6] * 9  # 2 rows x 3 columns each
    assert int(r[0, :2, :3].sum()) == 6 and r[4, 2:4, 3:6].all()
    small = regions(2, 3, 4)  # fewer cells than blocks: one block per cell, the others empty
    assert int(small.sum()) == 6 and int((small.sum((1, 2)) > 0).sum()) == 6


def test_score_return_is_region_iou_and_cell_accuracy() -> None:
    start = regions(4, 4, 2)
    assert score_return(start, start) == {"J": 1.0, "accuracy": 1.0}
    swapped = start[[1, 0, 2, 3]]  # the top two blocks trade places
    got = score_return(start, swapped)
    assert got["accuracy"] == 0.5 and got["J"] == pytest.approx(0.5)  # two regions of four lost entirely


class PatchFeatures:
    """Each 8 x 8 cell's own pixels (192-d, centred, L2-normalized): a feature that identifies a
    cell of random texture exactly, so the score's behaviour is known (Lab colour averages are 3-d
    and confuse random textures among themselves)."""

    stride, device, dtype, name = 8, torch.device("cpu"), torch.float32, "patches"

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).float().permute(0, 3, 1, 2)
        cells = torch.nn.functional.unfold(x, 8, stride=8)
        cells = torch.nn.functional.normalize(cells - cells.mean(1, keepdim=True), dim=1)
        return cells.view(len(frames), 192, frames.shape[1] // 8, frames.shape[2] // 8).permute(0, 2, 3, 1)


def _texture(rng: np.random.Generator) -> np.ndarray:
    return np.kron(rng.integers(0, 256, (24, 32, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 96 x 128


def test_the_round_trip_comes_home_when_frames_correspond_and_not_when_they_do_not() -> None:
    rng = np.random.default_rng(0)
    base = _texture(rng)
    # no neighbourhood: a column that wraps around jumps across the frame
    settings, features = PropagationConfig(encoder="pixels", radius=0), PatchFeatures()
    static = cycle_clip(np.stack([base] * 5), features, settings, cells=4)
    moving = cycle_clip(np.stack([np.roll(base, 8 * t, axis=1) for t in range(5)]), features, settings, cells=4)
    unrelated = cycle_clip(np.stack([base, *[_texture(rng) for _ in range(4)]]), features, settings, cells=4)
    assert static == {"J": 1.0, "accuracy": 1.0}
    assert moving["J"] > 0.95  # a cell a frame, every cell still in view (the texture wraps around)
    assert unrelated["J"] < 0.5 and unrelated["accuracy"] < 0.6  # nothing corresponds: the regions are lost


class PlaceFeatures:
    """Where a cell is, not what it shows: one-hot of its position, so every cell matches itself."""

    stride, device, dtype, name = 8, torch.device("cpu"), torch.float32, "places"

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        h, w = frames.shape[1] // 8, frames.shape[2] // 8
        return torch.eye(h * w).view(1, h, w, h * w).expand(len(frames), -1, -1, -1)


def _coloured(rng: np.random.Generator) -> np.ndarray:
    """A texture whose cells differ in lightness (what the gray frames keep) and in colour."""
    return np.kron(rng.integers(0, 256, (24, 32, 3)), np.ones((4, 4, 1))).astype(np.uint8)


class SmoothPlaceFeatures(PlaceFeatures):
    """Where a cell is, blurred: a Gaussian bump over the grid per cell, so the default protocol's
    top-10 average smooths the colour it carries (a blur beats the sharp colour on mean error)."""

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        h, w = frames.shape[1] // 8, frames.shape[2] // 8
        yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
        cells = torch.stack([yy.flatten(), xx.flatten()], 1)
        bumps = torch.exp(-torch.cdist(cells, cells) ** 2 / (2 * 2.0**2))
        bumps = torch.nn.functional.normalize(bumps, dim=1)
        return bumps.view(1, h, w, h * w).expand(len(frames), -1, -1, -1)


def test_colour_gain_is_one_for_true_correspondence_zero_for_staying_put_and_low_for_unrelated_frames() -> None:
    rng = np.random.default_rng(1)
    base = _coloured(rng)
    moving = np.stack([np.roll(base, 8 * t, axis=1) for t in range(5)])  # a cell a frame, wrapping around
    settings = PropagationConfig(encoder="pixels", radius=0, topk=1)
    tracked = colour_clip(moving, PatchFeatures(), settings)
    assert tracked["stayed"] > 0.05 and tracked["moved"] < 0.01 * tracked["stayed"]
    assert colour_gain([tracked]) > 0.99
    put = colour_clip(moving, PlaceFeatures(), settings)  # the round trip's blind spot scores 0 here
    assert colour_gain([put]) == pytest.approx(0.0, abs=1e-6) and put["stayed"] == pytest.approx(tracked["stayed"])
    unrelated = np.stack([base, *[_coloured(rng) for _ in range(4)]])
    assert colour_gain([colour_clip(unrelated, PatchFeatures(), settings)]) < 0.2
    assert colour_gain([colour_clip(np.stack([base] * 3), PatchFeatures(), settings)]) is None  # nothing changed
    # staying put scores 0 however smooth the feature, under every protocol (the default one averages
    # the top 10 of a single first frame: without the static baseline a blur alone scored 0.22 here)
    for protocol in (PropagationConfig(encoder="pixels"), PropagationConfig(encoder="pixels", preset="crw")):
        blurred = colour_clip(moving, SmoothPlaceFeatures(), protocol)
        assert blurred["stayed"] > 0 and colour_gain([blurred]) == pytest.approx(0.0, abs=1e-6)
    # the colour is what the encoder never sees: it is given the gray frames
    seen = []

    class Spy(PatchFeatures):
        def __call__(self, frames: np.ndarray) -> torch.Tensor:
            seen.append(frames)
            return super().__call__(frames)

    colour_clip(moving, Spy(), settings)
    assert (seen[0] == seen[0][..., :1]).all()
    ab = chroma(moving, 12, 16)
    assert ab.shape == (5, 2, 12, 16) and torch.allclose(ab[1], torch.roll(ab[0], 1, dims=2), atol=1e-5)


def test_clip_starts_spread_over_the_video() -> None:
    assert clip_starts(100, frames=8, gap=3, clips=2) == [0, 78]  # span 22
    assert clip_starts(100, frames=8, gap=3, clips=3) == [0, 39, 78]
    assert clip_starts(22, frames=8, gap=3, clips=3) == [0]
    assert clip_starts(21, frames=8, gap=3, clips=2) == []
    assert clip_starts(100, frames=8, gap=3, clips=1) == [39]


def _infos(names: list[str], folder: str = "/videos") -> list[VideoInfo]:
    return [VideoInfo(f"{folder}/{n}", 50, 25.0, 96, 128) for n in names]


def test_held_out_videos_depend_on_the_names_alone() -> None:
    names = [f"clip{i:02d}.mp4" for i in range(20)]
    chosen = {Path(v.path).name for v in held_out(_infos(names), 4)}
    assert len(chosen) == 4
    assert {Path(v.path).name for v in held_out(_infos(names[::-1]), 4)} == chosen  # any order
    assert {Path(v.path).name for v in held_out(_infos(names, "/elsewhere"), 4)} == chosen  # any folder
    assert {Path(v.path).name for v in held_out(_infos(names), 2)} < chosen  # fewer: a subset
    assert held_out(_infos(names), 0) == []
    with pytest.raises(ValueError, match="leaves none of the 3 to train on"):
        held_out(_infos(names[:3]), 3)


def test_eval_cycle_scores_a_folder_and_refuses_copy(synth_dir, tmp_path, cache_dir, capsys) -> None:
    out = tmp_path / "cycle"
    assert main(["eval", "cycle", str(synth_dir / "videos"), "encoder=pixels", f"out={out}", "size=120"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["clips"] == 6 and len(results["videos"]) == 3 and 0 < results["cycle J"] <= 1
    assert set(results["per_video"]) == set(results["videos"])
    assert main(["eval", "cycle", str(synth_dir / "videos"), "held_out=1", "encoder=pixels", f"out={out}1",
                 "size=120"]) == 0
    assert len(json.loads((out.parent / "cycle1" / "results.json").read_text())["videos"]) == 1
    capsys.readouterr()
    assert main(["eval", "cycle", str(synth_dir / "videos"), "encoder=copy", f"out={out}"]) == 1
    assert "every round trip returns home" in capsys.readouterr().err
    assert main(["eval", "cycle", str(tmp_path / "nothing"), f"out={out}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give a folder of videos" in err


@pytest.fixture()
def val_run(synth_dir, tmp_path, cache_dir):
    from vidssl.engine.config import run_config

    cfg, method_cfg = run_config(method="fti", data=str(synth_dir / "videos"), out=str(tmp_path / "run"), steps=3,
                                 batch_size=2, image_size=32, decode_size=64, workers=0, log_every=1, save_every=1,
                                 val_every=2, val_videos=1, val_size=96, keep_best=True, snapshots=(1,))
    return cfg, method_cfg


def test_training_validates_on_held_out_videos_and_keeps_the_best(val_run, monkeypatch, capsys) -> None:
    from vidssl.engine.checkpoint import load_checkpoint
    from vidssl.engine.trainer import train
    from vidssl.export import load_encoder

    cfg, method_cfg = val_run
    held = held_out_names(cfg)
    seen = []
    real_scan = __import__("vidssl.data.pipeline", fromlist=["VideoFrameDataset"]).VideoFrameDataset

    class Spy(real_scan):
        def __init__(self, *, videos, **kwargs):
            seen.extend(Path(v.path).name for v in videos)
            super().__init__(videos=videos, **kwargs)

    monkeypatch.setattr("vidssl.data.pipeline.VideoFrameDataset", Spy)
    out = train(cfg, method_cfg)
    assert seen and not set(seen) & held  # the held-out video is never a training video
    rows = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # the start, the snapshot, every 2nd, the end
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["colour_gain"] == max(r["colour_gain"] for r in rows)  # keep_best follows the colour gain
    assert best["step"] == next(r["step"] for r in rows if r["colour_gain"] == best["colour_gain"])
    assert load_encoder(out / "best" / "encoder.safetensors") is not None
    assert (out / "snapshots" / "step_000001.safetensors").exists()

    # validation reads a copy and draws no random numbers: the weights are those of a run that
    # validates only at its start and end
    quiet = train(dataclasses.replace(cfg, out=f"{cfg.out}_quiet", val_every=100, keep_best=False, snapshots=()),
                  method_cfg)
    a = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(quiet / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the score it logged at the end is 'vidssl eval cycle' of its encoder on the held-out video
    capsys.readouterr()
    assert main(["eval", "cycle", cfg.data, f"held_out={cfg.val_videos}", f"encoder={out}", "size=96",
                 f"out={out / 'cycle'}"]) == 0
    scored = json.loads((out / "cycle" / "results.json").read_text())
    assert set(scored["videos"]) == held and scored["cycle J"] == pytest.approx(rows[-1]["cycle_J"], abs=1e-6)
    assert scored["colour gain"] == pytest.approx(rows[-1]["colour_gain"], abs=1e-6)

    # a resumed, extended run keeps the rows up to its checkpoint and adds the new ones once
    train(dataclasses.replace(cfg, steps=5, resume=True), method_cfg)
    rows = [json.loads(line)["step"] for line in (out / "val.jsonl").read_text().splitlines()]
    assert rows == [0, 1, 2, 3, 4, 5]
    assert json.loads((out / "best" / "best.json").read_text())["by"] == "colour_gain"


def test_keep_best_by_the_round_trip_and_a_best_chosen_by_another_score(val_run, caplog) -> None:
    from vidssl.engine.trainer import train

    cfg, method_cfg = val_run
    out = train(dataclasses.replace(cfg, keep_best_by="cycle_J", out=f"{cfg.out}_J"), method_cfg)
    rows = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["by"] == "cycle_J" and best["cycle_J"] == max(r["cycle_J"] for r in rows)
    # a best.json of a run from before the colour gain (no colour_gain) is not the bar of the new score
    out = train(cfg, method_cfg)
    (out / "best" / "best.json").write_text(json.dumps({"step": 1, "cycle_J": 2.0, "cycle_accuracy": 1.0}))
    with caplog.at_level("WARNING"):
        train(dataclasses.replace(cfg, steps=5, resume=True), method_cfg)
    assert "chosen by another score than colour_gain" in caplog.text
    assert json.loads((out / "best" / "best.json").read_text())["by"] == "colour_gain"


def held_out_names(cfg) -> set[str]:
    from vidssl.data.index import scan

    return {Path(v.path).name for v in held_out(scan(cfg.data, progress=False).videos, cfg.val_videos)}


def test_keep_best_without_validation_is_refused(tmp_path, capsys) -> None:
    assert main(["train", "method=fti", f"out={tmp_path / 'r'}", "keep_best=true"]) == 2  # a usage error
    assert "keep_best=true needs val_every=N" in capsys.readouterr().err
    assert main(["train", "method=fti", f"out={tmp_path / 'r'}", "steps=10", "snapshots=(5,20)"]) == 2
    assert "not within 1..10" in capsys.readouterr().err


def test_val_every_alone_holds_out_four_videos_and_val_videos_alone_holds_out_without_scoring() -> None:
    from vidssl.engine.config import TrainConfig, held_out_count

    assert held_out_count(TrainConfig()) == 0
    assert held_out_count(TrainConfig(val_every=10)) == 4
    assert held_out_count(TrainConfig(val_every=10, val_videos=2)) == 2
    assert held_out_count(TrainConfig(val_videos=3)) == 3  # for a later 'vidssl eval cycle held_out=3'


def test_val_preset_names_the_propagation_presets() -> None:
    import typing

    from vidssl.engine.config import TrainConfig
    from vidssl.propagation.propagate import PRESETS, PropagationConfig

    choices = typing.get_args(typing.get_type_hints(TrainConfig)["val_preset"])
    assert set(choices) == {"", "default", *PRESETS}
    assert set(typing.get_args(typing.get_type_hints(PropagationConfig)["preset"])) == set(choices)
    assert TrainConfig(val_preset="default").val_preset == ""  # one protocol, one record


def test_a_vit_is_scored_at_its_own_stride_on_its_own_grid() -> None:
    from vidssl.evaluation.cycle import encoder_extractor
    from vidssl.models.encoders import build_encoder

    torch.manual_seed(0)
    vit = build_encoder("vit_tiny")
    extractor = encoder_extractor(vit, PropagationConfig(encoder="pixels"), gray=False)  # the protocol's stride 8
    assert extractor.stride == 16
    frames = np.stack([_texture(np.random.default_rng(0))[:40, :56]] * 3)  # 40 x 56: a ViT floors to 2 x 3
    got = cycle_clip(frames, extractor, PropagationConfig(encoder="pixels"), cells=2)
    assert 0 <= got["J"] <= 1


def test_bench_reuses_a_score_only_under_its_own_protocol(tmp_path) -> None:
    from vidssl.bench import BenchConfig, Row, Score, score_row

    cfg = BenchConfig(out=str(tmp_path), preset=("dino",), cached=True)
    folder = tmp_path / "eval" / "random" / "davis"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"J&F": 0.5, "settings": {"preset": "crw", "size": 0}}))
    # computed under crw: not a dino score (cached=true computes nothing, so it reads as missing)
    assert score_row(cfg, Row("random", "random", 0), Score("davis", "dino"), progress=False) is None
    (folder / "results.json").write_text(json.dumps({"J&F": 0.5, "settings": {"preset": "dino", "size": 0}}))
    assert score_row(cfg, Row("random", "random", 0), Score("davis", "dino"), progress=False)["J&F"] == 0.5

