"""BYOL, SimSiam and DINO: one step, learning on tiny images, the collapse monitor (and that it
can fail), the losses against straightforward references, the schedules, and training through
the real loop on an image folder, on videos with a ViT (exported and reloaded) and from the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision

from vidssl.cli import main
from vidssl.data.spec import DataSpec
from vidssl.data.transforms import simclr_augment
from vidssl.ema import cosine_momentum, ema_update, momentum_at
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.optim import build_optimizer
from vidssl.engine.schedules import cosine_schedule
from vidssl.engine.trainer import run_config, train
from vidssl.losses.dino import dino_loss, entropy, teacher_probabilities
from vidssl.losses.similarity import embedding_std, negative_cosine, normalized_mse
from vidssl.methods import METHODS
from vidssl.methods.base import Method
from vidssl.models.encoders import Encoder, ResNetEncoder, build_encoder

NAMES = ["byol", "simsiam", "dino"]
SMALL_HEADS: dict[str, dict[str, Any]] = {
    "byol": dict(proj_hidden=128, proj_dim=64, pred_hidden=128),
    "simsiam": dict(proj_dim=64, pred_hidden=16),
    "dino": dict(out_dim=256, hidden=128, bottleneck=64, local_crops=2),
}
SIZE = 32  # image_size of the views built by hand
LOOP = dict(encoder="resnet18", batch_size=4, image_size=32, decode_size=40, workers=0, lr=0.01, log_every=1,
            save_every=100)


def build(name: str, encoder: torch.nn.Module | None = None, **kw: Any) -> tuple[Method, DataSpec, Any]:
    cls = METHODS[name]
    cfg = cls.Config(**{**SMALL_HEADS[name], **kw})
    method = cls(encoder if encoder is not None else build_encoder("resnet18"), cfg, image_size=SIZE)
    return method, method.data(), cfg


def images(n: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, size, size): smooth random colour fields, distinct per image."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return (F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False) * 255).to(torch.uint8)


def views(spec: DataSpec, pictures: torch.Tensor) -> dict[str, torch.Tensor]:
    """A batch as the trainer delivers it: the method's own transform (or the default SimCLR
    pipeline) per image, stacked to uint8 (B, V, 3, h, w) (the method normalizes pixels itself)."""
    samples = []
    for picture in pictures:
        if spec.transform is not None:
            out = spec.transform(picture[None])
            samples.append(out if isinstance(out, dict) else {"frames": out})
        else:
            augment = simclr_augment(SIZE)
            samples.append({"frames": torch.stack([augment(picture), augment(picture)])})
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    assert all(v.dtype == torch.uint8 for v in batch.values())  # raw pixels, as the loader gives them
    return batch


@pytest.mark.parametrize("name", NAMES)
def test_one_step_is_finite_and_reaches_the_encoder(name: str) -> None:
    torch.manual_seed(0)
    method, spec, _ = build(name)
    batch = views(spec, images(4))
    if name == "dino":
        assert batch["frames"].shape == (4, 2, 3, 32, 32) and batch["local"].shape == (4, 2, 3, 14, 14)
    else:
        assert batch["frames"].shape == (4, 2, 3, 32, 32)
    out = method.training_step(batch)
    assert torch.isfinite(out.loss) and out.loss.ndim == 0
    out.loss.backward()
    assert method.encoder.conv1.weight.grad.abs().sum() > 0
    assert out.logs["embed_std"] > 0 and "embed_std_ratio" in out.logs
    frozen = [p for n, p in method.named_parameters() if n.startswith(("target_", "teacher_"))]
    assert bool(frozen) == (name != "simsiam")  # SimSiam has one network; its stop-gradient is in the loss
    assert all(p.grad is None and not p.requires_grad for p in frozen)  # EMA only, never a gradient


class SmallConv(Encoder):
    """A three-layer conv net under the encoder contract: the learning tests need an encoder, not
    ResNet-18's cost (these tests share two CPU cores with much else)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        for cin, cout in ((3, 16), (16, 32), (32, 64)):
            layers += [torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(cout),
                       torch.nn.ReLU(inplace=True)]
        self.body = torch.nn.Sequential(*layers)
        self.out_dim, self.stride, self.config = 64, 8, {}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two intra-op threads on two cores shared with other processes spin-wait each other into a
    several-fold slowdown; one thread keeps these tests fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def short_run(name: str, steps: int, *, pool: int = 4, lr: float = 1e-3, warmup: int = 0,
              encoder: Callable[[], Encoder] | None = None, **kw: Any) -> list[dict[str, float]]:
    """``steps`` AdamW steps of a small conv encoder on 8 fixed images (the trainer's cosine
    schedule after ``warmup`` linear steps); the logs. The views are the method's real
    augmentations, drawn once as ``pool`` batches and cycled (drawing fresh ones every step would
    cost more than the steps)."""
    torch.manual_seed(0)
    method, spec, _ = build(name, encoder=(encoder or SmallConv)(), **kw)
    optimizer = build_optimizer("adamw", method, lr=lr, weight_decay=1e-4)
    lrs = cosine_schedule(lr, 0.0, steps, warmup_steps=warmup)
    pictures, logs = images(8), []
    batches = [views(spec, pictures) for _ in range(pool)]
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[step])
        out = method.training_step(batches[step % pool])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        ema = method.ema()  # the trainer's order: EMA copies, then the method's own schedules
        if ema:
            ema_update(ema.pairs, momentum_at(ema.momentum, ema.schedule, step, steps))
        method.after_step(step, steps)
        logs.append(out.logs)
    return logs


