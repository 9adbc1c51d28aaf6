"""CRW (contrastive random walk) and VFS (frame-level similarity): losses against straightforward
references, the extremes, the data they ask for, exact resume, and learning on synthetic videos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from testdata import assert_resume_is_bit_exact

from vidssl.data.samplers import HalvesSampler, SequenceSampler
from vidssl.data.views import PatchGrid
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.trainer import run_config, train
from vidssl.methods.byol import BYOL
from vidssl.methods.crw import CRW, cycle_loss, palindromes, transitions
from vidssl.methods.simsiam import simsiam_loss
from vidssl.methods.vfs import VFS
from vidssl.models.encoders import build_encoder

LOOP = dict(encoder="resnet18", batch_size=2, image_size=48, decode_size=56, workers=0, lr=0.01, log_every=1,
            save_every=2, export=False)


def reference_crw_loss(nodes: torch.Tensor, temperature: float) -> tuple[torch.Tensor, dict[int, float]]:
    """The walk written out step by step: for each k = 2..T-1, k steps forward then k back."""
    b, t, n, _ = nodes.shape
    losses, accs = [], {}
    for k in range(2, t):
        walk = torch.eye(n).expand(b, n, n)
        for s in range(k):  # forward: frame s -> s + 1
            walk = walk @ torch.softmax(nodes[:, s] @ nodes[:, s + 1].transpose(1, 2) / temperature, dim=-1)
        for s in reversed(range(k)):  # back: frame s + 1 -> s
            walk = walk @ torch.softmax(nodes[:, s + 1] @ nodes[:, s].transpose(1, 2) / temperature, dim=-1)
        nll = -torch.log(torch.diagonal(walk, dim1=1, dim2=2) + 1e-20)
        losses.append(nll.mean())
        accs[k] = (walk.argmax(-1) == torch.arange(n)).float().mean().item()
    return torch.stack(losses).mean(), accs


def test_crw_loss_matches_the_step_by_step_walk() -> None:
    torch.manual_seed(0)
    nodes = F.normalize(torch.randn(3, 5, 7, 16), dim=-1)
    forward, backward = transitions(nodes, temperature=0.1, edge_dropout=0.5, training=False)  # eval: no dropout
    loss, logs = cycle_loss(palindromes(forward, backward))
    expected, accs = reference_crw_loss(nodes, 0.1)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert sorted(k for k in logs if k.startswith("acc_")) == ["acc_2", "acc_3", "acc_4"]
    assert all(logs[f"acc_{k}"] == pytest.approx(a) for k, a in accs.items())


def test_identity_walks_return_and_random_ones_do_not() -> None:
    """Each patch identical to itself in every frame and orthogonal to the others: the walk comes
    back with probability 1. Unrelated random nodes: close to chance, log(N)."""
    n = 9
    same = torch.eye(n).expand(2, 4, n, n)  # (B, T, N, D=N) one-hot nodes
    loss, logs = cycle_loss(palindromes(*transitions(same, temperature=0.01, training=False)))
    assert loss.item() < 1e-6 and logs["acc_3"] == 1.0
    torch.manual_seed(1)
    rand = F.normalize(torch.randn(2, 4, n, 64), dim=-1)
    loss, _ = cycle_loss(palindromes(*transitions(rand, temperature=1.0, training=False)))
    assert abs(loss.item() - math.log(n)) < 0.05


def test_edge_dropout_cuts_edges_and_keeps_rows_stochastic() -> None:
    torch.manual_seed(2)
    nodes = F.normalize(torch.randn(4, 3, 25, 8), dim=-1)
    for rule, backward_rate in [("independent", 0.3), ("released", 1 - 0.7**2)]:  # released: forward cuts kept
        forward, backward = transitions(nodes, temperature=0.05, edge_dropout=0.3, rule=rule)
        for step, rate in [*((f, 0.3) for f in forward), *((b, backward_rate) for b in backward)]:
            torch.testing.assert_close(step.sum(-1), torch.ones(step.shape[:-1]))
            assert rate - 0.05 < (step == 0).float().mean() < rate + 0.05
    kept, _ = transitions(nodes, temperature=0.05, edge_dropout=0.0)
    assert not (kept[0] == 0).any()


def test_patch_grid_cuts_each_frame_into_windows() -> None:
    grid = PatchGrid(size=64, patch=32, stride=16, frame_scale=(1.0, 1.0), frame_ratio=(1.0, 1.0),
                     jitter_scale=(1.0, 1.0))
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    patches = grid(frames)
    assert grid.per_frame == 9 and patches.shape == (18, 3, 32, 32) and patches.dtype == torch.uint8
    assert torch.equal(patches[9 + 5], frames[1, :, 16:48, 32:64])  # frame 1, row 1, column 2
    default = PatchGrid()
    assert default.per_frame == 49 and default(torch.zeros(1, 3, 300, 400, dtype=torch.uint8)).shape == (49, 3, 64, 64)


def test_crw_walks_on_layer4_of_a_stride_8_resnet() -> None:
    method = CRW(build_encoder("resnet18", stride=8), CRW.Config(clip_len=3, patch=32, patch_stride=16), image_size=64)
    assert method.head.in_features == 512  # layer4 of ResNet-18: the released training removes no layer
    spec = method.data()
    assert spec.sampler == SequenceSampler(length=3, stride=4) and not spec.color and spec.transform is method.grid
    batch = {"frames": torch.randint(0, 256, (2, 3 * 9, 3, 32, 32), dtype=torch.uint8)}
    out = method.training_step(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and set(out.logs) >= {"loss", "xent_2", "acc_2"}
    assert method.encoder.layer4[0].conv1.weight.grad is not None  # layer4 is part of the walk
    layer3 = CRW(build_encoder("resnet18", stride=8), CRW.Config(clip_len=3, patch=32, patch_stride=16, stage="layer3"),
                 image_size=64)
    layer3.training_step(batch).loss.backward()
    assert layer3.head.in_features == 256 and layer3.encoder.layer4[0].conv1.weight.grad is None  # the option
    with pytest.raises(ValueError, match="clip_len >= 3"):
        CRW(build_encoder("resnet18", stride=8), CRW.Config(clip_len=2))
    with pytest.raises(ValueError, match="ResNet stage"):
        CRW(build_encoder("vit_tiny"), CRW.Config())


def test_vfs_reuses_simsiam_and_byol_exactly() -> None:
    """Same weights, same frames: VFS's loss is BYOL's, and SimSiam's on VFS's own heads rescaled to the
    released 2 - 2 cos (tests/methods/test_vfs_released.py checks it against the release)."""
    pairs = torch.randint(0, 256, (4, 2, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    vfs = VFS(build_encoder("resnet18"), VFS.Config(loss="byol", proj_dim=16, proj_hidden=16, pred_hidden=8,
                                                    frames_per_half=1))
    torch.manual_seed(0)
    ref = BYOL(build_encoder("resnet18"), BYOL.Config(proj_hidden=16, proj_dim=16, pred_hidden=8))
    ref.load_state_dict(vfs.state_dict())
    torch.testing.assert_close(vfs.pair_loss(pairs)[0], ref.pair_loss(pairs)[0], rtol=0, atol=1e-5)
    assert vfs.ema() is not None
    vfs = VFS(build_encoder("resnet18"), VFS.Config(proj_dim=16, pred_hidden=8, frames_per_half=1))
    simsiam, _ = simsiam_loss(vfs.encoder, vfs.projector, vfs.predictor, vfs.normalize(pairs))
    torch.testing.assert_close(vfs.pair_loss(pairs)[0], 2 + 2 * simsiam, rtol=0, atol=1e-5)
    assert vfs.ema() is None
    spec = VFS(build_encoder("resnet18")).data()
    assert spec.sampler == HalvesSampler(per_half=4) and not spec.color
    assert spec.transform is None  # each frame its own random resized crop and flip


@pytest.mark.parametrize("method,extra", [("crw", dict(clip_len=3, frame_gap=2, patch=24, patch_stride=12)),
                                          ("vfs", dict(loss="byol", proj_dim=16, proj_hidden=16, pred_hidden=8,
                                                       max_gap=20, gap_unit="frames"))])
def test_resume_is_bit_exact(method, extra, tmp_path, synth_dir, cache_dir, monkeypatch) -> None:
    kw = dict(method=method, data=str(synth_dir / "videos"), steps=4, **LOOP, **extra)
    assert_resume_is_bit_exact(*run_config(out=str(tmp_path / "run"), **kw), monkeypatch)


@torch.no_grad()
def cycle_accuracy(method: CRW, clips: torch.Tensor) -> float:
    """Mean round-trip accuracy of the longest palindrome, no edge dropout (eval mode)."""
    method.eval()
    b, t = clips.shape[0], method.cfg.clip_len
    nodes = method.embed(clips.view(b, t, -1, *clips.shape[2:]))
    _, logs = cycle_loss(palindromes(*transitions(nodes, temperature=method.cfg.temperature, training=False)))
    return logs[f"acc_{t - 1}"]


@pytest.mark.slow
def test_crw_learns_correspondence_on_synthetic_videos(tmp_path: Path, cache_dir: Path) -> None:
    """A few minutes of CPU training raise the cycle accuracy on held-out synthetic clips above the
    same random initialisation's."""
    from vidssl.data.backends import open_video
    from vidssl.data.synth import SynthConfig, generate

    data = tmp_path / "synth"
    generate(data, SynthConfig(num_videos=10, num_frames=40, height=96, width=128, seed=3), progress=False)
    held_out = data / "held_out"
    held_out.mkdir()
    videos = sorted((data / "videos").glob("*.mp4"))
    for path in videos[-2:]:
        path.rename(held_out / path.name)
    extra = dict(clip_len=4, frame_gap=2, patch=32, patch_stride=16, temperature=0.05)
    cfg, method_cfg = run_config(method="crw", data=str(data / "videos"), out=str(tmp_path / "run"), encoder="resnet18",
                                 steps=40, batch_size=8, image_size=64, decode_size=72, workers=2, optimizer="adamw",
                                 lr=1e-3, weight_decay=0.0, warmup_steps=5, log_every=10, save_every=1000, **extra)
    out = train(cfg, method_cfg)
    grid = PatchGrid(size=64, patch=32, stride=16, frame_scale=(1.0, 1.0), frame_ratio=(1.0, 1.0),
                     jitter_scale=(1.0, 1.0))
    clips = []
    for path in sorted(held_out.iterdir()):
        reader = open_video(path, size=64)
        for start in range(0, reader.num_frames - 6, 3):
            frames = torch.from_numpy(reader.get_frames([start + 2 * i for i in range(4)])).permute(0, 3, 1, 2)
            clips.append(grid(frames))
    clips = torch.stack(clips)
    from vidssl.engine.trainer import build_run

    initial, _ = build_run(cfg, method_cfg, torch.device("cpu"))  # the very initialisation of the run
    trained, _ = build_run(cfg, method_cfg, torch.device("cpu"))
    trained.load_state_dict(load_checkpoint(out / "checkpoints" / "last.pt")["model"])
    before, after = cycle_accuracy(initial, clips), cycle_accuracy(trained, clips)
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    print(f"\nCRW held-out cycle accuracy ({len(clips)} clips, 3 steps out and back): random init {before:.3f}, "
          f"trained {after:.3f}; training loss {logs[0]['loss']:.3f} -> {logs[-1]['loss']:.3f}")
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert after > before + 0.05



