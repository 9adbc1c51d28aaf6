"""CRW as released (videowalk ``code/model.py``, ``code/resnet.py``, ``code/utils``): each rule written
out step by step here and compared with vidssl on random inputs: the walk with the released edge
dropout under a fixed seed (backward transitions keep the forward cuts), the loss and its gradients,
the trunk stage (layer4 while training), reflect padding on the convolutions that pad, and the CLI
showing the key with the default that runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidssl.cli import main
from vidssl.config import ConfigError
from vidssl.engine.config import read_recipe, resolve
from vidssl.engine.trainer import build_run
from vidssl.export import load_encoder, save_encoder
from vidssl.methods.crw import CRW, cycle_loss, palindromes, transitions
from vidssl.models.encoders import build_encoder, encoder_from_config


def restated_transitions(nodes: torch.Tensor, temperature: float, p: float, *, released: bool = True,
                         ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The released ``forward`` of ``CRW``, one frame pair at a time.

    The similarities of frame s to frame s+1 are one matrix per s (rows: nodes of frame s). Forward:
    for s = 0 .. T-2, draw a (B, N, N) uniform, write -1e20 into the similarities where it is below
    p (in place, as ``stoch_mat`` does on the view ``As[:, s]``), softmax rows. Only then backward:
    for s = 0 .. T-2, draw another (B, N, N) in the same orientation, cut where it is below p, and
    softmax the rows of the transpose; with ``released`` the matrix it cuts is the one the forward
    pass already cut, otherwise a fresh copy.
    """
    b, t, n, _ = nodes.shape
    sims = [torch.bmm(nodes[:, s], nodes[:, s + 1].transpose(1, 2)) for s in range(t - 1)]
    fresh = [sim.clone() for sim in sims]
    forward = []
    for s in range(t - 1):
        cut = torch.rand(b, n, n) < p
        sims[s] = torch.where(cut, torch.full_like(sims[s], -1e20), sims[s])
        forward.append(torch.softmax(sims[s] / temperature, dim=2))
    backward = []
    for s in range(t - 1):
        cut = torch.rand(b, n, n) < p
        base = sims[s] if released else fresh[s]
        back = torch.where(cut, torch.full_like(base, -1e20), base).transpose(1, 2)  # rows: nodes of frame s+1
        backward.append(torch.softmax(back / temperature, dim=2))
    return forward, backward


def restated_loss(forward: list[torch.Tensor], backward: list[torch.Tensor]) -> torch.Tensor:
    """Mean over k = 2 .. T-1 of the cross-entropy of F_0 .. F_{k-1} B_{k-1} .. B_0 against the
    identity (``log(P + 1e-20)`` as logits, every start node of the batch weighted alike)."""
    losses = []
    for k in range(2, len(forward) + 1):
        walk = forward[0]
        for s in range(1, k):
            walk = walk @ forward[s]
        for s in reversed(range(k)):
            walk = walk @ backward[s]
        logits = torch.log(walk + 1e-20)
        n = walk.shape[-1]
        nll = -(logits - torch.logsumexp(logits, dim=2, keepdim=True))[:, torch.arange(n), torch.arange(n)]
        losses.append(nll.mean())
    return sum(losses) / len(losses)


