"""The method contract: a new method is one class plus one line in ``METHODS``, and the trainer's
extension points it builds on (its own keys, custom view transforms with several image keys,
clip-consistent colour, ``prepare``, declared EMA copies, image folders)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from testdata import assert_resume_is_bit_exact

import vidssl.methods as methods
from vidssl.cli import main
from vidssl.config import option
from vidssl.data.gpu_augment import color_augment
from vidssl.data.samplers import PairSampler, SequenceSampler
from vidssl.data.spec import DataSpec
from vidssl.ema import EMA, ema_update
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.trainer import run_config, train
from vidssl.methods.base import Method, StepOutput

TINY = dict(encoder="resnet18", batch_size=2, image_size=32, decode_size=40, workers=0, lr=0.01, log_every=1,
            save_every=2)
SEEN: list[dict[str, Any]] = []


# --- everything a new method is: one class (this would be vidssl/methods/probe.py) ---------------
class Probe(Method):
    """Records what reaches it; loss = mean pooled feature (finite, has gradients)."""

    @dataclass(frozen=True)
    class Config:
        scale: float = option(1.0, "multiplies the loss")
        views: bool = option(False, "use a custom transform returning two view keys")
        ema_momentum: float = option(0.0, "keep an EMA copy of the encoder with this momentum (0: none)")

    def __init__(self, encoder, cfg=None, *, image_size: int = 224, seed: int = 0) -> None:
        super().__init__(encoder, cfg, image_size=image_size, seed=seed)
        self.register_buffer("prepared", torch.zeros(()))
        if self.cfg.ema_momentum:
            self.shadow = torch.nn.Linear(2, 2).requires_grad_(False)  # moved by the EMA alone
            self.online = torch.nn.Linear(2, 2)

    @classmethod
    def smoke(cls) -> dict[str, Any]:
        return {"scale": 0.5}

    def data(self) -> DataSpec:
        if self.cfg.views:
            return DataSpec(PairSampler(0, 0), transform=_two_views, views=("frames", "small"))
        return DataSpec(SequenceSampler(length=3, stride=1), consistent=True)

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        SEEN.append({k: (v.dtype, tuple(v.shape), float(v.float().mean())) for k, v in batch.items()
                     if isinstance(v, torch.Tensor) and v.ndim == 5})
        x = self.normalize(batch["frames"].flatten(0, 1))
        # a random draw inside the step (global RNG), as dropout or a pretext task's choice makes
        loss = torch.nn.functional.dropout(self.encoder(x), 0.5, training=True).mean() * self.cfg.scale
        if self.cfg.ema_momentum:
            loss = loss + self.online(torch.ones(1, 2)).sum() * 0
        return StepOutput(loss, {"loss": loss.item()})

    def ema(self) -> EMA | None:
        return EMA([(self.shadow, self.online)], self.cfg.ema_momentum) if self.cfg.ema_momentum else None

    def prepare(self, dataset) -> None:
        self.prepared += 1 + 0 * len(dataset[0]["frames"])


def _two_views(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """(T, 3, H, W) uint8 -> a 32px and a 16px view of each frame."""
    big = torch.nn.functional.interpolate(frames.float(), size=(32, 32)).to(torch.uint8)
    small = torch.nn.functional.interpolate(frames.float(), size=(16, 16)).to(torch.uint8)
    return {"frames": big, "small": small}


@pytest.fixture()
def probe(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "probe", Probe)  # ... plus this one line in METHODS
    SEEN.clear()
    yield


def probe_run(out: Path, synth_dir: Path, **kw: Any) -> tuple:
    return run_config(method="probe", data=str(synth_dir / "videos"), out=str(out), **{**TINY, **kw})


def test_a_new_method_is_one_class_and_one_line(probe, tmp_path, synth_dir, cache_dir, capsys) -> None:
    """Registered, its keys in --help and config.yaml, checked, trained, resumed and exported."""
    assert main(["train", "method=probe", "--help"]) == 0
    text = capsys.readouterr().out
    assert "scale" in text and "steps" in text and "queue_size" not in text
    assert main(["train", "method=probe", "scal=2"]) == 2
    assert "did you mean 'scale'" in capsys.readouterr().err
    assert main(["train", "method=fti", "views=true"]) == 2
    assert "views is not a key of method fti (it belongs to probe)" in capsys.readouterr().err
    out = tmp_path / "run"
    args = [str(synth_dir / "videos"), "method=probe", "scale=0.5", "steps=2", f"out={out}"]
    assert main(["train", *args, *(f"{k}={v}" for k, v in TINY.items())]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == {"scale": 0.5, "views": False, "ema_momentum": 0.0}
    assert saved["train"]["method"] == "probe"
    assert main(["train", f"out={out}", "resume=true", "steps=3"]) == 0  # the method comes from the run folder
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    assert main(["export", str(out), f"out={tmp_path / 'probe.safetensors'}"]) == 0
    assert (tmp_path / "probe.safetensors").stat().st_size > 0


def test_prepare_runs_on_fresh_runs_only_and_keys_survive_resume(probe, tmp_path, synth_dir, cache_dir) -> None:
    train(*probe_run(tmp_path / "r", synth_dir, steps=2, export=False, scale=0.25))
    assert float(load_checkpoint(tmp_path / "r/checkpoints/last.pt")["model"]["prepared"]) == 1
    # resumed with only the engine keys: the run's saved method keys win, prepare is not repeated
    train(*run_config(method="probe", out=str(tmp_path / "r"), steps=4, resume=True, export=False))
    state = load_checkpoint(tmp_path / "r/checkpoints/last.pt")
    assert float(state["model"]["prepared"]) == 1 and state["step"] == 4
    assert state["config"]["method"]["scale"] == 0.25


def test_custom_transform_views_all_reach_the_method_as_pixels(probe, tmp_path, synth_dir, cache_dir) -> None:
    """No implicit rewriting of batch tensors: every view key arrives as uint8 pixels on the device."""
    train(*probe_run(tmp_path / "v", synth_dir, steps=1, export=False, views=True))
    (seen,) = SEEN
    assert seen["frames"][:2] == (torch.uint8, (2, 2, 3, 32, 32))
    assert seen["small"][:2] == (torch.uint8, (2, 2, 3, 16, 16))
    assert 5 < seen["small"][2] < 250  # pixels, not normalized


def test_device_colour_pass_gives_unit_floats(probe, tmp_path, synth_dir, cache_dir) -> None:
    train(*probe_run(tmp_path / "d", synth_dir, steps=1, export=False, color_on="device"))
    dtype, shape, mean = SEEN[0]["frames"]
    assert dtype == torch.float32 and shape == (2, 3, 3, 32, 32) and 0 < mean < 1


def test_consistent_samples_share_one_crop(probe, tmp_path, synth_dir, cache_dir) -> None:
    train(*probe_run(tmp_path / "c", synth_dir, steps=1, export=False))
    assert SEEN[0]["frames"][1] == (2, 3, 3, 32, 32)


def test_declared_ema_copies_are_updated_by_the_trainer(probe, tmp_path, synth_dir, cache_dir) -> None:
    from vidssl.engine.trainer import build_run

    cfg, method_cfg = probe_run(tmp_path / "e", synth_dir, steps=2, export=False, ema_momentum=0.5)
    initial, _ = build_run(cfg, method_cfg, torch.device("cpu"))  # the run's very initialisation
    model = load_checkpoint(train(cfg, method_cfg) / "checkpoints" / "last.pt")["model"]
    gap_before = (initial.shadow.weight - initial.online.weight).abs().sum()
    gap_after = (model["shadow.weight"] - model["online.weight"]).abs().sum()
    assert not torch.equal(model["shadow.weight"], initial.shadow.weight)  # no gradient: only the EMA moves it
    assert gap_after < 0.5 * gap_before  # two steps at momentum 0.5 close most of the gap


def test_foreach_ema_equals_the_per_tensor_rule() -> None:
    torch.manual_seed(0)
    target, online = torch.nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4)
    for p in [*target.parameters(), *online.parameters()]:
        p.data.normal_()
    online(torch.randn(8, 4))  # running statistics differ
    expected = [t.detach().clone().lerp_(o.detach(), 0.1) for t, o in zip(target.parameters(), online.parameters(),
                                                                           strict=True)]
    ema_update([(target, online)], 0.9)
    for got, want in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.equal(target.running_mean, online.running_mean)


def test_device_colour_is_shared_within_a_clip() -> None:
    x = torch.rand(6, 3, 16, 16)
    shared = color_augment(x.clone(), torch.Generator().manual_seed(0), p_blur=0.0, share=3)
    same_input = color_augment(x[:1].repeat(6, 1, 1, 1), torch.Generator().manual_seed(0), p_blur=0.0, share=3)
    assert torch.allclose(same_input[0], same_input[2]) and torch.allclose(same_input[3], same_input[5])
    assert shared.shape == x.shape
    with pytest.raises(ValueError, match="groups of 4"):
        color_augment(x, torch.Generator(), share=4)


def test_trains_on_an_image_folder(tmp_path, cache_dir) -> None:
    from vidssl.data.index import scan_images
    from vidssl.data.synth_images import make_image_folder

    folder = make_image_folder(tmp_path / "images", num_videos=3, num_frames=8, size=32, height=96, width=128,
                               every=4, min_area=50, progress=False)
    (folder / "train" / "broken.jpg").write_bytes(b"not a jpeg")
    index = scan_images(folder / "train", progress=False)
    assert index.videos and all(v.num_frames == 1 for v in index.videos)
    assert [Path(p).name for p, _ in index.unreadable] == ["broken.jpg"]
    out = train(*run_config(method="simclr", data=str(folder / "train"), data_kind="images", out=str(tmp_path / "img"),
                            steps=2, proj_hidden=32, proj_dim=16, export=False, **TINY))
    assert (out / "checkpoints" / "last.pt").exists()


def test_random_draws_inside_steps_repeat_on_resume(probe, tmp_path, synth_dir, cache_dir, monkeypatch) -> None:
    kw = dict(method="probe", data=str(synth_dir / "videos"), steps=4, export=False, **TINY)
    assert_resume_is_bit_exact(*run_config(out=str(tmp_path / "run"), **kw), monkeypatch)


def test_a_bad_image_is_reported_after_ultralytics_patched_pil(tmp_path) -> None:
    """ultralytics patches PIL's Image.open (optional HEIF), which turns 'not an image' into an
    ImportError; the index must still report the file instead of crashing."""
    pytest.importorskip("ultralytics")
    from vidssl.data.index import scan_images
    from vidssl.tracking.offline import import_ultralytics

    import_ultralytics()
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    index = scan_images(tmp_path, progress=False)
    assert not index.videos and [Path(p).name for p, _ in index.unreadable] == ["broken.jpg"]
