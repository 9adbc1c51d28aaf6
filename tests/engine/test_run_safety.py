"""Run folders, round two: folders vidssl did not write, failed starts, the run lock, graceful stops.

Each test reproduces a finding of the second reliability probe (issue 27) and fails before the fix.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidssl.cli import main
from vidssl.config import ConfigError
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.run_folder import LOCK, MARKER
from vidssl.engine.trainer import run_config, train

TINY = dict(encoder="resnet18", batch_size=2, image_size=32, decode_size=40, workers=0, lr=0.01, log_every=1,
            save_every=2, proj_hidden=32, proj_dim=16, queue_size=16, export=False)


def args(synth_dir: Path, run: Path, **kw) -> list[str]:
    values = {**TINY, "steps": 2, **kw}
    return ["train", str(synth_dir / "videos"), f"out={run}", *(f"{k}={v}" for k, v in values.items())]


def test_a_folder_vidssl_did_not_write_is_never_trained_into_or_cleared(tmp_path, synth_dir, cache_dir,
                                                                          capsys) -> None:
    """A folder with the user's own config.yaml, checkpoints/ and tb/ was reported as "already holds
    a training run", and following the advice with overwrite=true deleted the user's files."""
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "tb").mkdir()
    (mine / "config.yaml").write_text("learning_rate: 3\nnotes: my experiment\n")
    (mine / "checkpoints" / "last.pt").write_bytes(b"my model")
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    for extra in ({}, {"overwrite": "true"}, {"resume": "true"}):
        assert main(args(synth_dir, mine, **extra)) == 1
        err = capsys.readouterr().err
        assert "that vidssl did not write" in err and "choose another out=" in err, extra
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before


def test_overwrite_removes_only_what_vidssl_wrote(tmp_path, synth_dir, cache_dir) -> None:
    run = tmp_path / "run"
    assert main(args(synth_dir, run)) == 0
    assert json.loads((run / MARKER).read_text())["written_by"] == "vidssl"
    (run / "notes.txt").write_text("mine")
    assert main(args(synth_dir, run, overwrite="true")) == 0
    assert (run / "notes.txt").read_text() == "mine" and load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2


def test_a_start_that_failed_before_its_first_checkpoint_blocks_nothing(tmp_path, synth_dir, cache_dir,
                                                                         caplog) -> None:
    """A mistyped setting that fails after the folder is made left a "training run" that refused the
    corrected command, and resume=true then kept the typo."""
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        train(*run_config(data=str(synth_dir / "videos"), out=str(run), steps=2, weights=str(tmp_path / "nope.pt"),
                          **TINY))
    assert (run / "config.yaml").exists()  # it got that far
    caplog.set_level(logging.INFO)
    train(*run_config(data=str(synth_dir / "videos"), out=str(run), steps=2, **TINY))  # the corrected command
    assert "a start that never reached a checkpoint" in caplog.text
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2

    other = tmp_path / "other"
    with pytest.raises(FileNotFoundError):
        train(*run_config(data=str(synth_dir / "videos"), out=str(other), steps=2, weights=str(tmp_path / "x.pt"),
                          **TINY))
    cfg, method_cfg = run_config(data=str(synth_dir / "videos"), out=str(other), steps=2, resume=True, **TINY)
    train(cfg, method_cfg)  # resume=true takes the settings given, not the failed ones
    assert load_checkpoint(other / "checkpoints" / "last.pt")["config"]["train"]["weights"] == ""


def test_one_run_per_folder_and_a_stale_lock_is_taken_over(tmp_path, synth_dir, cache_dir, caplog) -> None:
    """A second resume=true on a live run removed the live run's checkpoint temporary as "left by an
    interrupted write", and the live run died."""
    run = tmp_path / "run"
    run.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK).write_text(json.dumps({"pid": live.pid, "host": os.uname().nodename, "started": "now"}))
        partial = run / ".config.yaml.0badc0de.partial.yaml"  # the live run's write in progress
        partial.write_text("half")
        with pytest.raises(ConfigError, match=rf"in use by another vidssl run \(pid {live.pid}"):
            train(*run_config(data=str(synth_dir / "videos"), out=str(run), steps=2, resume=True, **TINY))
        assert partial.exists()
    finally:
        live.kill()
        live.wait()
    caplog.set_level(logging.INFO)
    train(*run_config(data=str(synth_dir / "videos"), out=str(run), steps=2, resume=True, **TINY))
    assert f"taking over the lock of a run that is no longer running (pid {live.pid}" in caplog.text
    assert not (run / LOCK).exists() and not partial.exists()


def _start(synth_dir: Path, run: Path, **kw) -> subprocess.Popen:
    command = [sys.executable, "-m", "vidssl", *args(synth_dir, run, steps=10_000, save_every=10_000, **kw)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_steps(run: Path, process: subprocess.Popen, steps: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log = run / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= steps:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.kill()
    raise AssertionError("training did not start")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_step_saves_and_exits_with_the_schedulers_code(tmp_path, synth_dir, cache_dir, sig,
                                                                               code) -> None:
    """SIGTERM (what schedulers and preemption send) ended training at once, with no message and
    no checkpoint; Ctrl-C printed a 38-line traceback and saved nothing either."""
    run = tmp_path / "run"
    process = _start(synth_dir, run)
    _wait_for_steps(run, process, 2)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    last = [line for line in err.splitlines() if line.startswith("vidssl train:")]
    assert len(last) == 1 and f"stopped by {sig.name} after step" in last[0] and "resume=true" in last[0]
    assert "Traceback" not in err
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert step >= 2 and f"after step {step};" in last[0]
    assert not (run / LOCK).exists()
    assert main(["train", f"out={run}", "resume=true", f"steps={step + 1}"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == step + 1


@pytest.mark.slow
def test_a_second_signal_stops_at_once(tmp_path, synth_dir, cache_dir) -> None:
    run = tmp_path / "run"
    process = _start(synth_dir, run, image_size=96, decode_size=112)  # steps long enough to land inside one
    _wait_for_steps(run, process, 1)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode in (-signal.SIGTERM, 143)  # at once; 143 only if the step had already ended