@pytest.mark.parametrize("released", [True, False])
def test_walk_with_edge_dropout_equals_the_step_by_step_rule(released: bool) -> None:
    torch.manual_seed(0)
    nodes = F.normalize(torch.randn(3, 5, 16, 8), dim=-1)
    rule = "released" if released else "independent"
    torch.manual_seed(11)
    forward, backward = transitions(nodes, temperature=0.05, edge_dropout=0.3, rule=rule)
    torch.manual_seed(11)
    want_forward, want_backward = restated_transitions(nodes, 0.05, 0.3, released=released)
    for got, want in zip([*forward, *backward], [*want_forward, *want_backward], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        assert torch.equal(got == 0, want == 0)  # the very same edges cut
    for fwd, back in zip(forward, backward, strict=True):
        inherited = ((fwd == 0) & (back.transpose(1, 2) != 0)).sum().item()
        assert (inherited == 0) == released  # released: every forward cut is cut backward too


def test_loss_and_gradients_equal_the_restated_walk() -> None:
    torch.manual_seed(1)
    raw = torch.randn(2, 4, 12, 16)
    mine = raw.clone().requires_grad_(True)
    torch.manual_seed(5)
    loss, logs = cycle_loss(palindromes(*transitions(F.normalize(mine, dim=-1), temperature=0.05, edge_dropout=0.1)))
    loss.backward()
    theirs = raw.clone().requires_grad_(True)
    torch.manual_seed(5)
    expected = restated_loss(*restated_transitions(F.normalize(theirs, dim=-1), 0.05, 0.1))
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert set(logs) == {"xent_2", "acc_2", "xent_3", "acc_3"}
    assert mine.grad is not None and theirs.grad is not None
    torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-7)


def test_backward_cut_rate_is_one_minus_the_square_of_keeping() -> None:
    """p = 0.1: forward edges cut at p, backward ones at 1 - (1 - p)^2 = 0.19 with the released rule
    (always where the forward edge was cut, else at p), at p with the independent one."""
    torch.manual_seed(3)
    nodes = F.normalize(torch.randn(8, 4, 49, 16), dim=-1)  # 3 * 8 * 49 * 49 = 57624 edges each way
    for rule, want in [("released", 1 - 0.9**2), ("independent", 0.1)]:
        forward, backward = transitions(nodes, temperature=0.05, edge_dropout=0.1, rule=rule)
        fwd_cut = torch.stack([f == 0 for f in forward])
        back_cut = torch.stack([b.transpose(1, 2) == 0 for b in backward])  # in the forward orientation
        assert abs(fwd_cut.float().mean().item() - 0.1) < 0.01
        assert abs(back_cut.float().mean().item() - want) < 0.01, rule  # binomial std 0.0016
        assert abs(back_cut[~fwd_cut].float().mean().item() - 0.1) < 0.01  # own draws: p, independent of forward
        if rule == "released":
            assert back_cut[fwd_cut].all()


def test_nodes_come_from_layer4_with_reflect_padding_by_default() -> None:
    """Defaults: the walk's nodes are the mean of layer4's 512-d map (the released training removes no
    layer), through a linear head to 128-d, L2-normalized, written out module by module."""
    cfg = CRW.Config(clip_len=3, patch=32, patch_stride=16)
    assert (cfg.stage, cfg.padding, cfg.edge_dropout_rule) == ("layer4", "reflect", "released")
    torch.manual_seed(0)
    method = CRW(build_encoder("resnet18", stride=8), cfg, image_size=64)
    assert method.head.in_features == 512 and method.head.out_features == 128
    patches = torch.randint(0, 256, (2, 3, 9, 3, 32, 32), dtype=torch.uint8)
    nodes = method.embed(patches)
    enc = method.encoder
    x = method.normalize(patches.flatten(0, 2))
    x = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
    x = enc.layer4(enc.layer3(enc.layer2(enc.layer1(x))))
    assert x.shape == (54, 512, 4, 4)  # stride 8: layer3 and layer4 keep the 4 x 4 map of a 32 px patch
    want = F.normalize(method.head(x.mean(dim=(2, 3))), dim=-1).view(2, 3, 9, 128)
    torch.testing.assert_close(nodes, want, rtol=1e-5, atol=1e-6)


