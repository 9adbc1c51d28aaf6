"""The training loop on CPU: artefacts, exact resume, non-finite loss, methods."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from testdata import assert_resume_is_bit_exact

from vidssl.cli import main
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.trainer import NonFiniteLossError, run_config, train

TINY = dict(encoder="resnet18", batch_size=4, image_size=48, decode_size=56, workers=0, lr=0.01, log_every=1,
            save_every=2)
HEADS = dict(proj_hidden=64, proj_dim=32)


def tiny(tmp_path: Path, synth_dir: Path, **kw) -> tuple:
    """(TrainConfig, method Config) of a 4-step run on the tiny synthetic videos."""
    method = kw.get("method", "fti")
    heads = {**HEADS, **({"queue_size": 64} if method in ("fti", "mocov2") else {})}
    values = {"data": str(synth_dir / "videos"), "out": str(tmp_path / "run"), "steps": 4, **TINY, **heads, **kw}
    return run_config(**values)


def test_run_folder_holds_config_checkpoint_logs_and_encoder(tmp_path, synth_dir, cache_dir) -> None:
    out = train(*tiny(tmp_path, synth_dir))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["steps"] == 4 and saved["method"]["proj_dim"] == 32 and "proj_dim" not in saved["train"]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 4 and state["config"] == saved and state["config"]["train"]["method"] == "fti"
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4] and all(x["loss"] > 0 and x["images_per_s"] > 0 for x in lines)
    assert any((out / "tb").iterdir())
    assert (out / "encoder.safetensors").exists()
    assert not list(out.rglob("*.partial"))


@pytest.mark.parametrize(
    "method,extra,color_on",
    [("fti", {"loss": "infonce"}, "loader"), ("fti", {"loss": "moco"}, "loader"), ("mocov2", {}, "loader"),
     ("fti", {"loss": "infonce"}, "device"),
     ("byol", {"augment": "simclr", "proj_hidden": 32, "pred_hidden": 32}, "loader")],
)
def test_resume_continues_exactly(tmp_path, synth_dir, cache_dir, monkeypatch, method, extra, color_on) -> None:
    kw = dict(method=method, export=False, color_on=color_on, **extra)  # byol: EMA target on a cosine schedule
    state = assert_resume_is_bit_exact(*tiny(tmp_path, synth_dir, **kw), monkeypatch)
    if "queue" in state:
        assert "queue_ptr" in state


def test_non_finite_loss_stops_and_keeps_the_checkpoint(tmp_path, synth_dir, cache_dir, monkeypatch) -> None:
    cfg, method_cfg = tiny(tmp_path, synth_dir, export=False, steps=2)
    train(cfg, method_cfg)
    before = load_checkpoint(Path(cfg.out) / "checkpoints" / "last.pt")
    import vidssl.methods.fti as fti

    monkeypatch.setattr(fti, "info_nce", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(NonFiniteLossError, match="step 2.*last.pt"):
        train(replace(cfg, steps=4, resume=True), method_cfg)
    after = load_checkpoint(Path(cfg.out) / "checkpoints" / "last.pt")
    assert after["step"] == before["step"] == 2


def test_cli_train_and_unknown_key(tmp_path, synth_dir, cache_dir, capsys) -> None:
    args = ["train", str(synth_dir / "videos"), f"out={tmp_path / 'run'}", "steps=1", "export=false"]
    args += [f"{k}={v}" for k, v in {**TINY, **HEADS}.items()]
    assert main(args) == 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert main(["train", "step=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err
    assert main(["train", "method=nope", f"out={tmp_path / 'x'}"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_export_from_run_folder(tmp_path, synth_dir, cache_dir) -> None:
    import torchvision

    import vidssl
    from vidssl.engine.checkpoint import encoder_from_checkpoint

    out = train(*tiny(tmp_path, synth_dir, steps=1, export=False))
    assert main(["export", str(out), f"out={tmp_path / 'enc.safetensors'}"]) == 0
    encoder = vidssl.load_encoder(tmp_path / "enc.safetensors").eval()
    reference = encoder_from_checkpoint(out / "checkpoints" / "last.pt").eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(encoder(x), reference(x))
    assert main(["export", str(out), f"out={tmp_path / 'tv.pth'}", "format=torchvision"]) == 0
    missing, unexpected = torchvision.models.resnet18().load_state_dict(
        torch.load(tmp_path / "tv.pth", weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
