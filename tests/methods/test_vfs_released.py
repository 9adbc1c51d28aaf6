"""``method=vfs`` against the released VFS (xvjiarui/VFS, configs/r18_nc_sgd_cos_100e_r2_1xNx8_k400.py).

Each released rule is re-stated here step by step, in the released code's own terms (mmaction's
``SampleFrames`` + ``Clip2Frame``, ``SimSiamHead``, ``CosineSimLoss(negative=False)``,
``SimSiamBaseTracker.forward_img_head`` with ``video2images`` / ``images2video`` and ``roll``,
``_parse_losses``, mmcv's SGD on every parameter), and compared with vidssl on random inputs.
The bar: one (two) SGD steps of vidssl's VFS recipe leave the same parameters as the released update.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.data.samplers import HalvesSampler, PairSampler, halves, segments
from vidssl.engine.config import engine_defaults, read_recipe, resolve
from vidssl.engine.optim import build_optimizer, param_groups
from vidssl.engine.schedules import cosine_schedule
from vidssl.engine.trainer import build_run
from vidssl.losses.similarity import negative_cosine
from vidssl.methods.simsiam import simsiam_heads, simsiam_loss
from vidssl.methods.vfs import VFS, vfs_heads, vfs_loss, zero_init_residual
from vidssl.models.encoders import build_encoder


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the released rules, re-stated ------------------------------------------------------------
def released_sample_frames(num_frames: int, offsets_within: list[int] | None = None) -> list[int]:
    """mmaction SampleFrames._get_train_clips + __call__ for clip_len=1, frame_interval=0,
    num_clips=8, out_of_bound_opt='loop'; ``offsets_within`` stands for np.random.randint(avg, size=8)."""
    clip_len, frame_interval, num_clips = 1, 0, 8
    ori_clip_len = clip_len * frame_interval
    avg_interval = (num_frames - ori_clip_len + 1) // num_clips
    if avg_interval > 0:
        clip_offsets = np.arange(num_clips) * avg_interval + np.asarray(offsets_within)
    elif num_frames > max(num_clips, ori_clip_len):
        raise AssertionError("unreachable for clip_len * frame_interval = 0")
    else:  # avg_interval == 0
        ratio = (num_frames - ori_clip_len + 1.0) / num_clips
        clip_offsets = np.around(np.arange(num_clips) * ratio)
    frame_inds = clip_offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    return [int(i) for i in np.mod(np.concatenate(frame_inds), num_frames)]


def released_head(in_channels: int = 512) -> tuple[nn.Sequential, nn.Sequential]:
    """SimSiamHead(in_channels=512, num_projection_fcs=3, projection_mid/out_channels=512,
    num_predictor_fcs=2, predictor_mid_channels=128, predictor_out_channels=512, BN)."""
    projection, last = [], in_channels
    for i in range(3):
        is_last = i == 2
        out = 512
        projection += [nn.Linear(last, out), nn.BatchNorm1d(out)]
        if not is_last:
            projection.append(nn.ReLU())
        last = out
    predictor = []
    for i in range(2):
        is_last = i == 1
        out = 512 if is_last else 128
        predictor.append(nn.Linear(last, out))
        if not is_last:
            predictor += [nn.BatchNorm1d(out), nn.ReLU()]
        last = out
    return nn.Sequential(*projection), nn.Sequential(*predictor)


def cosine_sim_loss(cls_score: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """CosineSimLoss(with_norm=True, negative=False, pairwise=False)._forward: (N,) per sample."""
    cls_score, label = F.normalize(cls_score, p=2, dim=1), F.normalize(label, p=2, dim=1)
    prod = torch.sum(cls_score * label, dim=1).view(cls_score.size(0), -1)
    return 2 - 2 * prod.mean(dim=-1)


def head_loss(p1, z1, p2, z2, weight):
    """SimSiamHead.loss: still (N,) per sample; _parse_losses takes its mean."""
    return (cosine_sim_loss(p1, z2.detach()) * 0.5 + cosine_sim_loss(p2, z1.detach()) * 0.5) * weight


def video2images(imgs: torch.Tensor) -> torch.Tensor:
    batches, channels, clip_len = imgs.shape[:3]
    return imgs.transpose(1, 2).contiguous().reshape(batches * clip_len, channels, *imgs.shape[3:])


def images2video(imgs: torch.Tensor, clip_len: int) -> torch.Tensor:
    batches, channels = imgs.shape[:2]
    return imgs.reshape(batches // clip_len, clip_len, channels, *imgs.shape[2:]).transpose(1, 2).contiguous()


def released_img_head_loss(p1, z1, p2, z2, clip_len: int) -> torch.Tensor:
    """forward_img_head with intra_video=True, then _parse_losses: the sum of each entry's mean."""
    weight = 1.0 / clip_len
    losses = [head_loss(p1, z1, p2, z2, weight)]
    z2_v, p2_v = images2video(z2, clip_len), images2video(p2, clip_len)
    for i in range(1, clip_len):
        losses.append(head_loss(p1, z1, video2images(p2_v.roll(i, dims=2)), video2images(z2_v.roll(i, dims=2)),
                                weight))
    return sum(loss.mean() for loss in losses)


