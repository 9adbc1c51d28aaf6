"""Propagation end to end on the synthetic videos, ``vidssl propagate`` in-process, bad input.

The DAVIS / JHMDB evaluations built on it are tested in tests/evaluation/test_davis_jhmdb.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidssl.cli import main

SEQ = "synth_000"


def test_propagate_cli_masks_and_keypoints(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = synth_dir / "videos" / f"{SEQ}.mp4"
    mask = synth_dir / "davis" / "Annotations" / "480p" / SEQ / "00000.png"
    assert main(["propagate", str(video), f"labels={mask}", f"out={tmp_path / 'm'}", "encoder=pixels"]) == 0
    assert "propagated masks through 24 frames" in capsys.readouterr().out
    assert len(list((tmp_path / "m" / SEQ).glob("*.png"))) == 24 and (tmp_path / "m" / f"{SEQ}.mp4").stat().st_size > 0
    record = json.loads((tmp_path / "m" / "propagation.json").read_text())
    assert record["settings"]["topk"] == 10 and record["settings"]["radius"] == 12.0 and record["kind"] == "masks"

    points = synth_dir / "annotations" / f"{SEQ}.json"
    assert main(["propagate", str(video), f"labels={points}", f"out={tmp_path / 'k'}", "encoder=random",
                 "size=64", "stride=16"]) == 0
    out = json.loads((tmp_path / "k" / f"{SEQ}.json").read_text())
    assert len(out["frames"]) == 24 and len(out["frames"][3]["keypoints"]) == len(out["names"])
    assert (out["height"], out["width"]) == (120, 160)  # coordinates in the video's own pixels
    assert (tmp_path / "k" / f"{SEQ}.mp4").exists()


def test_bad_input_names_the_file(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = synth_dir / "davis" / "JPEGImages" / "480p" / SEQ
    missing = tmp_path / "nothing.png"
    assert main(["propagate", str(frames), f"labels={missing}", f"out={tmp_path}"]) == 1
    assert "nothing.png" in capsys.readouterr().err
    small = tmp_path / "small.png"
    Image.fromarray(np.ones((10, 10), np.uint8)).save(small)
    assert main(["propagate", str(frames), f"labels={small}", f"out={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "small.png" in err and "10x10" in err and "160x120" in err


def test_propagation_does_not_import_evaluation() -> None:
    """Evaluation builds on propagation, never the reverse: both read features from vidssl.features."""
    import subprocess
    import sys

    code = ("import sys, vidssl.propagation.propagate, vidssl.propagation.masks, vidssl.propagation.keypoints;"
            "print(sorted(m for m in sys.modules if m.startswith('vidssl.evaluation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
