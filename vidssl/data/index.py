"""Index a folder of videos: which files are usable, and their frames, fps and size.

A scan walks the folder recursively for the files a backend reads (mp4, avi, mkv, webm, mov, m4v,
and whatever a registered backend adds) and frame folders (a folder holding images, DAVIS / JHMDB
style), probes each one with the backend that will read it
(:meth:`~vidssl.data.backends.Backend.probe`: the ``backend=`` training reads with, ``auto``'s
choice per file by default), and writes a manifest into a cache folder (never into the data
folder, which may be read-only). The next scan reuses every entry whose file size, modification
time and backend are unchanged, so a second start costs a ``stat`` per file. Unusable files
(unreadable, no frames, shorter than the sampler's window, no installed backend reads them) are
reported in one summary line and left out; they never stop a scan.

Folders named ``Annotations`` are skipped: in the DAVIS layout they hold label masks, not video.

Links are followed, but never in circles: a folder reached twice (``dirloop/up -> ..``) is walked
once, and a broken link or a link loop is reported under its own name with that reason. A damaged
file whose header promises more frames than it holds (a truncated mp4 with its index at the front)
is counted by the frames that really decode (PyAV's probe).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from vidssl.data.backends import (
    BACKENDS,
    IMAGE_EXTENSIONS,
    VideoReadError,
    resolve_backend,
)
from vidssl.files import atomic_write_json

# 2: damaged files counted by the frames that decode, rotated videos' shown size; 3: probed by the
# backend that reads the file (stored per entry)
MANIFEST_VERSION = 3
SKIP_FOLDERS = frozenset({"Annotations", "__MACOSX"})


@dataclass(frozen=True)
class VideoInfo:
    """One usable video. ``path`` is absolute; ``is_frames`` marks a frame folder."""

    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    is_frames: bool = False

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass
class VideoIndex:
    """The usable videos of a folder, plus what was left out and why."""

    root: Path
    videos: list[VideoInfo]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    too_short: list[str] = field(default_factory=list)
    min_frames: int = 1

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def total_frames(self) -> int:
        return sum(v.num_frames for v in self.videos)

    def summary(self) -> str:
        """One line: what is usable and, if anything was skipped, how many and the first names."""
        line = f"{len(self.videos)} videos ({self.total_frames:,} frames) in {self.root}"
        skipped = []
        if self.unreadable:
            names = ", ".join(f"{Path(p).name} ({why})" for p, why in self.unreadable[:3])
            more = " ..." if len(self.unreadable) > 3 else ""
            skipped.append(f"{len(self.unreadable)} unreadable: {names}{more}")
        if self.too_short:
            names = ", ".join(Path(p).name for p in self.too_short[:3])
            more = " ..." if len(self.too_short) > 3 else ""
            skipped.append(f"{len(self.too_short)} shorter than {self.min_frames} frames: {names}{more}")
        return line + ("; skipped " + "; ".join(skipped) if skipped else "")


def default_cache_dir() -> Path:
    """``$VIDSSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/vidssl``, else ``~/.cache/vidssl``."""
    if "VIDSSL_CACHE_DIR" in os.environ:
        return Path(os.environ["VIDSSL_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vidssl"


def walk(root: Path):
    """``os.walk(root, followlinks=True)`` that enters every real folder once: a link back up
    (``dirloop/up -> ..``) or a second link to the same folder is not followed again. Hidden
    folders and :data:`SKIP_FOLDERS` are skipped; subfolders come sorted."""
    seen: set[tuple[int, int]] = set()
    with contextlib.suppress(OSError):
        st = os.stat(root)
        seen.add((st.st_dev, st.st_ino))
    for folder, subdirs, files in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(subdirs):
            if d in SKIP_FOLDERS or d.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(folder, d))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                keep.append(d)
        subdirs[:] = keep
        yield folder, subdirs, files


def video_suffixes(backend: str = "auto") -> frozenset[str]:
    """File suffixes a scan lists: those ``backend`` reads (``auto``: any registered backend),
    images excepted: in a video folder images are the frames of frame folders."""
    names = BACKENDS if backend == "auto" else [backend]
    return frozenset(s for n in names for s in BACKENDS[n].extensions) - frozenset(IMAGE_EXTENSIONS)


def find_videos(root: Path, *, backend: str = "auto") -> list[Path]:
    """Video files and frame folders below ``root`` (sorted) that ``backend`` reads (``auto``: any
    backend); ``root`` itself may be either. Broken links and link loops with a video's name are
    listed too, so the scan reports them."""
    root = Path(root)
    if root.is_file():
        return [root]
    suffixes = video_suffixes(backend)
    folders = any(b.folders for b in BACKENDS.values()) if backend == "auto" else BACKENDS[backend].folders
    found = []
    for folder, _, files in walk(root):
        here = Path(folder)
        # hidden files are never videos: a temporary that a killed writer left (.clip.mp4.1a2b3c4d.partial.mp4)
        found += [here / f for f in files if Path(f).suffix.lower() in suffixes and not f.startswith(".")]
        if folders and any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files):
            found.append(here)
    return sorted(found)


def _key(path: Path) -> str:
    """A video's manifest key: its real path, or its own path when it cannot be resolved (a broken
    link or a link loop is reported under its own name, not its target's)."""
    try:
        return str(path.resolve(strict=True))
    except (OSError, RuntimeError):  # RuntimeError: a link loop on Python < 3.13
        return str(path.absolute())