def test_reflect_padding_is_set_on_every_conv_that_pads_and_travels_with_the_encoder(tmp_path) -> None:
    torch.manual_seed(0)
    method = CRW(build_encoder("resnet18", stride=8), CRW.Config(clip_len=3, patch=32, patch_stride=16), image_size=64)
    enc = method.encoder
    convs = {name: m for name, m in enc.named_modules() if isinstance(m, torch.nn.Conv2d)}
    reflect = sorted(name for name, m in convs.items() if m.padding_mode == "reflect")
    want = ["conv1", *(f"layer{i}.{j}.conv{c}" for i in range(1, 5) for j in range(2) for c in (1, 2))]
    assert reflect == sorted(want)  # conv1 and every 3x3 conv; not the 1x1 downsample convs
    assert all(convs[f"layer{i}.0.downsample.0"].padding_mode == "zeros" for i in (2, 3, 4))
    images = torch.randn(2, 3, 32, 32)
    padded = F.pad(images, (3, 3, 3, 3), mode="reflect")
    torch.testing.assert_close(enc.conv1(images), F.conv2d(padded, enc.conv1.weight, stride=2))
    # the encoder's config carries it: checkpoints and exports rebuild the same network
    assert enc.config["kwargs"] == {"padding": "reflect"} and enc.padding == "reflect"
    assert encoder_from_config(enc.config).conv1.padding_mode == "reflect"
    enc.eval()
    loaded = load_encoder(save_encoder(enc, tmp_path / "crw.safetensors")).eval()
    assert loaded.layer1[0].conv1.padding_mode == "reflect"
    torch.testing.assert_close(loaded.forward_features(images), enc.forward_features(images))
    stride32 = build_encoder("resnet18", padding="reflect")
    with pytest.raises(ValueError, match="pads its convolutions with zeros"):
        save_encoder(stride32, tmp_path / "r18.pth", format="torchvision")
    # padding=zeros: torchvision's network, and a config without the key
    zeros = CRW(build_encoder("resnet18", stride=8, padding="reflect"),
                CRW.Config(clip_len=3, patch=32, patch_stride=16, padding="zeros"), image_size=64)
    assert all(m.padding_mode == "zeros" for m in zeros.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert zeros.encoder.config["kwargs"] == {}
    with pytest.raises(ValueError, match="padding=reflect needs patch > 8 px"):
        CRW(build_encoder("resnet18", stride=8), CRW.Config(patch=8, patch_stride=4), image_size=64)
    with pytest.raises(ValueError, match="padding must be one of zeros, reflect"):
        build_encoder("resnet18", padding="circular")


def test_training_step_equals_the_restated_walk_under_a_fixed_seed() -> None:
    """The whole step: same weights, same patches, same seed -> the loss of the re-statement, edge
    dropout included, and the same gradient on the head."""
    torch.manual_seed(0)
    method = CRW(build_encoder("resnet18", stride=8), CRW.Config(clip_len=4, patch=24, patch_stride=12), image_size=48)
    frames = torch.randint(0, 256, (2, 4 * 9, 3, 24, 24), dtype=torch.uint8)
    torch.manual_seed(9)
    out = method.training_step({"frames": frames})
    out.loss.backward()
    got_grad = method.head.weight.grad.clone()
    method.zero_grad()
    nodes = method.embed(frames.view(2, 4, 9, 3, 24, 24))  # BatchNorm in train mode: the same batch statistics
    torch.manual_seed(9)
    expected = restated_loss(*restated_transitions(nodes, 0.05, 0.1))
    expected.backward()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_grad, method.head.weight.grad, rtol=1e-4, atol=1e-7)


def test_cli_shows_and_runs_the_layer4_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "method=crw", "--help"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ") and len(line.split()) > 1}
    assert rows["stage"] == "'layer4'" and rows["padding"] == "'reflect'" and rows["edge_dropout_rule"] == "'released'"
    assert rows["encoder_stride"] == "8"
    train_cfg, method_cfg = resolve(["method=crw", "image_size=64", "patch=32", "patch_stride=16"])
    assert method_cfg.stage == "layer4"  # what the help says is what runs
    method, _ = build_run(train_cfg, method_cfg, torch.device("cpu"))
    assert method.head.in_features == 512 and method.encoder.stride == 8 and method.encoder.padding == "reflect"
    _, recipe_cfg = resolve([], recipe={"method": "crw", "stage": "layer3"})
    assert recipe_cfg.stage == "layer3"
    with pytest.raises(ConfigError, match="stage"):
        resolve(["method=crw", "stage=layer5"])
    shipped = read_recipe("crw")
    assert (shipped["stage"], shipped["padding"], shipped["edge_dropout_rule"]) == ("layer4", "reflect", "released")