def mean(logs: list[dict[str, float]], key: str) -> float:
    return sum(x[key] for x in logs) / len(logs)


@pytest.mark.parametrize("name", ["byol", "simsiam"])
def test_short_run_lowers_the_loss_without_collapse(name: str) -> None:
    logs = short_run(name, 30)
    assert mean(logs[-5:], "loss") < mean(logs[:5], "loss") - 0.05, [round(x["loss"], 3) for x in logs]
    d = SMALL_HEADS[name]["proj_dim"]
    assert logs[-1]["embed_std"] > 0.3 / math.sqrt(d)  # well away from collapse (0)


def resnet10() -> ResNetEncoder:
    """ResNet-18 with one block per stage: DINO needs richer features than :class:`SmallConv`'s
    to stay away from collapse on eight tiny images, at about half ResNet-18's cost."""
    trunk = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    return ResNetEncoder(trunk, stride=32, config={})


def test_dino_short_run_learns_and_keeps_both_loss_terms() -> None:
    # Teacher temperature 0.04 throughout (main_dino.py's default; the 0.04 -> 0.07 warm-up is for
    # runs of hundreds of epochs), a faster teacher (0.99) and an lr warm-up (DINO's 10 epochs)
    # for a 60-step run.
    logs = short_run("dino", 60, pool=8, lr=1e-3, warmup=15, encoder=resnet10, momentum=0.99,
                     teacher_temp=0.04)
    log_k = math.log(SMALL_HEADS["dino"]["out_dim"])
    for x in logs:  # cross-entropy = teacher entropy + KL, KL >= 0, entropy inside (0, log K)
        assert x["loss"] == pytest.approx(x["teacher_entropy"] + x["kl"])
        assert x["kl"] >= -1e-4 and 0 < x["teacher_entropy"] < log_k
    first, last = logs[:5], logs[-5:]
    assert mean(last, "loss") < mean(first, "loss") - 0.5, [round(x["loss"], 2) for x in logs]
    # The student learns to predict the teacher (KL falls) while the teacher stays neither one-hot
    # (entropy -> 0) nor uniform (entropy -> log K): either collapse would take KL to 0 instead.
    assert 0.1 < mean(last, "kl") < 0.5 * mean(first, "kl"), [round(x["kl"], 2) for x in logs]
    assert 1.0 < mean(last, "teacher_entropy") < log_k - 1.0, [round(x["teacher_entropy"], 2) for x in logs]
    assert logs[-1]["embed_std"] > 0.3 / math.sqrt(SMALL_HEADS["dino"]["bottleneck"])


@pytest.mark.parametrize("ablation", ["no_centering", "no_sharpening"])
def test_dino_collapses_without_centering_or_sharpening_and_the_logs_show_it(ablation: str) -> None:
    """DINO Fig. 7: centring alone collapses to the uniform distribution, sharpening alone to one
    dimension; both take KL to 0, and the embedding monitor falls with them."""
    kw = (dict(center_momentum=1.0, teacher_temp=0.04) if ablation == "no_centering"  # centre stays 0
          else dict(teacher_temp=0.1, warmup_teacher_temp=0.1))  # teacher as soft as the student
    logs = short_run("dino", 30, lr=1e-3, momentum=0.99, **kw)
    last, log_k = logs[-1], math.log(SMALL_HEADS["dino"]["out_dim"])
    assert last["kl"] < 0.05 and last["embed_std_ratio"] < 0.1 < logs[0]["embed_std_ratio"]
    if ablation == "no_centering":
        assert last["teacher_entropy"] < 0.3  # one-hot
    else:
        assert last["teacher_entropy"] > log_k - 0.1  # uniform