def _link_problem(path: Path) -> str | None:
    """Why a path that is a symbolic link cannot be read, or None."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"broken symbolic link (to {os.readlink(path)})"
    return None


def _signature(path: Path) -> list[int]:
    """What must be unchanged for a cached probe to stay valid."""
    st = path.stat()
    if path.is_dir():  # a folder's mtime changes when frames are added or removed
        return [st.st_mtime_ns, len(os.listdir(path))]
    return [st.st_mtime_ns, st.st_size]


def probe(path: Path, *, backend: str = "auto") -> VideoInfo:
    """Frames, fps and shown size of a video file or frame folder, probed by the backend that will
    read it (``backend``, or ``auto``'s choice for this path), which checks that its first frame
    decodes.

    Raises:
        VideoReadError: naming the file and what is wrong with it (no installed backend reads it
            included).
    """
    path = Path(path)
    try:
        name = resolve_backend(path, backend)
    except ValueError as err:
        raise VideoReadError(path, str(err)) from err
    if not path.is_dir() and path.stat().st_size == 0:
        raise VideoReadError(path, "empty file")
    info = BACKENDS[name].probe(path)
    return VideoInfo(str(path.resolve()), int(info.num_frames), float(info.fps), int(info.height), int(info.width),
                     is_frames=BACKENDS[name].folders)


def _manifest_path(root: Path, cache_dir: Path) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"index-{root.resolve().name}-{key}.json"


def _probe_entry(path: Path, backend: str) -> dict:
    try:
        return {"info": asdict(probe(path, backend=backend))}
    except VideoReadError as err:
        return {"error": err.reason}
    except OSError as err:  # permission denied, vanished while scanning
        return {"error": str(err)}


def _chosen(path: Path, backend: str) -> str:
    """The backend a probe of ``path`` uses, as stored in its manifest entry ("" if none can)."""
    try:
        return resolve_backend(path, backend)
    except ValueError:
        return ""


def scan(
    root: str | Path,
    *,
    backend: str = "auto",
    min_frames: int = 1,
    cache_dir: Path | None = None,
    refresh: bool = False,
    workers: int = 4,
    progress: bool = True,
) -> VideoIndex:
    """Index every video below ``root``; reuse the cached manifest for unchanged files.

    Args:
        root: a folder (searched recursively), a single video file or a frame folder.
        backend: the backend that will read the videos (``auto``: per file); it finds and probes them.
        min_frames: videos with fewer frames are left out and counted in the summary.
        cache_dir: where the manifest lives (default :func:`default_cache_dir`).
        refresh: ignore the manifest and probe everything again.
        workers: probing threads (FFmpeg releases the GIL while it reads).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``backend`` is unknown or not installed.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    manifest_file = _manifest_path(root, cache_dir or default_cache_dir())
    cached: dict = {}
    if not refresh and manifest_file.exists():
        try:
            data = json.loads(manifest_file.read_text())
            if data.get("version") == MANIFEST_VERSION:
                cached = data["entries"]
        except (json.JSONDecodeError, KeyError):
            cached = {}  # a damaged cache is only a cache: probe again

    if backend != "auto":
        resolve_backend(root, backend)  # unknown or not installed: one line, before any probe
    paths = find_videos(root, backend=backend)
    entries: dict[str, dict] = {}
    todo: list[tuple[str, Path, list[int], str]] = []
    for path in paths:
        key = _key(path)
        try:
            sig = _signature(path)
        except OSError as err:
            entries[key] = {"sig": [], "error": _link_problem(path) or str(err)}
            continue
        name = _chosen(path, backend)  # a cached probe by another backend is probed again
        if key in cached and cached[key].get("sig") == sig and cached[key].get("backend") == name:
            entries[key] = cached[key]
        else:
            todo.append((key, path, sig, name))

    if todo:
        bar = tqdm(total=len(todo), desc=f"indexing {root.name}", unit="video", disable=not progress, leave=False)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            probed = pool.map(lambda t: _probe_entry(t[1], t[3] or backend), todo)
            for (key, _, sig, name), entry in zip(todo, probed, strict=True):
                entries[key] = {"sig": sig, "backend": name, **entry}
                bar.update()
        bar.close()
        manifest = {"version": MANIFEST_VERSION, "root": str(root.resolve()), "entries": entries}
        atomic_write_json(manifest_file, manifest, indent=None)

    return _build_index(root, entries, min_frames)


def _build_index(root: Path, entries: dict[str, dict], min_frames: int) -> VideoIndex:
    videos, unreadable, too_short = [], [], []
    for key in sorted(entries):
        entry = entries[key]
        if "error" in entry:
            unreadable.append((key, entry["error"]))
            continue
        info = VideoInfo(**entry["info"])
        if info.num_frames >= min_frames:
            videos.append(info)
        else:
            too_short.append(key)
    return VideoIndex(root, videos, unreadable, too_short, min_frames)



def scan_images(root: str | Path, *, workers: int = 4, progress: bool = True) -> VideoIndex:
    """Index an image folder (torchvision ``ImageFolder`` layout or flat; searched recursively,
    labels ignored): every image is a one-frame "video", so image-level methods train on it
    through the same loader. Only image headers are read; an unreadable image is reported in the
    summary and left out. The ``image`` backend reads them, and probes them.
    """
    image = BACKENDS["image"]
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    files = sorted(
        Path(folder) / f
        for folder, _, names in walk(root)
        for f in names
        if Path(f).suffix.lower() in image.extensions and not Path(f).name.startswith(".")
    )

    def header(path: Path) -> VideoInfo | tuple[str, str]:
        try:
            info = image.probe(path)
        except VideoReadError as err:
            return (str(path), err.reason)
        return VideoInfo(str(path.resolve()), info.num_frames, info.fps, info.height, info.width)

    videos, unreadable = [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for result in tqdm(pool.map(header, files), total=len(files), desc=f"indexing {root.name}", unit="image",
                           disable=not progress, leave=False):
            (videos if isinstance(result, VideoInfo) else unreadable).append(result)
    return VideoIndex(root, videos, unreadable)


def name_hash_order(path: str | Path) -> tuple[str, str]:
    """The sort key of the by-name video choices (held-out videos, the val videos of
    ``vidssl tracks crops``): the SHA-1 of the file name, then the path for equal names. It depends
    on the name alone, so the same videos are chosen on every machine and in any listing order."""
    return hashlib.sha1(Path(path).name.encode()).hexdigest(), str(path)


def held_out(videos: list[VideoInfo], count: int) -> list[VideoInfo]:
    """The ``count`` videos kept out of training for the label-free validation signal
    (``vidssl train val_every=``, ``vidssl eval cycle``): those whose file name hashes lowest
    (SHA-1; equal names by path), so the choice depends on the names alone: the same videos for
    every method, seed and machine, whatever order the folder lists them in.

    Raises:
        ValueError: ``count`` leaves no video to train on.
    """
    if count <= 0:
        return []
    if count >= len(videos):
        raise ValueError(f"holding out {count} videos for validation leaves none of the {len(videos)} to train on; "
                         "give val_videos= fewer")
    return sorted(videos, key=lambda v: name_hash_order(v.path))[:count]
