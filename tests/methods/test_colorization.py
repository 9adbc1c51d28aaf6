"""Colorization (Vondrick et al. 2018): colour conversion, colour clusters, the copy loss against
straightforward references, one step, the trainer and CLI, checkpointed centres, and learning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from vidssl.cli import main
from vidssl.data.transforms import normalize
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.config import engine_defaults
from vidssl.engine.trainer import run_config, train
from vidssl.losses.colorization import colorization_loss, copy_colors
from vidssl.methods.colorization import Colorization
from vidssl.models.color import (
    assign_clusters,
    fit_color_clusters,
    gray_input,
    imagenet_to_rgb,
    lightness_input,
    rgb_to_lab,
)
from vidssl.models.encoders import build_encoder

TINY = dict(encoder="resnet18", encoder_stride=8, batch_size=2, image_size=32, decode_size=40, workers=0, lr=0.01,
            log_every=1, save_every=2, kmeans_samples=4, num_refs=2, ref_stride=2)


@pytest.fixture()
def one_thread():
    """Tiny convolutions run faster on one thread than on a pool fighting other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- colour space -------------------------------------------------------------------------------


def test_rgb_to_lab_matches_skimage() -> None:
    skimage_color = pytest.importorskip("skimage.color")
    rgb = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    corners = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.02, 0.03, 0.04], [0.5, 0.5, 0.5]])
    rgb[0, :, 0, : len(corners)] = corners.T  # black, white, primaries, the linear segments, gray
    expected = skimage_color.rgb2lab(rgb.permute(0, 2, 3, 1).double().numpy())
    got = rgb_to_lab(rgb).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_imagenet_round_trip_and_gray_input() -> None:
    rgb = torch.rand(2, 3, 3, 8, 8)  # (B, T, 3, H, W): any leading dims
    torch.testing.assert_close(imagenet_to_rgb(normalize(rgb)), rgb, atol=1e-5, rtol=0)
    x = gray_input(normalize(rgb))
    gray = imagenet_to_rgb(x)
    assert x.shape == rgb.shape
    torch.testing.assert_close(gray[..., 0, :, :], gray[..., 2, :, :], atol=1e-5, rtol=0)  # one value, 3 channels
    torch.testing.assert_close(gray[..., :1, :, :], rgb_to_lab(rgb)[..., :1, :, :] / 100, atol=1e-5, rtol=0)
    # a neutral gray has (almost: skimage's constants leave 0.003) no colour; white is L = 100
    assert rgb_to_lab(torch.full((1, 3, 2, 2), 0.5))[:, 1:].abs().max() < 0.01
    torch.testing.assert_close(lightness_input(torch.full((1, 1, 2, 2), 100.0)), normalize(torch.ones(1, 3, 2, 2)))


# ---- colour clusters ----------------------------------------------------------------------------


def test_kmeans_finds_separated_clusters_deterministically() -> None:
    g = torch.Generator().manual_seed(0)
    true = torch.tensor([[-40.0, 10.0], [0.0, -50.0], [30.0, 30.0], [60.0, -20.0]])
    points = torch.cat([c + 2 * torch.randn(300, 2, generator=g) for c in true])
    centers = fit_color_clusters(points, 4, seed=3)
    assert centers.shape == (4, 2)
    torch.testing.assert_close(centers, true, atol=0.5, rtol=0)  # sorted by a, like ``true``
    torch.testing.assert_close(fit_color_clusters(points, 4, seed=3), centers, atol=0, rtol=0)
    ab = torch.tensor([[-38.0, 9.0], [59.0, -22.0], [1.0, -47.0]]).T.reshape(2, 1, 3)  # (2, H=1, W=3)
    assert assign_clusters(ab, centers).tolist() == [[0, 3, 1]]
    assert assign_clusters(ab[None].expand(5, 2, 1, 3), centers).shape == (5, 1, 3)


def test_kmeans_with_fewer_colours_than_clusters() -> None:
    points = torch.tensor([[1.0, 2.0]] * 50 + [[-5.0, 0.0]] * 50)
    centers = fit_color_clusters(points, 4)
    assert torch.isfinite(centers).all() and len(centers) == 4
    with pytest.raises(ValueError, match="N >= 4"):
        fit_color_clusters(points[:3], 4)


