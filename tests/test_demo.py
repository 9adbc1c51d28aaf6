"""The demo's pipeline at a tiny size, so that `make demo` cannot silently break."""

from __future__ import annotations

import json

import torch
import torchvision
from PIL import Image

from vidssl.cli import main


def test_demo_runs_end_to_end_at_a_tiny_size(tmp_path, cache_dir, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", f"out={out}", "steps=2", "batch_size=2", "image_size=32", "train_videos=2", "held_out=1",
            "frames=12", "height=64", "width=80", "workers=0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].split() == ["encoder", "J&F", "PCK@0.1", "PCK@0.2"]
    assert [line.split()[0] for line in lines[1:4]] == ["trained", "random", "pixels"]
    assert lines[-3].startswith("learned:") and lines[-2].startswith("pictures:") and lines[-1].startswith("next:")
    assert "image_size=32 steps=2 " in lines[-1] and "batch_size=2 " in lines[-1]  # the recipe that ran
    record = json.loads((out / "demo.json").read_text())
    assert set(record["table"]) == {"trained", "random init", "pixels"}
    for row in record["table"].values():
        assert 0 <= row["J&F"] <= 1 and 0 <= row["PCK@0.2"] <= 1
    picture = Image.open(record["picture"])
    assert picture.width > picture.height > 0  # four columns of frames
    assert record["overlay"].endswith(".mp4") and (out / "eval" / "trained").is_dir()
    missing, unexpected = torchvision.models.resnet18().load_state_dict(
        torch.load(record["export"], weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    # a second run reuses the videos, the run and its export
    assert main(args) == 0
    capsys.readouterr()
    # other settings in the same folder are refused in one line, not mixed with the demo there
    assert main([*args, "steps=3"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings (steps 2 -> 3)" in err


def test_every_demo_method_has_a_recipe_its_trainer_accepts(tmp_path) -> None:
    import typing

    from vidssl.demo import RECIPES, DemoConfig, _recipe_keys
    from vidssl.engine.config import run_config

    methods = typing.get_args(typing.get_type_hints(DemoConfig)["method"])
    assert set(methods) == set(RECIPES)
    for method in methods:
        cfg = DemoConfig(method=method, batch_size=3)
        keys = _recipe_keys(cfg)
        assert keys["batch_size"] == 3 and keys["lr"] == RECIPES[method]["lr"]
        train_cfg, _ = run_config(method=method, data=str(tmp_path), out=str(tmp_path / method), **keys)
        assert train_cfg.method == method and train_cfg.batch_size == 3