class ConstantEncoder(Encoder):
    """Complete collapse: the same feature for every image."""

    def __init__(self) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.randn(32))
        self.out_dim, self.stride, self.config = 32, 32, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], -1) + 0 * x.mean()


@pytest.mark.parametrize("name", NAMES)
def test_collapse_monitor_reads_zero_for_a_collapsed_model(name: str) -> None:
    torch.manual_seed(0)
    method, spec, _ = build(name, encoder=ConstantEncoder())
    logs = method.training_step(views(spec, images(4))).logs
    assert logs["embed_std"] < 1e-4 and logs["embed_std_ratio"] < 1e-3


def test_embedding_std_scale() -> None:
    z = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    assert embedding_std(z) * 8 == pytest.approx(1.0, abs=0.02)  # 1 / sqrt(64) for isotropic vectors
    assert embedding_std(torch.ones(16, 64) * 3) == 0.0
    assert embedding_std(z[:, :1].abs().expand(-1, 64)) < 1e-6  # one direction, any lengths: collapsed too


def test_similarity_losses_against_their_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(6, 8, generator=g, requires_grad=True), torch.randn(6, 8, generator=g, requires_grad=True)
    cos = (p / p.norm(dim=1, keepdim=True) * (z / z.norm(dim=1, keepdim=True))).sum(1)
    torch.testing.assert_close(negative_cosine(p, z), -cos.mean())
    diff = p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)
    torch.testing.assert_close(normalized_mse(p, z), diff.square().sum(1).mean())
    (negative_cosine(p, z) + normalized_mse(p, z)).backward()
    assert p.grad is not None and z.grad is None  # the stop-gradient is inside the loss


def reference_dino_loss(
    student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, s_t: float, t_t: float
) -> torch.Tensor:
    """DINO's own loop (main_dino.py DINOLoss.forward)."""
    student_out = (student / s_t).chunk(student.shape[0])
    teacher_out = F.softmax((teacher - center) / t_t, dim=-1).chunk(teacher.shape[0])
    total, terms = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total += torch.sum(-q[0] * F.log_softmax(student_out[v][0], dim=-1), dim=-1).mean()
            terms += 1
    return total / terms


def test_dino_loss_matches_the_reference_and_decomposes() -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 3, 16, generator=g), torch.randn(2, 3, 16, generator=g)
    center = torch.randn(16, generator=g)
    loss = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    torch.testing.assert_close(loss, reference_dino_loss(student, teacher, center, 0.1, 0.04))
    # Student view v giving exactly the teacher's distribution for the other global crop: the
    # cross-entropy is then the teacher's entropy alone (KL = 0).
    targets = teacher_probabilities(teacher, center, temperature=0.04)  # (2, 3, 16)
    matched = targets.flip(0).clamp_min(1e-30).log() * 0.1  # softmax(matched / 0.1) = the other view's targets
    torch.testing.assert_close(dino_loss(matched, teacher, center, student_temp=0.1, teacher_temp=0.04),
                               entropy(targets), atol=1e-4, rtol=1e-4)


def test_target_momentum_schedule_and_ema() -> None:
    assert cosine_momentum(0.996, 0, 100) == pytest.approx(0.996)
    assert cosine_momentum(0.996, 50, 100) == pytest.approx(0.998)
    assert cosine_momentum(0.996, 100, 100) == pytest.approx(1.0)
    assert momentum_at(0.996, "cosine", 50, 100) == cosine_momentum(0.996, 50, 100)
    assert momentum_at(0.996, "constant", 50, 100) == 0.996
    method, _, _ = build("byol")
    with torch.no_grad():
        method.encoder.conv1.weight.add_(1.0)
    before = method.target_encoder.conv1.weight.clone()
    method.after_step(0, 10)  # the trainer does the EMA (method.ema()), not after_step: no double update
    torch.testing.assert_close(method.target_encoder.conv1.weight, before, rtol=0, atol=0)
    ema = method.ema()
    assert (ema.momentum, ema.schedule) == (0.996, "cosine")
    assert {(id(t), id(o)) for t, o in ema.pairs} == {(id(method.target_encoder), id(method.encoder)),
                                                      (id(method.target_projector), id(method.projector))}
    ema_update(ema.pairs, momentum_at(ema.momentum, ema.schedule, 0, 10))  # what the trainer does after step 0
    # momentum 0.996: the target moves 0.4% of the way to the online weights
    moved = method.target_encoder.conv1.weight - before
    torch.testing.assert_close(moved, 0.004 * (method.encoder.conv1.weight - before))