# ---- the copy and the loss ----------------------------------------------------------------------


def test_copy_colors_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(1)
    target, refs = torch.randn(2, 5, 8, generator=g), torch.randn(2, 12, 8, generator=g)
    labels = torch.randint(4, (2, 12), generator=g)
    probs = copy_colors(target, refs, labels, num_classes=4, temperature=0.5)
    expected = torch.zeros(2, 5, 4)
    for b in range(2):
        for i in range(5):
            weights = [math.exp(float(target[b, i] @ refs[b, j]) / 0.5) for j in range(12)]
            for j in range(12):
                expected[b, i, labels[b, j]] += weights[j] / sum(weights)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 5))


def test_loss_is_zero_for_a_perfect_copy() -> None:
    """References identical to the target and embeddings that single out each position: every
    position copies its own colour."""
    n, classes = 16, 5
    emb = 10 * torch.eye(n)[None]  # (1, 16, 16): distinct, orthogonal embeddings
    labels = torch.randint(classes, (1, n), generator=torch.Generator().manual_seed(0))
    refs = torch.cat([emb, emb], dim=1)  # two references equal to the target
    probs = copy_colors(emb, refs, labels.repeat(1, 2), num_classes=classes)
    assert colorization_loss(probs, labels) < 1e-6
    assert (probs.argmax(-1) == labels).all()


def test_loss_with_uniform_attention_is_the_cross_entropy_of_the_reference_histogram() -> None:
    g = torch.Generator().manual_seed(2)
    ref_labels = torch.randint(6, (3, 40), generator=g)
    target_labels = ref_labels[:, :10]  # colours the references show, so none has probability 0
    probs = copy_colors(torch.zeros(3, 10, 8), torch.randn(3, 40, 8, generator=g), ref_labels, num_classes=6)
    histogram = torch.stack([torch.bincount(r, minlength=6).float() / 40 for r in ref_labels])  # (3, 6)
    expected = -histogram.gather(1, target_labels).log().mean()
    torch.testing.assert_close(colorization_loss(probs, target_labels), expected)
    # a colour no reference shows costs -log(eps), not infinity
    absent = colorization_loss(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[1]]), eps=1e-8)
    torch.testing.assert_close(absent, torch.tensor(-math.log(1e-8)))


# ---- the method ---------------------------------------------------------------------------------


def _method(**kw) -> Colorization:
    torch.manual_seed(0)
    method = Colorization(build_encoder("resnet18", stride=8), Colorization.Config(embed_dim=16, hidden_dim=32, **kw))
    method.fit_centers(torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * 40)
    return method


def test_one_step_is_finite_and_reaches_the_encoder(one_thread) -> None:
    method = _method(clusters=8)
    frames = torch.randint(0, 256, (2, 4, 3, 32, 48), dtype=torch.uint8)  # (B, R+1, 3, H, W), raw as the loader gives
    out = method.training_step({"frames": frames})
    assert torch.isfinite(out.loss) and out.loss > 0
    assert set(out.logs) == {"loss", "color_acc"} and 0 <= out.logs["color_acc"] <= 1
    out.loss.backward()
    assert method.encoder.conv1.weight.grad is not None and method.encoder.conv1.weight.grad.abs().sum() > 0
    assert method.head[0].weight.grad.abs().sum() > 0


def test_training_needs_colour_clusters() -> None:
    method = Colorization(build_encoder("resnet18", stride=8))
    with pytest.raises(RuntimeError, match="prepare"):
        method.training_step({"frames": torch.zeros(1, 2, 3, 16, 16)})


def test_build_defaults_to_stride_8_and_rejects_others() -> None:
    cfg, method_cfg = run_config(method="colorization")
    assert engine_defaults("colorization").encoder_stride == cfg.encoder_stride == 8
    assert method_cfg.clusters == 16 and method_cfg.num_refs == 3
    assert run_config(method="fti")[0].encoder_stride is None  # the method's default only (None: 32 for ResNets)
    with pytest.raises(ValueError, match="encoder_stride=8.*any_stride=true"):
        Colorization(build_encoder("resnet18"), method_cfg)
    method = Colorization(build_encoder("resnet18", stride=16), Colorization.Config(any_stride=True, ref_stride=4))
    spec = method.data()
    assert method.temperature == 1.0 and spec.consistent and not spec.color
    assert spec.sampler.num_refs == 3 and spec.sampler.stride == 4