class Released(nn.Module):
    """SimSiamBaseTracker: ResNet backbone (out_indices=(3,): the layer4 map), SimSiamHead (avg pool,
    projection, predictor)."""

    def __init__(self, backbone: nn.Module, projection: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.backbone, self.projection, self.predictor = backbone, projection, predictor

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        z = self.projection(x)
        return z, self.predictor(z)

    def forward_train(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs: (B, 2, C, T, H, W) normalized, the two clips of Clip2Frame + FormatShape('NCTHW')."""
        clip_len = imgs.size(3)
        imgs1 = video2images(imgs[:, 0].contiguous().reshape(-1, *imgs.shape[2:]))
        imgs2 = video2images(imgs[:, 1].contiguous().reshape(-1, *imgs.shape[2:]))
        z1, p1 = self.head(self.backbone.forward_features(imgs1))
        z2, p2 = self.head(self.backbone.forward_features(imgs2))
        return released_img_head_loss(p1, z1, p2, z2, clip_len)


def released_input(frames: torch.Tensor) -> torch.Tensor:
    """vidssl's (B, 8, 3, H, W) uint8 frames (first half first) as the released (B, 2, C, 4, H, W):
    Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]), then 8 frames = 2 clips of 4."""
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    x = (frames - mean.to(frames.dtype)) / std.to(frames.dtype)
    b, _, c, h, w = x.shape
    return x.view(b, 2, 4, c, h, w).permute(0, 1, 3, 2, 4, 5)


# --- loss --------------------------------------------------------------------------------------
def test_vfs_loss_is_2_minus_2cos_with_twice_simsiams_gradient() -> None:
    torch.manual_seed(0)
    p1, p2 = (torch.randn(6, 1, 16, requires_grad=True) for _ in range(2))
    z1, z2 = torch.randn(6, 1, 16), torch.randn(6, 1, 16)
    loss = vfs_loss(p1, z1, p2, z2)
    ref = head_loss(p1[:, 0], z1[:, 0], p2[:, 0], z2[:, 0], 1.0).mean()
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-6)
    grads = torch.autograd.grad(loss, (p1, p2))
    simsiam = negative_cosine(p1[:, 0], z2[:, 0]) / 2 + negative_cosine(p2[:, 0], z1[:, 0]) / 2
    torch.testing.assert_close(loss.detach(), 2 + 2 * simsiam.detach(), rtol=0, atol=1e-6)
    for g, s in zip(grads, torch.autograd.grad(simsiam, (p1, p2)), strict=True):
        torch.testing.assert_close(g, 2 * s, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(g, s, atol=1e-4)  # the SimSiam scale would fail


def test_vfs_loss_averages_the_16_cross_pairs_as_released() -> None:
    torch.manual_seed(1)
    b, k, d = 3, 4, 8
    p1, z1, p2, z2 = (torch.randn(b, k, d, requires_grad=True) for _ in range(4))
    loss = vfs_loss(p1, z1, p2, z2)
    flat = [t.reshape(b * k, d) for t in (p1, z1, p2, z2)]  # video2images order: sample-major
    ref = released_img_head_loss(*flat, clip_len=k)
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-6)
    for g, r in zip(torch.autograd.grad(loss, (p1, p2)), torch.autograd.grad(ref, (p1, p2)), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)
    # the docstring's old "summed, weight 1/4" reading would be 4x; one pair per sample differs too
    assert not torch.allclose(loss, vfs_loss(p1[:, :1], z1[:, :1], p2[:, :1], z2[:, :1]), atol=1e-3)


def test_vfs_pair_loss_is_simsiams_rescaled_on_the_same_heads() -> None:
    torch.manual_seed(0)
    method = VFS(build_encoder("resnet18"), VFS.Config(proj_dim=16, pred_hidden=8, frames_per_half=1))
    pairs = torch.randint(0, 256, (4, 2, 3, 32, 32), dtype=torch.uint8)
    loss, _ = method.pair_loss(pairs)
    simsiam, _ = simsiam_loss(method.encoder, method.projector, method.predictor, method.normalize(pairs))
    torch.testing.assert_close(loss, 2 + 2 * simsiam, rtol=0, atol=1e-5)


# --- head --------------------------------------------------------------------------------------
def test_head_is_the_released_simsiam_head_with_an_affine_last_bn() -> None:
    projector, predictor = vfs_heads(512, 512, 128)
    ref_projection, ref_predictor = released_head()
    for mine, ref in ((projector, ref_projection), (predictor, ref_predictor)):
        assert [type(m) for m in mine] == [type(m) for m in ref]
        assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert isinstance(projector[-1], nn.BatchNorm1d) and projector[-1].affine
    assert all(m.bias is not None for m in (*projector, *predictor) if isinstance(m, nn.Linear))
    assert [(m.in_features, m.out_features) for m in predictor if isinstance(m, nn.Linear)] == [(512, 128), (128, 512)]
    # SimSiam's own head stays the paper's: no affine output BN
    simsiam_projector, _ = simsiam_heads(512, 2048, 512)
    assert not simsiam_projector[-1].affine


# --- sampling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_segments_of_short_videos_are_the_released_fixed_frames(n: int) -> None:
    assert segments(n, num_segments=8, generator=gen()) == released_sample_frames(n)


@pytest.mark.parametrize("n", [7, 17, 23, 40, 301])
def test_segments_draw_one_frame_per_segment_as_released(n: int) -> None:
    a = (n + 1) // 8
    allowed = [{released_sample_frames(n, [u if j == k else 0 for j in range(8)])[k] for u in range(a)}
               for k in range(8)]
    seen: list[set[int]] = [set() for _ in range(8)]
    for seed in range(60 * a):
        for k, i in enumerate(segments(n, num_segments=8, generator=gen(seed))):
            assert i in allowed[k], (n, k, i)
            seen[k].add(i)
    assert seen == allowed  # every frame of every segment is drawn


@pytest.mark.parametrize("n", [17, 40, 250])
def test_halves_pairs_one_frame_of_each_half(n: int) -> None:
    a = (n + 1) // 8
    mid = 4 * a  # first half: segments 0-3, [0, 4a); second: [4a, 8a)
    firsts, seconds = set(), set()
    for seed in range(400 if n < 100 else 3000):
        first, second = halves(n, per_half=1, generator=gen(seed))
        assert first < mid <= second < 8 * a
        firsts.add(first)
        seconds.add(second)
    assert firsts == set(range(mid)) and seconds == set(range(mid, 8 * a))
    frames = halves(n, per_half=4, generator=gen(3))
    assert frames == segments(n, num_segments=8, generator=gen(3))  # all 8, first half first
    assert max(frames[:4]) < mid <= min(frames[4:])


def test_halves_keeps_the_released_loop_around() -> None:
    """n + 1 = 8a: the last segment may give frame n, which the released 'loop' turns into frame 0."""
    n, hits = 23, 0
    for seed in range(200):
        last = segments(n, num_segments=8, generator=gen(seed))[-1]
        assert last in (21, 22, 0)
        hits += last == 0
    assert hits > 0


def test_vfs_data_is_the_released_sampler_with_gaps_as_an_option() -> None:
    spec = VFS(build_encoder("resnet18")).data()
    assert spec.sampler == HalvesSampler(per_half=4, num_segments=8) and not spec.color and spec.transform is None
    assert HalvesSampler(per_half=4)(50, 25.0, gen(2)) == halves(50, per_half=4, generator=gen(2))
    one = VFS(build_encoder("resnet18"), VFS.Config(frames_per_half=1)).data()
    assert one.sampler == HalvesSampler(per_half=1)
    gap = VFS(build_encoder("resnet18"), VFS.Config(sampling="gap", frames_per_half=1)).data()
    assert gap.sampler == PairSampler(min_gap=0, max_gap=10, unit="seconds")
    with pytest.raises(ValueError, match="needs sampling=halves"):
        VFS(build_encoder("resnet18"), VFS.Config(sampling="gap"))
    with pytest.raises(ValueError, match="frames_per_half must be 1..4"):
        VFS(build_encoder("resnet18"), VFS.Config(frames_per_half=5))


# --- backbone and optimiser --------------------------------------------------------------------
@torch.no_grad()
def test_zero_init_residual_on_a_fresh_resnet_only() -> None:
    """mmaction ResNet.init_weights(zero_init_residual=True): BasicBlock conv2's norm (torchvision bn2)
    and Bottleneck conv3's norm (bn3) start at 0; the others at 1."""
    torch.manual_seed(0)
    method = VFS(build_encoder("resnet18"), VFS.Config(proj_dim=16, pred_hidden=8))
    blocks = [m for layer in ("layer1", "layer2", "layer3", "layer4") for m in getattr(method.encoder, layer)]
    assert len(blocks) == 8 and all(not b.bn2.weight.any() and bool((b.bn1.weight == 1).all()) for b in blocks)
    kept = VFS(build_encoder("resnet18"), VFS.Config(proj_dim=16, pred_hidden=8, zero_init_residual=False))
    assert float(kept.encoder.layer1[0].bn2.weight.min()) == 1
    loaded = build_encoder("resnet18")
    loaded.layer1[0].bn2.weight.fill_(0.7)  # as weights= would leave it
    assert not zero_init_residual(loaded) and float(loaded.layer2[0].bn2.weight.min()) == 1
    bottleneck = build_encoder("resnet50")
    assert zero_init_residual(bottleneck) and not bottleneck.layer1[0].bn3.weight.any()


