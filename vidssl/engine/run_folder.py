"""A training run's folder: what vidssl wrote there, who is using it, and how a run stops.

* **Marker** (``OUT/.vidssl-run.json``): written before anything else of a run, it says vidssl
  made the folder and lists the files a run owns (:data:`RUN_FILES`). ``overwrite=true`` removes
  exactly those and refuses a folder without the marker whose files vidssl cannot read as its own
  (a user's ``config.yaml``, ``checkpoints/``, ``tb/``): nothing it did not write is ever deleted.
  Folders of releases before the marker are recognised by a ``config.yaml`` that reads as a vidssl
  config.
* **A start that never reached a checkpoint** (a mistyped encoder, a crash before the first save)
  holds nothing to resume: the next start replaces it, and ``resume=true`` starts with the settings
  given instead of the failed ones.
* **Lock** (``OUT/.vidssl-lock``: pid, host, start time): one process trains in a folder at a time.
  A second ``train`` into it is refused; a lock whose process is gone (same host, no such pid) is
  taken over with a message. Taken before anything is written or removed, so a second resume can no
  longer delete a live run's checkpoint temporary as "left by an interrupted write".
* **Graceful stop** (:class:`GracefulStop`): SIGTERM (schedulers, preemption) or SIGINT (Ctrl-C)
  lets the current step finish, a checkpoint is written, and the run ends with one line and exit
  status 128 + the signal (143, 130); a second signal stops at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from vidssl.config import ConfigError
from vidssl.files import atomic_write_json

log = logging.getLogger(__name__)

MARKER = ".vidssl-run.json"
LOCK = ".vidssl-lock"
RUN_FILES = ("config.yaml", "log.jsonl", "encoder.safetensors", "checkpoints", "tb", "val.jsonl", "best", "snapshots")
"""What a run owns besides its data (``synth/``): ``overwrite=true`` removes exactly these."""
CHECKPOINTS = ("checkpoints/last.pt", "checkpoints/previous.pt")


def has_checkpoint(out: Path) -> bool:
    return any((out / name).exists() for name in CHECKPOINTS)


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run worth keeping: a checkpoint or a finished encoder."""
    return has_checkpoint(out) or (out / "encoder.safetensors").exists()


def run_files(out: Path) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``out``."""
    return [name for name in RUN_FILES if (out / name).exists()]


def written_by_vidssl(out: Path) -> bool:
    """``out`` carries vidssl's marker, or (a run of a release before the marker) a ``config.yaml``
    that reads as a vidssl run config."""
    if (out / MARKER).is_file():
        return True
    if not (out / "config.yaml").is_file():
        return False
    import yaml

    try:
        saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if not isinstance(saved, dict):
        return False
    if isinstance(saved.get("train"), dict) and isinstance(saved.get("method"), dict):  # this layout
        return {"method", "steps", "out", "encoder"} <= set(saved["train"])
    return {"method", "steps", "out", "encoder", "batch_size"} <= set(saved)  # release 0.1's flat one


def check_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """The run-folder rules before anything is written (see the module docstring).

    Raises:
        ConfigError: ``out`` is a file; holds files vidssl did not write; or holds a run and neither
            ``resume`` nor ``overwrite`` is given.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out}: is a file, not a run folder")
    present = run_files(out) if out.is_dir() else []
    if present and not written_by_vidssl(out):
        raise ConfigError(f"{out}: holds {', '.join(present)} that vidssl did not write (no {MARKER}); it trains "
                          "only into its own run folders and never replaces other files: choose another out=")
    if not resume and holds_run(out) and not overwrite:
        raise ConfigError(f"{out}: already holds a training run; continue it with resume=true, or replace it "
                          f"with overwrite=true (or choose another out=)")


def mark(out: Path) -> None:
    """Write the marker (once): vidssl made this run folder, and which files a run owns."""
    if not (out / MARKER).is_file():
        from vidssl import __version__

        atomic_write_json(out / MARKER, {"written_by": "vidssl", "version": __version__, "files": list(RUN_FILES),
                                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def clear_run(out: Path, *, why: str) -> None:
    """Remove the run files of ``out`` (only after :func:`check_folder` found them vidssl's)."""
    removed = []
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        log.warning("%s: removed %s from %s", why, ", ".join(removed), out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class RunLock:
    """``OUT/.vidssl-lock``, created exclusively; see the module docstring."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                self._check_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise ConfigError(f"{self.path.parent}: could not take the run lock {self.path}")

    def _check_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError, KeyError, TypeError):
            owner, pid, host = {}, -1, ""
        if pid == -1 or (host == socket.gethostname() and not _alive(pid)):  # unreadable, or its process is gone
            log.warning("%s: taking over the lock of a run that is no longer running (pid %s on %s)", self.path.parent,
                        pid if pid != -1 else "?", host or "?")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        raise ConfigError(f"{self.path.parent}: in use by another vidssl run (pid {pid} on {host}, since "
                          f"{owner.get('started', '?')}); wait for it, or if it is no longer running remove "
                          f"{self.path}")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class TrainingStopped(Exception):
    """A run stopped by a signal after its checkpoint was written; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint} (step {step})" if checkpoint else f"no checkpoint (step {step})"
        super().__init__(f"stopped by {name} after step {step}; {where}; continue with resume=true")


class GracefulStop:
    """SIGTERM / SIGINT handlers for the loop: the first asks it to stop after the current step,
    the second stops at once (the signal's default action: SIGINT raises KeyboardInterrupt).
    Installed only in the main thread (Python delivers signals there); a no-op elsewhere."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: at once
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.signum = signum
        log.warning("%s: finishing this step, then writing a checkpoint (send it again to stop at once)",
                    signal.Signals(signum).name)

    def requested(self, *, distributed: bool = False, device: Any = None) -> int | None:
        """The signal that asked to stop, or None; with ``distributed``, any rank's (so every rank
        stops after the same step and the collectives stay matched)."""
        if not distributed:
            return self.signum
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self.signum or 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    def install(self) -> None:
        """Take over SIGTERM and SIGINT (from the main thread only; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread() and not self._previous:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Give the signals back to the handlers they had before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> GracefulStop:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
