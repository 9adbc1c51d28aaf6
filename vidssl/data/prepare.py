"""One-time preparation of a video folder for fast random access.

Real-world videos often have one keyframe every few seconds, so reading two random frames means
decoding dozens of full-resolution frames. ``prepare`` re-encodes every video of a folder to a short
side of ``size`` pixels with a keyframe every ``keyint`` frames (no B-frames), keeping every frame
and the frame rate, so samplers draw exactly the same frame indices as before: sampling statistics
are unchanged, only cheaper. ``format=frames`` writes JPEG frame folders instead (the fastest random
access, at several times the disk space).

Outputs mirror the input tree; each is written under a temporary name and renamed into place (no
half-written files; a temporary left by ``kill -9`` is hidden, and the index never reads hidden
files). Each finished output is recorded in ``OUT/.vidssl-prepare.jsonl`` with its source (path,
size, modification time) and settings: a rerun skips outputs recorded with the same source and
settings (an interrupted run resumes), redoes those made from another source or with other
settings (``size=``, ``keyint=``, ...), and refuses to overwrite a file it has no record of (made by
something else). Sources that would share an output name (``clip.mp4``, ``clip.mkv``) keep their
own: ``clip.mp4`` and ``clip.mkv.mp4``.

Two ``prepare`` runs on one ``out=`` (two benchmarks started together) take turns: the second waits on
``OUT/.vidssl-prepare.lock`` (an OS lock, released when its holder exits, even by ``kill -9``) and
then finds the first one's outputs recorded, instead of encoding every video a second time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from vidssl.config import option
from vidssl.data.backends import VideoReadError, open_video, output_size
from vidssl.data.index import VideoIndex, scan
from vidssl.data.video_writer import write_frame_folder, write_video
from vidssl.files import exclusive

log = logging.getLogger(__name__)

RECORD = ".vidssl-prepare.jsonl"
"""Under ``out=``: one JSON line per finished output, ``{"output", "source", "settings"}``."""
LOCK = ".vidssl-prepare.lock"
"""Under ``out=``: held by the running ``prepare`` (module docstring)."""


@dataclass(frozen=True)
class PrepareConfig:
    data: str = option("", "folder of videos to prepare (searched recursively)")
    out: str = option("", "output folder (mirrors the input tree)")
    size: int = option(256, "short side of the output frames in pixels")
    keyint: int = option(8, "keyframe interval of the re-encoded mp4 (frames)")
    format: Literal["mp4", "frames"] = option("mp4", "mp4 (H.264, compact) or frames (JPEG folders, fastest)")
    crf: int = option(20, "x264 quality (lower is better and larger)")
    quality: int = option(90, "JPEG quality for format=frames")
    chunk: int = option(64, "frames decoded per read while re-encoding")


@dataclass
class PrepareResult:
    written: list[Path]
    skipped: int
    failed: list[tuple[str, str]]
    seconds: float
    frames: int


def _output_names(sources: list[Path], root: Path, out: Path, fmt: str) -> dict[Path, Path]:
    """Each source's output: the mirrored path with ``.mp4`` (or no suffix: a frame folder); sources
    whose outputs would collide (``clip.mp4``, ``clip.mkv``, ``clip.webm``) keep their suffix in the
    name (``clip.mkv.mp4``; frame folders ``clip_mkv``), all but an ``.mp4`` source of mp4 output."""

    def plain(src: Path) -> Path:
        rel = src.relative_to(root) if src != root else Path(src.name)
        return out / (rel.with_suffix(".mp4") if fmt == "mp4" else rel.with_suffix(""))

    taken: dict[Path, int] = {}
    for src in sources:
        taken[plain(src)] = taken.get(plain(src), 0) + 1
    names = {}
    for src in sources:
        dst = plain(src)
        if taken[dst] > 1 and not (fmt == "mp4" and src.suffix.lower() == ".mp4"):
            dst = dst.with_name(f"{src.name}.mp4" if fmt == "mp4" else f"{src.stem}_{src.suffix.lstrip('.')}")
        names[src] = dst
    return names


def _source_record(src: Path, root: Path) -> dict[str, object]:
    st = os.stat(src)
    size = st.st_size if src.is_file() else sum(1 for _ in src.iterdir())  # a frame folder: its file count
    rel = src.relative_to(root) if src != root else Path(src.name)
    return {"path": rel.as_posix(), "size": size, "mtime_ns": st.st_mtime_ns}


def _read_records(out: Path) -> dict[str, dict]:
    """The newest record of each output (a line cut short by a kill is ignored)."""
    records: dict[str, dict] = {}
    path = out / RECORD
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        try:
            entry = json.loads(line)
            records[entry["output"]] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return records


def _append_record(out: Path, entry: dict) -> None:
    """Append one line and fsync it: a kill leaves every finished output recorded."""
    with open(out / RECORD, "a", encoding="utf-8", errors="surrogateescape") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _settings(cfg: PrepareConfig) -> dict[str, object]:
    """The keys that change an output (``chunk`` only changes how it is read)."""
    settings = asdict(cfg)
    return {k: settings[k] for k in ("size", "keyint", "format", "crf", "quality")}


def prepare(cfg: PrepareConfig, *, progress: bool = True) -> PrepareResult:
    """Re-encode every usable video under ``cfg.data`` into ``cfg.out`` (see module docstring)."""
    if not cfg.data or not cfg.out:
        raise ValueError("prepare needs data=DIR and out=DIR")
    root, out = Path(cfg.data).resolve(), Path(cfg.out)
    if out.resolve() == root:
        raise ValueError("out= must differ from the input folder")
    index = scan(root, progress=progress)  # a bad data= fails here, before out= is made
    with exclusive(out / LOCK, f"prepare: {out} is being prepared by another process; waiting for it to finish"):
        return _prepare(cfg, index, root, out, progress=progress)


def _prepare(cfg: PrepareConfig, index: VideoIndex, root: Path, out: Path, *, progress: bool) -> PrepareResult:
    names = _output_names([Path(info.path) for info in index.videos], root, out, cfg.format)
    records = _read_records(out)
    settings = _settings(cfg)
    written, skipped, failed, frames = [], 0, [], 0
    start = time.perf_counter()
    bar = tqdm(index.videos, desc="prepare", unit="video", disable=not progress)
    for info in bar:
        try:
            src = Path(info.path)
            dst = names[src]
            key = dst.relative_to(out).as_posix()
            source = _source_record(src, root)
            if dst.exists():
                record = records.get(key)
                if record is None:
                    raise ValueError(f"{dst}: exists and was not written by vidssl prepare; left as it is "
                                     "(remove it, or choose another out=)")
                if record.get("source") == source and record.get("settings") == settings:
                    skipped += 1
                    continue
                what = "source" if record.get("source") != source else ", ".join(
                    f"{k}={record.get('settings', {}).get(k)} -> {v}" for k, v in settings.items()
                    if record.get("settings", {}).get(k) != v)
                log.info("prepare: %s was made with another %s; redoing it", dst, what)
            dst.parent.mkdir(parents=True, exist_ok=True)
            # H.264 in yuv420p needs even sides.
            height, width = (max(2, 2 * round(n / 2)) for n in output_size(info.height, info.width, cfg.size))
            reader = open_video(info.path, size=(height, width))
            chunks = (
                reader.get_frames(range(i, min(i + cfg.chunk, reader.num_frames)))
                for i in range(0, reader.num_frames, cfg.chunk)
            )
            stream = (frame for chunk in chunks for frame in chunk)
            if cfg.format == "mp4":
                frames += write_video(dst, stream, reader.fps or info.fps, crf=cfg.crf, keyint=cfg.keyint)
            else:
                frames += write_frame_folder(dst, stream, quality=cfg.quality)
            reader.close()
            _append_record(out, {"output": key, "source": source, "settings": settings})
            written.append(dst)
        except (VideoReadError, ValueError) as err:
            failed.append((info.path, str(err)))
        bar.set_postfix(frames=frames)
    return PrepareResult(written, skipped, failed + index.unreadable, time.perf_counter() - start, frames)
