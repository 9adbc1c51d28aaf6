"""CPC / DPC: shapes, causality, bad settings, training through the CLI, too-short videos, and
evidence that the context learns to predict the future on synthetic videos with consistent motion."""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from vidssl.cli import main
from vidssl.data.backends import open_video
from vidssl.data.synth import SynthConfig, generate
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.trainer import run_config, train
from vidssl.export import load_encoder
from vidssl.losses.cpc import cpc_loss
from vidssl.methods.cpc import CPC
from vidssl.models.encoders import build_encoder

TINY = dict(method="cpc", encoder="resnet18", batch_size=2, image_size=32, decode_size=40, workers=0, lr=0.01,
            log_every=1, save_every=100, proj_dim=16, context_dim=16, seq_len=4, seq_stride=2, pred_steps=2)


@pytest.mark.parametrize("dense", [False, True])
def test_shapes_gradients_and_logs(dense: bool) -> None:
    torch.manual_seed(0)
    cfg = CPC.Config(seq_len=5, pred_steps=2, dense=dense, proj_dim=8, context_dim=12)
    method = CPC(build_encoder("resnet18"), cfg)
    frames = torch.rand(3, 5, 3, 64, 64)  # raw pixels in [0, 1]: the method normalizes them itself
    z = method.encode(frames)
    assert z.shape == ((3, 5, 8, 2, 2) if dense else (3, 5, 8))
    assert method.predict(z).shape == ((3, 3, 2, 8, 2, 2) if dense else (3, 3, 2, 8))
    out = method.training_step({"frames": frames})
    assert torch.isfinite(out.loss) and set(out.logs) == {"loss", "cpc_acc"} and 0 <= out.logs["cpc_acc"] <= 1
    out.loss.backward()
    for name in ("encoder", "project", "context", "predictor"):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(method, name).parameters()), name


@pytest.mark.parametrize("dense", [False, True])
def test_context_is_causal(dense: bool) -> None:
    """Predictions from c_t do not change when steps after t change."""
    torch.manual_seed(1)
    method = CPC(build_encoder("resnet18"), CPC.Config(seq_len=6, pred_steps=2, dense=dense, proj_dim=8, context_dim=8))
    z = torch.randn(2, 6, 8, 2, 2) if dense else torch.randn(2, 6, 8)
    later = z.clone()
    later[:, 3:] = torch.randn_like(later[:, 3:])
    a, b = method.predict(z), method.predict(later)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # contexts c_1..c_3 saw only z_1..z_3
    assert not torch.allclose(a[:, 3], b[:, 3])


@pytest.mark.parametrize(
    "bad,constraint",
    [({"seq_len": 1, "pred_steps": 1}, "seq_len must be >= 2"),
     ({"seq_len": 4, "pred_steps": 4}, "pred_steps < seq_len"),
     ({"pred_steps": 0}, "1 <= pred_steps"),
     ({"seq_stride": 0}, "seq_stride must be >= 1"),
     ({"temperature": 0.0}, "temperature must be > 0")],
)
def test_impossible_settings_are_rejected_at_build(bad: dict, constraint: str, tmp_path, capsys) -> None:
    _, method_cfg = run_config(**{**TINY, **bad})
    with pytest.raises(ValueError, match=constraint.replace("(", r"\(")):
        CPC(build_encoder("resnet18"), method_cfg)
    args = [f"{k}={v}" for k, v in {**TINY, **bad, "out": tmp_path / "run", "steps": 1}.items()]
    if "temperature" in bad:  # refused with the command line's own checks now, before the method is built
        assert main(["train", *args]) == 2 and "a temperature must be greater than 0" in capsys.readouterr().err
        return
    assert main(["train", *args]) == 1 and constraint in capsys.readouterr().err


def test_trains_through_the_cli_and_exports_the_encoder(tmp_path, synth_dir, cache_dir, capsys) -> None:
    assert main(["train", "method=cpc", "--help"]) == 0
    help_text = capsys.readouterr().out
    for key in ("seq_len", "seq_stride", "pred_steps", "dense", "proj_dim", "context_dim", "temperature"):
        assert re.search(rf"^  {key} ", help_text, re.MULTILINE), key  # a key row of its own, unprefixed
    out = tmp_path / "run"
    args = [str(synth_dir / "videos"), *(f"{k}={v}" for k, v in TINY.items()), "steps=2", f"out={out}"]
    assert main(["train", *args]) == 0
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2] and all(x["loss"] > 0 and 0 <= x["cpc_acc"] <= 1 for x in logs)
    assert yaml.safe_load((out / "config.yaml").read_text())["method"]["seq_len"] == 4
    encoder = load_encoder(out / "encoder.safetensors")
    state = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    torch.testing.assert_close(encoder.state_dict()["conv1.weight"], state["encoder.conv1.weight"])


def test_dense_mode_trains(tmp_path, synth_dir, cache_dir) -> None:
    out = train(*run_config(**{**TINY, "dense": True, "image_size": 64, "decode_size": 64},
                            data=str(synth_dir / "videos"), out=str(tmp_path / "dense"), steps=1, export=False))
    (line,) = (out / "log.jsonl").read_text().splitlines()
    assert json.loads(line)["loss"] > 0


