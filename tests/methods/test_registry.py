"""Every registered method trains one step through the real loop with its own ``smoke()`` keys: a
finite loss, the shared encoder's weights move, its keys are recorded, the encoder exports, and the
method's state-dict names are those of release 0.1 (so old run folders resume)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from vidssl.config import to_dict
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.config import from_dict, method_class
from vidssl.engine.trainer import run_config, train
from vidssl.methods import METHODS, PairMethod
from vidssl.models.encoders import build_encoder, encoder_from_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
TINY = dict(encoder="resnet18", batch_size=2, image_size=48, decode_size=56, workers=0, lr=0.05, log_every=1,
            save_every=1, optimizer="sgd")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_a_step(name, synth_dir, tmp_path, cache_dir) -> None:
    smoke = METHODS[name].smoke()
    cfg, method_cfg = run_config(method=name, data=str(synth_dir / "videos"), out=str(tmp_path / name), steps=1,
                                 **TINY, **smoke)
    run = train(cfg, method_cfg)
    (log,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert torch.isfinite(torch.tensor(log["loss"])), log
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["config"]["method"] == to_dict(method_cfg) and all(state["config"]["method"][k] == v
                                                                     for k, v in smoke.items())
    assert yaml.safe_load((run / "config.yaml").read_text()) == state["config"]
    built = build_encoder(cfg.encoder, stride=cfg.encoder_stride).config
    # a method may set an encoder option that changes no weight (CRW: padding); the stored config records it
    assert state["encoder"] == {**built, "kwargs": {**built["kwargs"], **state["encoder"]["kwargs"]}}
    assert encoder_from_config(state["encoder"]).config == state["encoder"]
    torch.manual_seed(cfg.seed)  # the trainer's initial encoder
    initial = build_encoder(cfg.encoder, stride=cfg.encoder_stride).state_dict()
    moved = [k for k, v in initial.items()
             if v.is_floating_point() and not torch.equal(v, state["model"][f"encoder.{k}"])]
    assert moved, f"{name}: no encoder weight changed in one step"
    assert (run / "encoder.safetensors").exists()


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.yaml")))
def test_state_dict_names_match_release_0_1(name, tmp_path) -> None:
    """Checkpoints of release 0.1 load strictly: every method keeps its module and buffer names."""
    flat = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    if flat.get("tracks"):  # the folder it was written with is gone; a method checks that it exists
        flat["tracks"] = str(tmp_path)
    train_cfg, method_cfg = from_dict(flat)
    method = method_class(train_cfg.method)(build_encoder(train_cfg.encoder, stride=train_cfg.encoder_stride),
                                            method_cfg, image_size=train_cfg.image_size, seed=train_cfg.seed)
    assert sorted(method.state_dict()) == json.loads((FIXTURES / "state_keys.json").read_text())[name]


def test_every_config_is_typed_frozen_and_documented() -> None:
    for name, cls in METHODS.items():
        cfg = cls.Config()
        assert dataclasses.is_dataclass(cfg), name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, dataclasses.fields(cfg)[0].name, None) if dataclasses.fields(cfg) else (_ for _ in ()).throw(
                dataclasses.FrozenInstanceError())
        assert all(f.metadata.get("help") for f in dataclasses.fields(cfg)), name
        assert not any(f.name.startswith(f"{name}_") for f in dataclasses.fields(cfg)), f"{name}: prefixed key"
        assert set(cls.smoke()) <= {f.name for f in dataclasses.fields(cfg)}, name


def test_two_view_methods_share_the_pair_source() -> None:
    pair_methods = sorted(n for n, c in METHODS.items() if issubclass(c, PairMethod))
    assert pair_methods == ["byol", "fti", "mocov2", "simclr", "simsiam", "vfs"]
