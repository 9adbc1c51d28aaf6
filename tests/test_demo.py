"""The demo's pipeline at a tiny size, so that `make demo` cannot silently break."""

from __future__ import annotations

import json
import shlex
import typing

import torch
import torchvision
import yaml
from PIL import Image

from vidssl.cli import main, parse_command
from vidssl.demo import DemoConfig, train_command, train_configs
from vidssl.engine.config import config_dict, find_recipe


def test_demo_runs_end_to_end_at_a_tiny_size(tmp_path, cache_dir, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", f"out={out}", "steps=2", "batch_size=2", "image_size=32", "train_videos=2", "held_out=1",
            "frames=12", "height=64", "width=80", "workers=0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].split() == ["encoder", "J&F", "PCK@0.1", "PCK@0.2"]
    assert [line.split()[0] for line in lines[1:4]] == ["trained", "random", "pixels"]
    assert lines[-4].startswith("learned:") and lines[-3].startswith("pictures:")
    assert lines[-2].startswith("trained with: vidssl train cpu/fti.yaml ") and lines[-1].startswith("next:")
    # the printed command, parsed by the command line's own resolution, is the config the demo trained with
    command = lines[-2].removeprefix("trained with: ").split("  (recipe file ")[0]
    assert "steps=2 " in command and "batch_size=2" in command and "image_size=32" in command
    name, configs = parse_command(shlex.split(command)[1:])
    assert name == "train"
    trained = yaml.safe_load((out / "train" / "config.yaml").read_text())
    assert config_dict(*configs) == trained  # every key of both halves
    assert lines[-1].startswith("next: the same on your videos: vidssl train cpu/fti.yaml ~/your/videos out=runs/mine ")
    assert command.split("out=")[1].split(" ", 1)[1] in lines[-1]  # the same keys after the folder
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


def test_the_default_demo_trains_its_recipe_file_as_before(tmp_path) -> None:
    data, run = tmp_path / "videos", tmp_path / "train"
    train_cfg, method_cfg = train_configs(DemoConfig(), data, run)
    # what the demo trained before its recipe became vidssl/recipes/cpu/fti.yaml (BENCHMARKS.md, make demo)
    before = {"method": "fti", "encoder": "resnet18", "image_size": 64, "decode_size": 256, "batch_size": 32,
              "optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4, "steps": 190, "warmup_steps": 19,
              "log_every": 19, "save_every": 47, "workers": 2, "seed": 0, "min_lr": 0.0, "accum": 1,
              "encoder_stride": None, "weights": "", "data": str(data), "out": str(run)}
    assert {k: getattr(train_cfg, k) for k in before} == before
    assert (method_cfg.loss, method_cfg.temperature, method_cfg.max_gap, method_cfg.min_gap, method_cfg.proj_hidden,
            method_cfg.proj_dim, method_cfg.positives) == ("infonce", 0.1, 30, 0, 512, 128, "frames")
    # its command names the recipe file and only what the demo adds to it
    command = train_command(DemoConfig(), data, run)
    assert command == f"vidssl train cpu/fti.yaml {data} out={run} workers=2"
    assert config_dict(*parse_command(shlex.split(command)[1:])[1]) == config_dict(train_cfg, method_cfg)


def test_every_demo_method_has_a_recipe_file_its_trainer_accepts(tmp_path) -> None:
    methods = typing.get_args(typing.get_type_hints(DemoConfig)["method"])
    for method in methods:
        assert find_recipe(f"cpu/{method}.yaml").is_file()
        train_cfg, method_cfg = train_configs(DemoConfig(method=method, batch_size=3), tmp_path, tmp_path / method)
        assert train_cfg.method == method and train_cfg.batch_size == 3 and train_cfg.image_size == 64
    # CRW's patches follow the crop size: 32 and 16 px of 64, 16 and 8 of 32
    _, crw = train_configs(DemoConfig(method="crw", image_size=32), tmp_path, tmp_path / "crw")
    assert (crw.patch, crw.patch_stride) == (16, 8)
