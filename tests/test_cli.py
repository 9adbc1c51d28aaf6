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