def test_too_short_video_is_skipped_and_counted(tmp_path, synth_dir, cache_dir, caplog) -> None:
    """A 6-frame video among 24-frame ones, with sequences needing (4 - 1) * 3 + 1 = 10 frames."""
    folder = tmp_path / "videos"
    shutil.copytree(synth_dir / "videos", folder)
    generate(tmp_path / "short", SynthConfig(num_videos=1, num_frames=6, height=48, width=64, seed=2), progress=False)
    shutil.copy(tmp_path / "short" / "videos" / "synth_000.mp4", folder / "short.mp4")
    with caplog.at_level(logging.WARNING, logger="vidssl.engine.trainer"):
        train(*run_config(**{**TINY, "seq_stride": 3}, data=str(folder), out=str(tmp_path / "run"), steps=2,
                          export=False))
    assert "1 videos are too short for SequenceSampler(length=4, stride=3)" in caplog.text
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2


# --- learning: the context comes to predict the true future -------------------------------------

LEARN = dict(seq_len=8, seq_stride=3, pred_steps=3, proj_dim=64, context_dim=128)
SIZE = 48


def evaluation_batches(videos: Path) -> torch.Tensor:
    """Centre-cropped sequences (T = 8 at stride 3) of every video at every start frame, grouped
    like training batches (one sequence per video): uint8 (starts, videos, 8, 3, 48, 48), raw pixels as the
    loader gives them (:meth:`CPC.encode` normalizes)."""
    length, stride = LEARN["seq_len"], LEARN["seq_stride"]
    span = (length - 1) * stride + 1
    per_video = []
    for path in sorted(videos.glob("*.mp4")):
        reader = open_video(path, size=SIZE)
        frames = torch.from_numpy(reader.get_frames(list(range(reader.num_frames)))).permute(0, 3, 1, 2)
        left = (frames.shape[-1] - SIZE) // 2
        frames = frames[..., :SIZE, left : left + SIZE]
        per_video.append(torch.stack([frames[s : s + span : stride] for s in range(len(frames) - span + 1)]))
    return torch.stack(per_video, dim=1)


@torch.no_grad()
def prediction_accuracy(method: CPC, batches: torch.Tensor) -> dict[str, float]:
    """How often the context's predictions W_k c_t (k = 1..K) pick the true future:
    ``all``: each z_{t+k} among every step of every sequence of its batch (the training task;
    chance 1 / (videos * T));
    ``reversed``: the future z_{t+1..t+K} scores higher (summed over k) than the same frames in
    reverse order, z_{t+K..t+1} (chance 1/2);
    ``shuffled``: the future in its true order scores highest of all K! orders (chance 1 / K!);
    ``past``: z_{t+k} scores above z_{t-k}, the future of the time-reversed video (chance 1/2)."""
    method.eval()
    steps = method.pred_steps
    orders = list(itertools.permutations(range(steps)))  # identity first, reversed last
    found: dict[str, list[torch.Tensor]] = {"all": [], "reversed": [], "shuffled": [], "past": []}
    for x in batches:
        z = method.encode(x)
        pred = method.predict(z)
        found["all"].append(cpc_loss(pred, z, temperature=method.temperature).accuracy.view(1))
        for t in range(pred.shape[1]):
            scores = torch.einsum("nkd,njd->nkj", pred[:, t], z[:, t + 1 : t + 1 + steps])  # guess k vs step j
            by_order = torch.stack([scores[:, torch.arange(steps), list(o)].sum(1) for o in orders], dim=1)
            found["reversed"].append((by_order[:, 0] > by_order[:, -1]).float())
            found["shuffled"].append((by_order.argmax(1) == 0).float())
            for k in range(1, min(steps, t) + 1):
                q = pred[:, t, k - 1]
                found["past"].append(((q * z[:, t + k]).sum(1) > (q * z[:, t - k]).sum(1)).float())
    return {key: torch.cat(values).mean().item() for key, values in found.items()}


@pytest.mark.slow
def test_context_learns_to_predict_the_future(tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "synth"
    generate(data, SynthConfig(num_videos=8, num_frames=32, height=SIZE, width=64, seed=5), progress=False)
    cfg, method_cfg = run_config(method="cpc", data=str(data / "videos"), out=str(tmp_path / "run"),
                                 encoder="resnet18", steps=50, batch_size=4, image_size=SIZE, decode_size=SIZE,
                                 workers=0, optimizer="adamw", lr=1e-3, weight_decay=1e-6, warmup_steps=5,
                                 log_every=10, save_every=1000, export=False, **LEARN)
    out = train(cfg, method_cfg)
    batches = evaluation_batches(data / "videos")
    trained = CPC(build_encoder("resnet18"), method_cfg, image_size=cfg.image_size, seed=cfg.seed)
    trained.load_state_dict(load_checkpoint(out / "checkpoints" / "last.pt")["model"])
    torch.manual_seed(cfg.seed)  # the very initialisation the run started from
    untrained = CPC(build_encoder("resnet18"), method_cfg, image_size=cfg.image_size, seed=cfg.seed)
    after, before = prediction_accuracy(trained, batches), prediction_accuracy(untrained, batches)
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    print(f"\nCPC training: loss {logs[0]['loss']:.3f} -> {logs[-1]['loss']:.3f}, "
          f"{sum(x['images_per_s'] for x in logs) / len(logs):.1f} images/s; prediction accuracy on {batches.shape[0]} "
          f"batches of {batches.shape[1]} sequences, trained vs untrained: "
          + ", ".join(f"{k} {after[k]:.3f} vs {before[k]:.3f}" for k in after))
    assert after["all"] > before["all"] + 0.02
    assert after["reversed"] > max(before["reversed"], 0.5) + 0.1
    assert after["shuffled"] > before["shuffled"] + 0.08
