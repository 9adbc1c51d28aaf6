"""How ``vidssl train key=value`` finds its half (engine or method), recipes, and the help."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from vidssl.cli import main
from vidssl.config import ConfigError
from vidssl.engine.config import RECIPES, TrainConfig, read_recipe, resolve, run_config
from vidssl.methods import METHODS
from vidssl.methods.byol import BYOL
from vidssl.methods.fti import FTI


def test_keys_go_to_their_half() -> None:
    train, method = resolve(["method=byol", "lr=0.2", "proj_dim=64", "max_gap=30", "steps=7"])
    assert isinstance(method, BYOL.Config) and method.proj_dim == 64 and method.max_gap == 30
    assert train.lr == 0.2 and train.steps == 7 and train.method == "byol"
    assert not hasattr(train, "proj_dim") and "temperature" not in {f.name for f in dataclasses.fields(TrainConfig)}


def test_a_key_of_another_method_names_its_owners(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"queue_size is not a key of method byol \(it belongs to fti, mocov2\)"):
        resolve(["method=byol", "queue_size=1"])
    assert main(["train", "method=byol", "queue_size=1"]) == 2
    assert "it belongs to fti, mocov2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="did you mean 'pred_hidden'"):
        resolve(["method=byol", "pred_hiden=3"])
    with pytest.raises(ConfigError, match="unknown method 'byl'; did you mean 'byol'"):
        resolve(["method=byl"])


def test_help_lists_the_engine_and_only_the_chosen_methods_keys(capsys: pytest.CaptureFixture[str]) -> None:
    def keys(*args: str) -> set[str]:
        assert main(["train", *args, "--help"]) == 0
        return {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}

    fti, byol = keys("method=fti"), keys("method=byol")
    assert {"queue_size", "loss", "temperature", "positives", "lr", "steps"} <= fti
    assert "queue_size" not in byol and "loss" not in byol and {"pred_hidden", "momentum", "lr"} <= byol
    assert keys() == fti  # fti is the default method
    assert main(["train", "method=colorization", "--help"]) == 0
    (stride,) = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["encoder_stride"]]
    assert stride.split()[1] == "8"  # the method's own default of an engine key


def test_method_defaults_of_engine_keys_and_plain_temperatures() -> None:
    assert resolve(["method=colorization"])[0].encoder_stride == 8
    assert resolve(["method=colorization", "encoder_stride=16"])[0].encoder_stride == 16
    assert resolve(["method=fti"])[0].encoder_stride is None
    temps = {name: getattr(cls.Config(), "temperature", None) for name, cls in METHODS.items()}
    assert temps["simclr"] == 0.1 and temps["mocov2"] == 0.2 and temps["cpc"] == 1.0 and temps["colorization"] == 1.0
    assert all(t is None or isinstance(t, float) for t in temps.values())


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_shipped_recipe_resolves(recipe: str) -> None:
    keys = read_recipe(recipe)
    train, method = resolve([], recipe=keys)
    assert train.method == keys["method"] and isinstance(method, METHODS[train.method].Config)
    for key, value in keys.items():
        where = train if key in {f.name for f in dataclasses.fields(TrainConfig)} else method
        got = getattr(where, key)
        assert got == (tuple(value) if isinstance(value, list) else value), (recipe, key)


def test_command_line_overrides_a_recipe_file(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"method": "fti", "loss": "moco", "temperature": 0.2, "lr": 0.03, "steps": 50}))
    train, method = resolve(["steps=5", "queue_size=16"], recipe=read_recipe(path))
    assert isinstance(method, FTI.Config) and method.loss == "moco" and method.queue_size == 16
    assert train.steps == 5 and train.lr == 0.03
    # a run folder's config.yaml (train: / method: layout) is a recipe too
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump({"train": {"method": "byol", "lr": 0.5}, "method": {"proj_dim": 32}}))
    train, method = resolve([], recipe=read_recipe(saved))
    assert train.method == "byol" and train.lr == 0.5 and method.proj_dim == 32
    with pytest.raises(FileNotFoundError, match="shipped recipes: byol"):
        read_recipe(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="a recipe is a mapping"):
        read_recipe(tmp_path / "bad.yaml")


def test_the_cli_takes_a_recipe_and_data(tmp_path, synth_dir, cache_dir) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"method": "simclr", "proj_hidden": 32, "proj_dim": 16, "image_size": 32,
                                      "decode_size": 40, "batch_size": 2, "workers": 0, "steps": 3}))
    out = tmp_path / "run"
    assert main(["train", str(recipe), str(synth_dir / "videos"), f"out={out}", "steps=1", "export=false"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["steps"] == 1 and saved["train"]["data"] == str(synth_dir / "videos")
    assert saved["method"]["proj_dim"] == 16


def test_run_config_is_the_python_form() -> None:
    train, method = run_config(method="cpc", steps=3, seq_len=4, pred_steps=2)
    assert train.steps == 3 and method.seq_len == 4
    with pytest.raises(ConfigError, match="belongs to"):
        run_config(method="cpc", queue_size=3)


def test_recipe_and_config_values_are_typed_and_checked_like_the_command_line(tmp_path) -> None:
    """Values from a recipe or a run's config.yaml went into the configs unchecked: ``lr: fast``
    trained until the optimizer failed, ``temperature: -0.1`` trained; a ``train:`` that is not a
    mapping resumed with every default, and a recipe that is not UTF-8 was a traceback."""
    from vidssl.engine.config import load_run_config

    def recipe(name: str, keys: dict) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(keys))
        return path

    with pytest.raises(ConfigError, match=r"lr.yaml: lr='fast': expected a number"):
        resolve([], recipe=read_recipe(recipe("lr.yaml", {"method": "fti", "lr": "fast"})), source=tmp_path / "lr.yaml")
    typed, _ = resolve([], recipe=read_recipe(recipe("e.yaml", {"method": "fti", "lr": "1e-4", "steps": 3.0})))
    assert typed.lr == 1e-4 and typed.steps == 3 and isinstance(typed.steps, int)  # PyYAML reads 1e-4 as text
    for temperature in ("temperature=-0.1", "temperature=0"):
        with pytest.raises(ConfigError, match="a temperature must be greater than 0"):
            resolve(["method=fti", temperature])
    with pytest.raises(ConfigError, match="student_temp=-1.0: a temperature"):
        resolve(["method=dino", "student_temp=-1"])
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("method: fti\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not a YAML recipe: not UTF-8 text"):
        read_recipe(latin)
    for bad, message in (({"train": 5, "method": {}}, r"'train:' must be a mapping of keys, got a int"),
                         ({"train": {"method": "fti"}}, r"'method:' must be a mapping of keys, got missing"),
                         ({"train": {"method": "fti", "lr": [1]}, "method": {}}, r"lr=\[1\]: expected a number"),
                         ({"train": {"method": "fti"}, "method": {"temperature": -1}},
                          "temperature=-1.0: a temperature must be greater than 0")):
        saved = recipe("config.yaml", bad)
        with pytest.raises(ConfigError, match=f"config.yaml: {message}"):
            load_run_config(saved)
    latin.rename(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="config.yaml: not a vidssl config.yaml: not UTF-8"):
        load_run_config(tmp_path / "config.yaml")


def test_a_run_saved_before_a_key_existed_resumes_as_it_trained() -> None:
    """CRW's padding and edge-dropout keys came with new defaults (reflect, the released cuts); a run
    saved before them walked with zero padding and independent cuts and must resume that way."""
    from vidssl.engine.config import config_dict, from_dict

    old = config_dict(*resolve(["method=crw"]))
    for key in ("padding", "edge_dropout_rule"):
        del old["method"][key]
    _, method = from_dict(old)
    assert (method.padding, method.edge_dropout_rule) == ("zeros", "independent")
    _, method = from_dict(config_dict(*resolve(["method=crw"])))  # a config of this release keeps its own
    assert (method.padding, method.edge_dropout_rule) == ("reflect", "released")
