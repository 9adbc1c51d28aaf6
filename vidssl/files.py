"""Writing files so that no reader ever sees half of one.

Every file vidssl writes for later (checkpoints, configs, manifests, results, masks, tracks) goes
through :func:`atomic_path`: the content is written to a temporary file in the destination's own
folder (so the final rename never crosses a file system), flushed to disk with ``fsync``, and moved
over the destination with :func:`os.replace`, which readers see as one step. A run killed mid-write
leaves the previous file intact and no ``.partial`` file behind on an ordinary error.
:func:`atomic_folder` does the same for a folder of files (a frame folder), which no single rename
can replace: the old folder is moved aside, the new one into place, then the old one removed.
:func:`exclusive` makes two processes that would write the same outputs (two benchmarks on one
cache) take turns instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; on a clean exit it replaces ``path``.

    The temporary name keeps the destination's suffix (``.x.png.1234.partial.png``) so writers that
    choose a format by extension (PIL, OpenCV, torch) behave as for the real name. On any error the
    temporary file is removed and ``path`` is left as it was. The parent folder is created.

        with atomic_path(out / "mask.png") as tmp:
            Image.fromarray(mask).save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(path, suffix=f".partial{path.suffix}", folder=False)
    mode = tmp.stat().st_mode & 0o777  # the ordinary mode: 0666 less the umask
    try:
        yield tmp
        if tmp.stat().st_mode & 0o777 != mode:  # safetensors writes its own 0600 file over ours
            os.chmod(tmp, mode)
        with open(tmp, "rb") as f:  # data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _new_sibling(path: Path, *, suffix: str, folder: bool) -> Path:
    """Create a new hidden file or folder ``.<name>.<random><suffix>`` next to ``path``.

    Not :func:`tempfile.mkstemp` / ``mkdtemp``: those create mode 0600 / 0700, and the file moved
    into place would keep that, so results, masks and checkpoints would be unreadable to the
    other users of a shared folder. Created here with the ordinary mode (0666 / 0777 less the
    umask), exclusively, so two writers never share a temporary.
    """
    for _ in range(100):
        candidate = path.with_name(_short(f".{path.name}", f".{secrets.token_hex(4)}{suffix}"))
        try:
            if folder:
                candidate.mkdir()
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


NAME_MAX = 255  # bytes in one file name on every file system vidssl writes to (ext4, xfs, btrfs, tmpfs, APFS)


def _short(head: str, tail: str) -> str:
    """``head + tail``, with ``head`` cut so the name fits in :data:`NAME_MAX` bytes.

    A legal 240-byte file name plus the temporary's ``.<random>.partial.png`` would be over the limit
    (``OSError: File name too long``). The name is cut in bytes of the file system's encoding, so a
    non-UTF-8 name (kept by Python as surrogate escapes) and a multi-byte character cut in half both
    round-trip: a half character becomes an escaped byte, never an error."""
    room = NAME_MAX - len(os.fsencode(tail))
    raw = os.fsencode(head)
    return (head if len(raw) <= room else os.fsdecode(raw[:room])) + tail


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """An empty temporary folder next to ``path`` to fill; on a clean exit it replaces ``path``.

    A folder cannot be swapped in one step: an existing ``path`` is first renamed to a hidden
    ``.<name>.old`` sibling, the new folder renamed into place, and the old one deleted, so a
    reader sees the old folder or the new one, or (for an instant) neither, never a mix. On any
    error the temporary folder is removed and ``path`` is left as it was. Files inside are not
    fsynced one by one (a frame folder holds thousands), so the guarantee covers a killed process,
    not a power cut.

        with atomic_folder(out / "frames") as tmp:
            for i, frame in enumerate(frames):
                Image.fromarray(frame).save(tmp / f"{i:05d}.jpg")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(path, suffix=".partial", folder=True)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(_short(f".{path.name}", ".old"))
            shutil.rmtree(old, ignore_errors=True)  # left by a run killed mid-swap
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``. Surrogate escapes (the bytes of a
    file name that is not UTF-8) are written as those bytes, as the file system gave them."""
    return atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))  # a non-UTF-8 file name, byte for byte


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (trailing newline) to ``path`` atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def shown(name: str | os.PathLike[str]) -> str:
    """``name`` safe to print: a file name that is not valid UTF-8 (Python keeps its bytes as
    surrogate escapes) made printable with U+FFFD where the bad bytes were; the real name is kept for
    every file operation and record."""
    return os.fsencode(name).decode("utf-8", "replace")


def stale_partials(folder: str | os.PathLike[str]) -> list[Path]:
    """The temporary files and folders :func:`atomic_path` / :func:`atomic_folder` left directly in
    ``folder`` when a process was killed mid-write (``kill -9`` runs no cleanup). Only the owner of
    the folder should remove them: a live writer's temporary looks the same."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile(r"^\..+\.[0-9a-f]{8}\.partial(\.[^/]*)?$")
    return sorted(p for p in folder.iterdir() if pattern.match(p.name))


@contextlib.contextmanager
def exclusive(lock: str | os.PathLike[str], waiting: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold an OS lock on the file ``lock`` for the block; while another process holds it, log
    ``waiting`` once and wait, or with ``wait=False`` run the block at once without the lock,
    yielding False (True: held). The OS releases it when its holder exits, even by ``kill -9``, so a
    crashed holder never blocks a later run. The lock file stays (an empty file; it is hidden where
    callers name it ``.NAME.lock``). Where the OS has no ``flock`` (Windows) the block runs unlocked.

        with exclusive(out / ".score.lock", "scored by another process", wait=False) as held:
            if not held:
                ...  # do something else first
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            busy = False
        except BlockingIOError:
            busy = True
        if busy and not wait:
            yield False
            return
        if busy:
            log.warning("%s", waiting)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
