"""Typed configs: ``key=value`` coercion, clear errors with "did you mean", help rows, JSON dicts."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import pytest

from vidssl.config import ConfigError, fields_help, option, parse_overrides, to_dict


@dataclass(frozen=True)
class Demo:
    steps: int = option(100, "optimizer steps")
    lr: float = option(3e-4, "peak learning rate")
    amp: bool = option(False, "mixed precision")
    name: str = option("run", "run name")
    out: Path = option(Path("runs/demo"), "output folder")
    resize: int | None = option(None, "short side, or none to keep")  # noqa: UP007 - typing.Union on purpose
    clip: float | None = option(None, "gradient clipping norm")
    backend: Literal["pyav", "decord", "frames"] = option("pyav", "video decoder")
    crop: tuple[int, ...] = option((224, 224), "crop size (H, W)")
    scales: tuple[float, float] = option((0.2, 1.0), "random-resized-crop scale range")
    tags: list[str] = option(["base"], "free-form tags")
    num_workers: int = option(2, "loader processes")


def test_no_overrides_gives_the_defaults() -> None:
    assert parse_overrides(Demo, []) == Demo()
    assert Demo().tags is not Demo().tags  # a mutable default is not shared between instances


@pytest.mark.parametrize(
    ("pair", "key", "expected"),
    [
        ("amp=true", "amp", True),
        ("amp=True", "amp", True),
        ("amp=false", "amp", False),
        ("amp=1", "amp", True),
        ("resize=none", "resize", None),
        ("resize=None", "resize", None),
        ("resize=64", "resize", 64),
        ("clip=none", "clip", None),
        ("clip=1", "clip", 1.0),
        ("lr=1e-3", "lr", 0.001),
        ("lr=2", "lr", 2.0),
        ("steps=1.0", "steps", 1),
        ("steps=2_000", "steps", 2000),
        ("crop=(1, 2)", "crop", (1, 2)),
        ("crop=[3,4]", "crop", (3, 4)),
        ("crop=5", "crop", (5,)),
        ("scales=(0.5, 1)", "scales", (0.5, 1.0)),
        ("tags=['a', 'b']", "tags", ["a", "b"]),
        ("tags=(a, b)", "tags", ["a", "b"]),  # bare words in a list need no quotes
        ("tags=a,b", "tags", ["a", "b"]),
        ("tags=solo", "tags", ["solo"]),
        ("name=hello", "name", "hello"),
        ("name=runs/a/b.c", "name", "runs/a/b.c"),
        ("name='two words'", "name", "two words"),
        # str and Path fields keep the text as typed even when it reads as a number or a keyword
        ("name=1.10", "name", "1.10"),
        ("name=on", "name", "on"),
        ("name=none", "name", "none"),
        ("name={[1]: 2}", "name", "{[1]: 2}"),
        ("out=runs/x/y", "out", Path("runs/x/y")),
        ("out=/data/videos", "out", Path("/data/videos")),
        ("out=2024.10", "out", Path("2024.10")),
        ("backend=decord", "backend", "decord"),
        ("num-workers=0", "num_workers", 0),  # dashes in keys map to underscores
    ],
)
def test_values_are_coerced_to_the_field_type(pair: str, key: str, expected: object) -> None:
    value = getattr(parse_overrides(Demo, [pair]), key)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, (tuple, list)):
        assert [type(v) for v in value] == [type(v) for v in expected]


def test_overrides_apply_on_top_of_a_base_and_later_pairs_win() -> None:
    cfg = parse_overrides(Demo, ["steps=5", "steps=7"], base=Demo(lr=0.5, name="base"))
    assert (cfg.steps, cfg.lr, cfg.name) == (7, 0.5, "base")


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("steps=abc", "steps='abc': expected an integer"),
        ("steps=1.5", "steps=1.5: expected an integer"),
        ("steps=true", "expected an integer"),
        ("lr=fast", "lr='fast': expected a number"),
        ("amp=maybe", "amp='maybe': expected true or false"),
        ("amp=2", "expected true or false"),
        ("resize=big", "expected an integer"),
        ("crop=(1, 'a')", "expected an integer"),
        ("backend=ffmpeg", "backend='ffmpeg' is not one of pyav, decord, frames"),
    ],
)
def test_wrong_values_raise_config_error(pair: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(Demo, [pair])
    assert message in str(info.value)


@pytest.mark.parametrize("pair", ["steps", "=3", ""])
def test_pair_without_key_or_equals_is_an_error(pair: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value") as info:
        parse_overrides(Demo, [pair])
    assert repr(pair) in str(info.value)


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(Demo, ["setps=3"])
    assert str(info.value) == "unknown key 'setps'; did you mean 'steps'?"
    with pytest.raises(ConfigError, match="did you mean 'num_workers'"):
        parse_overrides(Demo, ["num-worker=3"])


def test_far_off_key_lists_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(Demo, ["zzzz=1"])
    message = str(info.value)
    assert "did you mean" not in message
    assert message.startswith("unknown key 'zzzz'; valid keys: ")
    assert message.endswith(", ".join(f.name for f in fields(Demo)))


def test_values_are_literals_never_evaluated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def guard(real):  # typing resolves annotations with eval; user values must never get there
        def guarded(source, *args, **kwargs):
            names = source if isinstance(source, str) else " ".join(getattr(source, "co_names", ()))
            assert "__import__" not in names, f"{real.__name__} ran on a command-line value"
            return real(source, *args, **kwargs)

        return guarded

    monkeypatch.setattr(builtins, "eval", guard(builtins.eval))
    monkeypatch.setattr(builtins, "exec", guard(builtins.exec))
    monkeypatch.chdir(tmp_path)
    code = "__import__('os').getcwd()"
    assert parse_overrides(Demo, [f"name={code}"]).name == code
    touch = "__import__('pathlib').Path('pwned').touch()"
    assert parse_overrides(Demo, [f"out={touch}"]).out == Path(touch)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ConfigError, match="expected an integer"):
        parse_overrides(Demo, ["steps=__import__('os').getpid()"])


def test_fields_help_lists_every_field_with_default_and_help() -> None:
    rows = fields_help(Demo)
    assert [key for key, _, _ in rows] == [f.name for f in fields(Demo)]
    table = {key: (default, text) for key, default, text in rows}
    assert table["steps"] == ("100", "optimizer steps")
    assert table["lr"] == ("0.0003", "peak learning rate")
    assert table["amp"] == ("False", "mixed precision")
    assert table["name"] == ("'run'", "run name")
    assert table["out"] == ("runs/demo", "output folder")
    assert table["resize"] == ("None", "short side, or none to keep")
    assert table["backend"] == ("'pyav'", "video decoder")
    assert table["crop"] == ("(224, 224)", "crop size (H, W)")
    assert table["tags"] == ("['base']", "free-form tags")
    assert all(text for _, _, text in rows)


def test_to_dict_is_json_serialisable() -> None:
    cfg = parse_overrides(Demo, ["out=runs/x/y", "crop=(1, 2)", "resize=64"])
    data = json.loads(json.dumps(to_dict(cfg)))
    assert data["out"] == "runs/x/y"
    assert data["crop"] == [1, 2] and data["scales"] == [0.2, 1.0]
    assert data["resize"] == 64 and data["clip"] is None and data["tags"] == ["base"]
    assert list(data) == [f.name for f in fields(Demo)]
    # the saved dict feeds back into the same config
    pairs = [f"{k}={v!r}" if isinstance(v, (str, list)) else f"{k}={v}" for k, v in data.items()]
    assert parse_overrides(Demo, pairs) == cfg


def test_crops_larger_than_the_decoded_frames_are_warned_about(caplog) -> None:
    from vidssl.engine.config import check_run, run_config

    with caplog.at_level("WARNING"):
        check_run(*run_config(method="fti", image_size=128, decode_size=96))
    assert "image_size=128 is larger than decode_size=96" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_run(*run_config(method="fti", image_size=64, decode_size=96))
    assert "larger than decode_size" not in caplog.text