# ---- trainer, CLI, checkpoint -------------------------------------------------------------------


def test_cli_trains_and_the_checkpoint_holds_the_centres(tmp_path, synth_dir, cache_dir, monkeypatch, capsys,
                                                         one_thread) -> None:
    out = tmp_path / "run"
    args = ["train", str(synth_dir / "videos"), "method=colorization", "steps=2", f"out={out}",
            *(f"{k}={v}" for k, v in TINY.items())]
    assert main([*args[:3], "steps=1", "encoder_stride=32", f"out={tmp_path / 'bad'}"]) == 1  # a clear error
    assert "encoder_stride=8" in capsys.readouterr().err
    assert main(args) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    centers = state["model"]["centers"]
    assert centers.shape == (16, 2) and bool(state["model"]["fitted"]) and centers.abs().sum() > 0
    assert yaml.safe_load((out / "config.yaml").read_text())["method"]["clusters"] == 16
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(x["loss"]) and "color_acc" in x for x in logs)
    assert (out / "encoder.safetensors").exists()

    def no_prepare(self, dataset):
        raise AssertionError("prepare ran on resume")

    monkeypatch.setattr(Colorization, "prepare", no_prepare)
    train(*run_config(method="colorization", out=str(out), steps=3, resume=True, export=False))
    resumed = load_checkpoint(out / "checkpoints" / "last.pt")
    assert resumed["step"] == 3
    torch.testing.assert_close(resumed["model"]["centers"], centers, atol=0, rtol=0)


def test_short_cpu_run_learns_to_copy_colours(tmp_path, synth_dir, cache_dir, one_thread) -> None:
    """On held-out samples of the synthetic videos (distinctly coloured objects over a colourful
    background), the trained model's copy loss is lower and its colour accuracy higher than at its
    initialisation (same weights the run started from, same centres)."""
    cfg, method_cfg = run_config(method="colorization", data=str(synth_dir / "videos"), out=str(tmp_path / "learn"),
                                 steps=24, optimizer="adamw", weight_decay=0.0,
                                 **{**TINY, "batch_size": 4, "lr": 1e-3, "save_every": 100, "export": False,
                                    "kmeans_samples": 8})
    out = train(cfg, method_cfg)
    state = load_checkpoint(out / "checkpoints" / "last.pt")["model"]

    from vidssl.data.datasets import VideoFrameDataset
    from vidssl.data.index import scan
    from vidssl.data.transforms import random_crop

    torch.manual_seed(cfg.seed)  # the trainer's initial weights
    before = Colorization(build_encoder("resnet18", stride=8), method_cfg, image_size=cfg.image_size, seed=cfg.seed)
    spec = before.data()
    before.load_state_dict({**before.state_dict(), "centers": state["centers"], "fitted": state["fitted"]})
    after = Colorization(build_encoder("resnet18", stride=8), method_cfg, image_size=cfg.image_size, seed=cfg.seed)
    after.load_state_dict(state)
    dataset = VideoFrameDataset(scan(synth_dir / "videos", progress=False).videos, spec.sampler, size=cfg.decode_size,
                                transform=random_crop(cfg.image_size), consistent=True, seed=99, samples_per_epoch=12)
    frames = torch.stack([dataset[i]["frames"] for i in range(12)])  # uint8, as the loader gives them
    with torch.no_grad():  # train mode: batch statistics for both (the initial running stats are meaningless)
        a, b = before.training_step({"frames": frames}).logs, after.training_step({"frames": frames}).logs
    print(f"held-out loss {a['loss']:.3f} -> {b['loss']:.3f}, color_acc {a['color_acc']:.3f} -> {b['color_acc']:.3f}")
    # measured: loss 2.235 -> 1.752, color_acc 0.484 -> 0.693 (24 steps of batch 4 at 32 px)
    assert b["loss"] < a["loss"]
    assert b["color_acc"] > a["color_acc"] + 0.1
