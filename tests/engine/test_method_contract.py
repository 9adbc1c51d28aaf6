"""The trainer's extension points that methods build on: per-method options, custom view
transforms (several image keys per batch), clip-consistent colour, ``prepare``, image folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import vidssl.methods as methods
from vidssl.cli import main
from vidssl.config import option
from vidssl.data.gpu_augment import color_augment
from vidssl.data.samplers import PairSampler, SequenceSampler
from vidssl.engine.trainer import config_class, train, train_config
from vidssl.methods.base import DataSpec, Method, StepOutput

TINY = dict(encoder="resnet18", batch_size=2, image_size=32, decode_size=40, workers=0, lr=0.01, log_every=1,
            save_every=2)
SEEN: list[dict[str, Any]] = []


@dataclass(frozen=True)
class ProbeOptions:
    probe_scale: float = option(1.0, "multiplies the loss")
    probe_views: bool = option(False, "use a custom transform returning two view keys")


class Probe(Method):
    """Records what reaches it; loss = mean pooled feature (finite, has gradients)."""

    def __init__(self, encoder: nn.Module, scale: float) -> None:
        super().__init__(encoder)
        self.scale = scale
        self.register_buffer("prepared", torch.zeros(()))

    def training_step(self, batch: dict[str, Any]) -> StepOutput:
        SEEN.append({k: (v.dtype, tuple(v.shape), float(v.mean())) for k, v in batch.items() if isinstance(v, torch.Tensor) and v.ndim == 5})
        x = batch["frames"].flatten(0, 1)
        # a random draw inside the step (global RNG), as dropout or a pretext task's choice makes
        loss = torch.nn.functional.dropout(self.encoder(x), 0.5, training=True).mean() * self.scale
        return StepOutput(loss, {"loss": loss.item()})

    def prepare(self, dataset) -> None:
        self.prepared += 1 + 0 * len(dataset[0]["frames"])


def _two_views(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """(T, 3, H, W) uint8 -> a 32px and a 16px view of each frame."""
    big = torch.nn.functional.interpolate(frames.float(), size=(32, 32)).to(torch.uint8)
    small = torch.nn.functional.interpolate(frames.float(), size=(16, 16)).to(torch.uint8)
    return {"frames": big, "small": small}


def build_probe(encoder: nn.Module, cfg: Any) -> tuple[Probe, DataSpec]:
    if cfg.probe_views:
        return Probe(encoder, cfg.probe_scale), DataSpec(PairSampler(0, 0), transform=_two_views)
    return Probe(encoder, cfg.probe_scale), DataSpec(SequenceSampler(length=3, stride=1), consistent=True)


@pytest.fixture()
def probe(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "probe", build_probe)
    monkeypatch.setitem(methods.METHOD_OPTIONS, "probe", ProbeOptions)
    config_class.cache_clear()
    SEEN.clear()
    yield
    config_class.cache_clear()


def test_method_options_extend_the_config_and_the_cli(probe, tmp_path, synth_dir, cache_dir, capsys) -> None:
    cls = config_class("probe")
    assert cls.__dataclass_fields__["probe_scale"].default == 1.0 and "steps" in cls.__dataclass_fields__
    assert main(["train", "method=probe", "--help"]) == 0 and "probe_scale" in capsys.readouterr().out
    assert main(["train", "method=probe", "probe_scal=2"]) == 2
    assert "did you mean 'probe_scale'" in capsys.readouterr().err
    assert main(["train", "method=fti", "probe_scale=2"]) == 2  # fti has no such key
    out = tmp_path / "run"
    args = [str(synth_dir / "videos"), "method=probe", "probe_scale=0.5", "steps=2", f"out={out}", "export=false"]
    assert main(["train", *args, *(f"{k}={v}" for k, v in TINY.items())]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["probe_scale"] == 0.5


def test_prepare_runs_on_fresh_runs_only_and_options_survive_resume(probe, tmp_path, synth_dir, cache_dir) -> None:
    from vidssl.engine.checkpoint import load_checkpoint

    cfg = train_config(method="probe", data=str(synth_dir / "videos"), out=str(tmp_path / "r"), steps=2, export=False,
                       probe_scale=0.25, **TINY)
    train(cfg)
    assert float(load_checkpoint(tmp_path / "r/checkpoints/last.pt")["model"]["prepared"]) == 1
    # resumed with only the shared keys: the run's saved options win, prepare is not repeated
    train(train_config(method="probe", out=str(tmp_path / "r"), steps=4, resume=True, export=False))
    state = load_checkpoint(tmp_path / "r/checkpoints/last.pt")
    assert float(state["model"]["prepared"]) == 1 and state["step"] == 4 and state["config"]["probe_scale"] == 0.25


def test_custom_transform_views_all_reach_the_method_normalized(probe, tmp_path, synth_dir, cache_dir) -> None:
    train(train_config(method="probe", data=str(synth_dir / "videos"), out=str(tmp_path / "v"), steps=1,
                       export=False, probe_views=True, **TINY))
    (seen,) = SEEN
    assert seen["frames"][:2] == (torch.float32, (2, 2, 3, 32, 32))
    assert seen["small"][:2] == (torch.float32, (2, 2, 3, 16, 16))
    assert -3 < seen["small"][2] < 3  # ImageNet-normalized, not 0..255


def test_consistent_samples_share_one_crop(probe, tmp_path, synth_dir, cache_dir) -> None:
    train(train_config(method="probe", data=str(synth_dir / "videos"), out=str(tmp_path / "c"), steps=1,
                       export=False, **TINY))
    assert SEEN[0]["frames"][1] == (2, 3, 3, 32, 32)


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
    out = train(train_config(method="simclr", data=str(folder / "train"), data_kind="images", out=str(tmp_path / "img"),
                             steps=2, proj_hidden=32, proj_dim=16, export=False, **TINY))
    assert (out / "checkpoints" / "last.pt").exists()


def test_random_draws_inside_steps_repeat_on_resume(probe, tmp_path, synth_dir, cache_dir, monkeypatch) -> None:
    import vidssl.engine.trainer as trainer
    from vidssl.engine.checkpoint import load_checkpoint

    kw = dict(method="probe", data=str(synth_dir / "videos"), steps=4, export=False, **TINY)
    train(train_config(out=str(tmp_path / "full"), **kw))
    real_save = trainer.save_checkpoint

    def save_then_die(state, path):
        real_save(state, path)
        if state["step"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(train_config(out=str(tmp_path / "half"), **kw))
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    train(train_config(out=str(tmp_path / "half"), resume=True, **kw))
    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "half/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


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