def test_weight_decay_on_all_parameters_is_vfs_only() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    assert [g["weight_decay"] for g in param_groups(model, 1e-4)] == [1e-4, 0.0]
    assert [g["weight_decay"] for g in param_groups(model, 1e-4, decay_all=True)] == [1e-4, 1e-4]
    assert engine_defaults("vfs").weight_decay_all and not engine_defaults("simsiam").weight_decay_all
    assert resolve([], recipe=read_recipe("vfs"))[0].weight_decay_all


# --- the bar: the recipe's update is the released update ----------------------------------------
def _vfs_steps(frames: list[torch.Tensor], *, decay_all: bool) -> tuple[nn.Module, Released]:
    """Two SGD steps of vidssl's VFS recipe (built as the trainer builds a run) and of the released
    model re-stated above, from the same weights on the same frames; returns both models."""
    cfg, method_cfg = resolve(["image_size=32", "device=cpu"], recipe=read_recipe("vfs"))
    cfg = dataclasses.replace(cfg, weight_decay_all=decay_all)
    method, optimizer = build_run(cfg, method_cfg, torch.device("cpu"))
    with torch.no_grad():  # random BN affines everywhere, so every parameter's update is tested
        for m in method.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    projection, predictor = released_head(512)
    projection.load_state_dict(method.projector.state_dict())
    predictor.load_state_dict(method.predictor.state_dict())
    released = Released(copy.deepcopy(method.encoder), projection, predictor)  # the same ResNet-18 trunk, a copy
    # float64 on both sides: float32 rounding of two equal computations in different orders is
    # amplified through 1 x 1 BatchNorm maps at 32 px to ~1e-5, which would hide a rule's effect.
    method.double()
    released.double()
    normalize = method.normalize
    method.normalize = lambda x: normalize(x.double() / 255)  # type: ignore[method-assign]
    # mmcv's default optimizer constructor: one group, weight decay on every parameter
    released_sgd = torch.optim.SGD(released.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    lrs = cosine_schedule(cfg.lr, cfg.min_lr, cfg.steps, warmup_steps=cfg.warmup_steps)
    method.train()
    released.train()
    for step, batch in enumerate(frames):
        for group in optimizer.param_groups:  # as the trainer's loop
            group["lr"] = float(lrs[step])
        optimizer.zero_grad(set_to_none=True)
        method.training_step({"frames": batch}).loss.backward()
        optimizer.step()
        released_sgd.zero_grad(set_to_none=True)
        released.forward_train(released_input(batch.double())).backward()
        released_sgd.step()
    return method, released


def _released_params(method: nn.Module, released: Released) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    ours = dict(method.named_parameters())
    theirs = {**{f"encoder.{k}": v for k, v in released.backbone.named_parameters()},
              **{f"projector.{k}": v for k, v in released.projection.named_parameters()},
              **{f"predictor.{k}": v for k, v in released.predictor.named_parameters()}}
    assert set(ours) == set(theirs)
    return [(k, ours[k].detach(), theirs[k].detach()) for k in sorted(ours)]


def test_one_sgd_step_of_the_vfs_recipe_equals_the_released_update() -> None:
    torch.manual_seed(5)
    frames = [torch.randint(0, 256, (4, 8, 3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    method, released = _vfs_steps(frames, decay_all=True)
    moved = 0
    for name, ours, theirs in _released_params(method, released):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
        moved += 1
    assert moved > 60
    # the check can fail: vidssl's default groups (no decay on biases and BN) drift from the release
    method, released = _vfs_steps(frames, decay_all=False)
    worst = max(float((ours - theirs).abs().max()) for _, ours, theirs in _released_params(method, released))
    assert worst > 2e-6


def test_build_optimizer_decays_all_with_sgd() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    opt = build_optimizer("sgd", model, lr=0.1, weight_decay=0.5, decay_all=True)
    bias = model[1].bias
    with torch.no_grad():
        bias.fill_(1.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert float(bias.detach()[0]) == pytest.approx(1 - 0.1 * 0.5)
