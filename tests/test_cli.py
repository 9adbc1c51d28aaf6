"""The command line, called in-process through ``main([...])`` (and once as a real subprocess)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vidssl.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        default = field.default
    else:
        default = field.default_factory()  # type: ignore[misc]
    return repr(default) if isinstance(default, str) else str(default)


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]])
def test_usage_lists_every_subcommand(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vidssl SUBCOMMAND")
    for name, cmd in COMMANDS.items():
        words = name.split()
        assert any(line.split()[: len(words)] == words and cmd.summary in line for line in out.splitlines()), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help_lists_every_key_with_its_default(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vidssl {name}")
    assert COMMANDS[name].summary in out
    lines = out.splitlines()
    keys = dataclasses.fields(COMMANDS[name].config())
    assert keys, "a subcommand without keys"
    for field in keys:
        (line,) = [line for line in lines if line.split()[:1] == [field.name]]
        assert _default_text(field) in line, (field.name, line)
        assert field.metadata["help"] and field.metadata["help"] in line


def test_unknown_key_exits_2_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "somewhere", "min_frame=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'min_frame'; did you mean 'min_frames'?" in err
    assert "vidssl index --help" in err


def test_bad_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "somewhere", "min_frames=many"]) == 2
    assert "min_frames='many': expected an integer" in capsys.readouterr().err


def test_unknown_subcommand_exits_2_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["indx", "videos"]) == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'indx'; did you mean 'index'?" in err
    assert "usage: vidssl SUBCOMMAND" in err


def test_synth_then_index(tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    argv = ["synth", f"out={out}", "num_videos=2", "num_frames=12", "height=96", "width=128"]
    assert main(argv) == 0
    assert f"wrote 2 synthetic videos to {out}" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["synth_000.mp4", "synth_001.mp4"]

    assert main(["index", str(out / "videos")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"2 videos (24 frames) in {out / 'videos'}"]
    assert list(cache_dir.glob("index-videos-*.json"))  # the manifest went to the test's cache


def test_index_positional_that_reads_as_a_number(
    tmp_path: Path, cache_dir: Path, index_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``vidssl index 2024.10`` means the folder "2024.10", not the float 2024.1."""
    (tmp_path / "2024.10").mkdir()
    shutil.copy(index_videos["short_gop"], tmp_path / "2024.10" / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    assert main(["index", "2024.10"]) == 0
    assert capsys.readouterr().out.startswith("1 videos (70 frames) in 2024.10")


def test_index_missing_folder_names_the_path(tmp_path: Path, cache_dir: Path, capsys) -> None:
    missing = tmp_path / "no_such_videos"
    assert main(["index", str(missing)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("vidssl index:") and str(missing) in err


def test_index_without_a_folder_says_so(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index"]) != 0
    assert "index needs a folder" in capsys.readouterr().err


def test_console_entry_point_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "vidssl", "index", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: vidssl index [DATA]")
    assert "min_frames" in proc.stdout and "refresh" in proc.stdout


# --- issue 13: every bad input is one line, before any work ------------------------------------

def _our_lines(err: str) -> list[str]:
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith("vidssl")]


@pytest.mark.parametrize("name", ["synth", "prepare", "tracks", "train", "eval linear", "eval knn",
                                  "eval invariance", "propagate", "eval davis", "eval jhmdb"])
def test_out_an_existing_file_fails_before_any_work(name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(COMMANDS, name, dataclasses.replace(COMMANDS[name], run=lambda cfg: pytest.fail("work began")))
    file = tmp_path / "results.txt"
    file.write_text("keep me\n")
    args = [] if name == "synth" else [str(tmp_path)]
    assert main([*name.split(), *args, f"out={file}"]) == 2
    err = capsys.readouterr().err
    assert f"out={file}: is a file, not a folder" in err and "Traceback" not in err
    assert file.read_text() == "keep me\n"


def test_export_out_a_folder_fails_before_loading(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "no-run"), f"out={tmp_path}"]) == 2
    assert f"out={tmp_path}: is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("pair,message", [
    ("steps=0", "steps=0: must be at least 1"), ("accum=0", "accum=0: must be at least 1"),
    ("batch_size=-2", "batch_size=-2: must be at least 1"), ("lr=1e999", "lr=inf: must be a finite number"),
    ("proj_dim=0", "proj_dim=0: a layer size must be at least 1"),
    ("image_size=0", "image_size=0: must be at least 1"), ("save_every=0", "save_every=0: must be at least 1"),
])
def test_numeric_keys_are_checked_at_parse_time(pair: str, message: str, tmp_path: Path, capsys) -> None:
    assert main(["train", pair, f"out={tmp_path / 'run'}"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_numeric_checks_hold_for_the_python_api_too(tmp_path: Path) -> None:
    from vidssl.config import ConfigError
    from vidssl.engine.trainer import run_config, train

    with pytest.raises(ConfigError, match="steps=0"):
        train(*run_config(steps=0, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_damaged_weights_file_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a safetensors file" * 10)
    assert main(["train", f"weights={garbage}", f"out={tmp_path / 'run'}", "steps=1"]) == 1
    lines = _our_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"vidssl train: weights={garbage}: cannot load"), lines


def test_a_truncated_video_is_one_line(tmp_path: Path, index_videos, cache_dir, capsys) -> None:
    data = index_videos["long_gop"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    from PIL import Image

    mask = tmp_path / "mask.png"
    image = Image.new("L", (128, 96))
    image.paste(1, (40, 30, 80, 60))  # one object
    image.save(mask)
    code = main(["propagate", str(cut), f"labels={mask}", f"out={tmp_path / 'prop'}", "overlay=false"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    lines = _our_lines(err)
    assert len(lines) == 1 and str(cut) in lines[0], err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys) -> None:
    def boom(cfg):
        raise KeyError("some_key")

    monkeypatch.setitem(COMMANDS, "index", dataclasses.replace(COMMANDS["index"], run=boom))
    assert main(["index", "."]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "vidssl index: KeyError: 'some_key' (unexpected; VIDSSL_DEBUG=1 shows the traceback)"
    monkeypatch.setenv("VIDSSL_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["index", "."])