def test_dino_state_is_in_the_checkpoint_and_schedules_follow_progress() -> None:
    method, _, _ = build("dino", teacher_temp_warmup=0.5, freeze_last_layer=0.2)
    state = method.state_dict()
    assert {"center", "progress"} <= set(state) and state["center"].shape == (256,)
    assert method.current_teacher_temp() == pytest.approx(0.04)
    method.after_step(4, 20)  # 5 of 20 steps done: half-way through the warm-up
    assert method.current_teacher_temp() == pytest.approx(0.055)
    method.after_step(9, 20)
    assert method.current_teacher_temp() == pytest.approx(0.07)


def test_dino_freezes_the_last_layer_at_first() -> None:
    torch.manual_seed(0)
    method, spec, _ = build("dino", freeze_last_layer=0.5)
    batch = views(spec, images(4))
    method.training_step(batch).loss.backward()
    assert method.head.last_direction.grad.abs().sum() == 0  # present (DDP sees it) but zero
    method.zero_grad()
    method.after_step(9, 10)
    method.training_step(batch).loss.backward()
    assert method.head.last_direction.grad.abs().sum() > 0


def test_byol_trains_on_an_image_folder(tmp_path: Path, cache_dir: Path) -> None:
    from vidssl.data.synth_images import make_image_folder

    folder = make_image_folder(tmp_path / "images", num_videos=3, num_frames=8, size=32, height=96, width=128,
                               every=4, min_area=50, progress=False)
    out = train(*run_config(method="byol", data=str(folder / "train"), data_kind="images", out=str(tmp_path / "img"),
                            steps=2, export=False, **SMALL_HEADS["byol"], **LOOP))
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2] and all(math.isfinite(x["loss"]) and x["embed_std"] > 0 for x in logs)


def test_dino_with_vit_tiny_on_videos_exports_and_reloads(tmp_path: Path, synth_dir: Path, cache_dir: Path) -> None:
    from vidssl.export import load_encoder

    loop = {**LOOP, "encoder": "vit_tiny", "encoder_stride": 16, "image_size": 64, "decode_size": 72, "batch_size": 2,
            "optimizer": "adamw", "lr": 1e-4}
    out = train(*run_config(method="dino", data=str(synth_dir / "videos"), out=str(tmp_path / "vit"), steps=1,
                            local_size=32, **SMALL_HEADS["dino"], **loop))
    (log,) = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert math.isfinite(log["loss"]) and log["kl"] > 0
    encoder = load_encoder(out / "encoder.safetensors").eval()
    assert encoder.config["name"] == "vit_tiny" and encoder.stride == 16
    trained = {k[len("encoder."):]: v for k, v in load_checkpoint(out / "checkpoints/last.pt")["model"].items()
               if k.startswith("encoder.")}
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 64, 64)).shape == (1, 192)
        assert encoder.forward_features(torch.randn(1, 3, 32, 48)).shape == (1, 192, 2, 3)


def test_simsiam_from_the_cli(tmp_path: Path, synth_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "method=simsiam", "--help"]) == 0
    keys = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert "pred_hidden" in keys and keys.index("pred_hidden") > keys.index("export")  # the engine's keys, then its own
    out = tmp_path / "cli"
    args = ["train", str(synth_dir / "videos"), "method=simsiam", "steps=2", f"out={out}", "export=false",
            *(f"{k}={v}" for k, v in {**SMALL_HEADS["simsiam"], **LOOP}.items())]
    assert main(args) == 0
    state = load_checkpoint(out / "checkpoints/last.pt")
    assert state["step"] == 2 and state["config"]["method"]["pred_hidden"] == 16
