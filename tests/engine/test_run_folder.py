"""Run folders are safe by construction (issue 13): resume finishes a run and never silently
extends it, the folder given is the run folder (copies and moves resume in place), an existing
run is never replaced without ``overwrite=true``, logs are cut back to the checkpoint, two
checkpoints are kept and a damaged newest one falls back to the previous, killed writes leave no
litter, and a full disk is one line naming the file."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from testdata import train_killed_at

from vidssl.cli import main
from vidssl.engine.checkpoint import CheckpointWriteError, load_checkpoint, save_checkpoint
from vidssl.engine.config import resolve
from vidssl.engine.trainer import run_config, train

TINY = dict(encoder="resnet18", batch_size=2, image_size=32, decode_size=40, workers=0, lr=0.01, log_every=1,
            save_every=2, proj_hidden=32, proj_dim=16, queue_size=16, export=False)


def cli_args(synth_dir: Path, run: Path, **kw) -> list[str]:
    values = {**TINY, "steps": 4, **kw}
    return ["train", str(synth_dir / "videos"), f"out={run}", *(f"{k}={v}" for k, v in values.items())]


def killed_at(run: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch, *, step: int, **kw) -> None:
    """A 4-step run killed right after its checkpoint at ``step``."""
    train_killed_at(*run_config(data=str(synth_dir / "videos"), out=str(run), steps=4, **{**TINY, **kw}), monkeypatch,
                    step=step)


def files_of(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_resume_without_steps_finishes_the_run_and_a_finished_run_changes_nothing(
        tmp_path, synth_dir, cache_dir, monkeypatch, caplog) -> None:
    run = tmp_path / "run"
    killed_at(run, synth_dir, monkeypatch, step=2)
    assert resolve([f"out={run}", "resume=true"])[0].steps == 4  # the run's own, not the default 1000
    assert main(["train", f"out={run}", "resume=true"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    before = files_of(run)
    caplog.set_level(logging.INFO)
    assert main(["train", f"out={run}", "resume=true"]) == 0
    assert "the run is finished (step 4 of 4)" in caplog.text
    assert files_of(run) == before  # config, checkpoints, logs untouched
    assert main(["train", f"out={run}", "resume=true", "steps=5"]) == 0  # an explicit extension, said so
    assert "extending" in caplog.text and load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5
    assert main(["train", f"out={run}", "resume=true", "steps=3"]) == 1  # never shortened
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5


def test_a_copied_or_moved_run_resumes_where_it_is(tmp_path, synth_dir, cache_dir, monkeypatch) -> None:
    original = tmp_path / "original"
    killed_at(original, synth_dir, monkeypatch, step=2)
    copy, moved = tmp_path / "copy", tmp_path / "moved"
    shutil.copytree(original, copy)
    before = files_of(original)
    assert main(["train", f"out={copy}", "resume=true"]) == 0
    assert load_checkpoint(copy / "checkpoints" / "last.pt")["step"] == 4
    assert files_of(original) == before  # the original is not written through the copy
    original.rename(moved)
    assert main(["train", f"out={moved}", "resume=true"]) == 0
    assert load_checkpoint(moved / "checkpoints" / "last.pt")["step"] == 4  # resumed, not from 0
    assert not original.exists()
    assert steps_logged(moved) == [1, 2, 3, 4]


def test_training_into_a_run_folder_is_refused_unless_overwrite(tmp_path, synth_dir, cache_dir, capsys) -> None:
    run = tmp_path / "run"
    assert main(cli_args(synth_dir, run, steps=2)) == 0
    before = files_of(run)
    capsys.readouterr()
    assert main(cli_args(synth_dir, run, steps=1)) == 1
    err = capsys.readouterr().err
    assert f"{run}: already holds a training run" in err and "resume=true" in err and "overwrite=true" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert files_of(run) == before
    assert main(cli_args(synth_dir, run, steps=1, overwrite="true")) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1
    assert steps_logged(run) == [1]  # one run's rows, not two
    assert not (run / "checkpoints" / "previous.pt").exists()


def test_resume_cuts_the_log_back_to_the_checkpoint(tmp_path, synth_dir, cache_dir, monkeypatch) -> None:
    import vidssl.engine.trainer as trainer

    run = tmp_path / "run"
    real_write = trainer._Logs.write

    def write_then_die(self, step, logs):
        real_write(self, step, logs)
        if step == 3:  # logged step 3, but the newest checkpoint is step 2
            self.jsonl.write('{"step": 4, "lo')  # and a row cut short by the kill
            self.jsonl.flush()
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer._Logs, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(*run_config(data=str(synth_dir / "videos"), out=str(run), steps=4, **TINY))
    monkeypatch.setattr(trainer._Logs, "write", real_write)
    train(*run_config(data=str(synth_dir / "videos"), out=str(run), steps=4, resume=True, **TINY))
    assert steps_logged(run) == [1, 2, 3, 4]


def test_two_checkpoints_kept_and_a_damaged_newest_falls_back(tmp_path, synth_dir, cache_dir, caplog) -> None:
    run = tmp_path / "run"
    cfg, method_cfg = run_config(data=str(synth_dir / "videos"), out=str(run), steps=4, **TINY)
    train(cfg, method_cfg)
    last, previous = run / "checkpoints" / "last.pt", run / "checkpoints" / "previous.pt"
    assert load_checkpoint(last)["step"] == 4 and load_checkpoint(previous)["step"] == 2
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])  # truncated (a bad copy, a bad sector)
    stale = run / "checkpoints" / ".last.pt.0badc0de.partial.pt"  # left by a write killed with -9
    stale.write_bytes(b"x" * 100)
    caplog.set_level(logging.INFO)
    from vidssl.engine.checkpoint import encoder_from_checkpoint

    encoder_from_checkpoint(run)  # export falls back too
    train(replace(cfg, steps=5, resume=True), method_cfg)
    assert f"{last}: not a vidssl checkpoint" in caplog.text and f"falling back to {previous} (step 2)" in caplog.text
    assert load_checkpoint(last)["step"] == 5 and load_checkpoint(previous)["step"] == 4
    assert not stale.exists()
    assert steps_logged(run) == [1, 2, 3, 4, 5]  # rows 3 and 4 of the lost checkpoint logged once, again


def test_disk_full_is_one_line_naming_the_file_and_nothing_is_lost(tmp_path, monkeypatch) -> None:
    import vidssl.engine.checkpoint as checkpoint

    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}, "step": 1}, path)
    good = path.read_bytes()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(CheckpointWriteError, match=r"last.pt: not enough free space .*previous checkpoint is kept"):
        save_checkpoint({"model": {"w": torch.ones(1000)}, "step": 2}, path)
    # the check passes, then the disk fills mid-write: torch's own message is replaced
    monkeypatch.setattr(checkpoint, "_free_bytes", lambda p: None)

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint({"model": {"w": torch.ones(1000)}, "step": 2}, path)
    assert str(err.value).startswith(f"{path}: could not write the checkpoint (RuntimeError: [enforce")
    answers = iter([None, 0])  # room before the write, none after it: ENOSPC as torch reports it
    monkeypatch.setattr(checkpoint, "_free_bytes", lambda p: next(answers))
    with pytest.raises(CheckpointWriteError, match="the disk is full"):
        save_checkpoint({"model": {"w": torch.ones(1000)}, "step": 2}, path)
    assert path.read_bytes() == good and [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_disk_full_during_training_is_one_cli_line(tmp_path, synth_dir, cache_dir, monkeypatch, capsys) -> None:
    import vidssl.engine.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "_free_bytes", lambda p: 4096)
    run = tmp_path / "run"
    assert main(cli_args(synth_dir, run, steps=2)) == 1
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("vidssl")]  # the rest: progress bars
    assert len(ours) == 1 and "Traceback" not in err
    assert ours[0].startswith(f"vidssl train: {run / 'checkpoints' / 'last.pt'}: not enough free space")