@pytest.mark.slow
def test_vfs_beats_random_init_on_video_retrieval(tmp_path: Path, cache_dir: Path) -> None:
    """VFS's frame-level similarity after a short CPU run with its own recipe (SGD 0.05, no colour):
    augmented frames retrieve other frames of their own video better than the same encoder at its
    random initialisation (the FTI check of tests/engine/test_learning.py)."""
    from testdata import retrieval_set, video_retrieval

    from vidssl.data.synth import SynthConfig, generate
    from vidssl.export import load_encoder
    from vidssl.methods.vfs import zero_init_residual

    data = tmp_path / "synth"
    generate(data, SynthConfig(num_videos=8, num_frames=48, height=128, width=160, seed=5), progress=False)
    cfg, method_cfg = run_config(
        method="vfs", data=str(data / "videos"), out=str(tmp_path / "run"), encoder="resnet18", steps=150,
        batch_size=16, image_size=64, decode_size=72, max_gap=24, gap_unit="frames", workers=2, proj_dim=256,
        pred_hidden=64, optimizer="sgd", lr=0.05, warmup_steps=10, log_every=10, save_every=1000)
    out = train(cfg, method_cfg)
    retrieval = retrieval_set(data / "videos")
    trained = video_retrieval(load_encoder(out / "encoder.safetensors"), retrieval)
    torch.manual_seed(cfg.seed)  # the very initialisation the run started from (VFS zero-inits residual BNs)
    start = build_encoder("resnet18")
    with torch.no_grad():
        assert zero_init_residual(start)
    random_init = video_retrieval(start, retrieval)
    print(f"\nVFS video retrieval top-1: trained {trained:.3f}, random init {random_init:.3f}")
    assert trained > random_init + 0.05
