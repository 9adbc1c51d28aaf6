"""A kill at any point of a checkpoint save, the save after a fallback included, leaves a readable one.

The save sequence is the trainer's: :func:`keep_previous` (``last.pt`` hard-linked over
``previous.pt`` through a temporary) then :func:`save_checkpoint` (``last.pt`` written to a
temporary, fsynced, renamed). A forked child runs it and dies with ``os._exit`` (no cleanup, like
``kill -9``) just before or just after the n-th file operation, or halfway through writing the
checkpoint's bytes; the parent then checks what a resume would find.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

from vidssl.engine.checkpoint import keep_previous, load_checkpoint, load_latest, save_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")

OPERATIONS = ("link", "replace", "fsync")  # os functions the sequence goes through, plus torch.save


def state(step: int) -> dict:
    return {"model": {"w": torch.full((64,), float(step))}, "step": step}


def save_dying_at(folder, point: int) -> bool:
    """Run the save sequence of step 3 in a child that dies at ``point``; True if it finished."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            count = 0

            def dying(name, real):
                def call(*args, **kwargs):
                    nonlocal count
                    count += 1
                    if count == point // 2 + 1 and point % 2 == 0:  # before the n-th operation
                        if name == "save":  # halfway through the bytes, as a kill mid-write
                            torch.save = real
                            real(*args, **kwargs)
                            data = open(args[1], "rb").read()
                            open(args[1], "wb").write(data[: len(data) // 2])
                        os._exit(9)
                    result = real(*args, **kwargs)
                    if count == point // 2 + 1:  # just after it
                        os._exit(9)
                    return result
                return call

            for name in OPERATIONS:
                setattr(os, name, dying(name, getattr(os, name)))
            torch.save = dying("save", torch.save)
            keep_previous(folder / "last.pt", folder / "previous.pt")
            save_checkpoint(state(3), folder / "last.pt")
        except BaseException:  # noqa: B036 - any escape from the child would run pytest twice
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 9), f"the child failed ({code}) at point {point}"
    return code == 0


@pytest.mark.parametrize("start", ["normal", "after_fallback"])
def test_a_kill_anywhere_in_a_save_leaves_a_readable_checkpoint(tmp_path, start) -> None:
    """``after_fallback``: ``last.pt`` is damaged (truncated), so the run resumed from ``previous.pt``
    (step 1): linking the damaged file over the good one destroyed the only readable checkpoint."""
    points = 0
    while True:
        folder = tmp_path / f"p{points}"
        folder.mkdir()
        save_checkpoint(state(1), folder / "previous.pt")
        save_checkpoint(state(2), folder / "last.pt")
        if start == "after_fallback":
            raw = (folder / "last.pt").read_bytes()
            (folder / "last.pt").write_bytes(raw[: len(raw) // 3])
        finished = save_dying_at(folder, points)
        found = load_latest(folder)
        assert found is not None, f"no readable checkpoint after a kill at point {points}"
        allowed = {3, 2, 1} if start == "normal" else {3, 1}
        assert found[0]["step"] in allowed
        if start == "after_fallback":  # the good one is never replaced by the damaged one
            assert load_checkpoint(folder / "previous.pt")["step"] == 1
        # and the run goes on: the next save, uninterrupted, leaves two readable checkpoints
        keep_previous(folder / "last.pt", folder / "previous.pt")
        save_checkpoint(state(4), folder / "last.pt")
        assert load_checkpoint(folder / "last.pt")["step"] == 4 and load_latest(folder)[0]["step"] == 4
        if finished:
            break
        points += 1
    assert points >= 8  # the sequence was cut at every operation (link, replace, fsync, save x2)
