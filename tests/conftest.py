"""Shared fixtures: tiny generated videos (no real data needed).

Plain helpers (frames that draw their index, the path of the optional shared data) live in
``tests/testdata.py``: test modules import them from there. ``from conftest import ...`` would
break as soon as a test folder has a conftest.py of its own (``tests/tracking`` does), because
each conftest.py outside a package replaces ``sys.modules["conftest"]``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import index_frame


@pytest.fixture(scope="session")
def index_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Videos of 70 frames whose frames encode their index: a long GOP with B-frames (hard
    random access), a short GOP, and the same frames as a JPEG folder."""
    from vidssl.data.video_writer import write_frame_folder, write_video

    root = tmp_path_factory.mktemp("index_videos")
    frames = [index_frame(i) for i in range(70)]
    out = {"long_gop": root / "long_gop.mp4", "short_gop": root / "short_gop.mp4", "frames": root / "frames"}
    write_video(out["long_gop"], frames, 25.0, crf=12, bframes=3)
    write_video(out["short_gop"], frames, 25.0, crf=12, keyint=8)
    write_frame_folder(out["frames"], frames, quality=98)
    return out


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic set (3 videos x 24 frames, 160x120) with its ground truth."""
    from vidssl.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(num_videos=3, num_frames=24, height=120, width=160, seed=1), progress=False)
    return out


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Index manifests go to a per-test folder, never to the user's cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("VIDSSL_CACHE_DIR", str(path))
    return path
