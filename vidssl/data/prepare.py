"""One-time preparation of a video folder for fast random access.

Real-world videos often have one keyframe every few seconds, so reading two random frames means
decoding dozens of full-resolution frames. ``prepare`` re-encodes every video of a folder to a short
side of ``size`` pixels with a keyframe every ``keyint`` frames (no B-frames), keeping every frame
and the frame rate, so samplers draw exactly the same frame indices as before: sampling statistics
are unchanged, only cheaper. ``format=frames`` writes JPEG frame folders instead (the fastest random
access, at several times the disk space).

Outputs mirror the input tree; finished videos are skipped, so an interrupted run resumes, and each
output is written under a temporary name and renamed into place (no half-written files).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from vidssl.config import option
from vidssl.data.backends import VideoReadError, open_video, output_size
from vidssl.data.index import scan
from vidssl.data.video_writer import write_frame_folder, write_video


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


def _output_path(src: Path, root: Path, out: Path, fmt: str) -> Path:
    rel = src.relative_to(root) if src != root else Path(src.name)
    return out / (rel.with_suffix(".mp4") if fmt == "mp4" else rel.with_suffix(""))


def prepare(cfg: PrepareConfig, *, progress: bool = True) -> PrepareResult:
    """Re-encode every usable video under ``cfg.data`` into ``cfg.out`` (see module docstring)."""
    if not cfg.data or not cfg.out:
        raise ValueError("prepare needs data=DIR and out=DIR")
    root, out = Path(cfg.data).resolve(), Path(cfg.out)
    if out.resolve() == root:
        raise ValueError("out= must differ from the input folder")
    index = scan(root, progress=progress)
    written, skipped, failed, frames = [], 0, [], 0
    start = time.perf_counter()
    bar = tqdm(index.videos, desc="prepare", unit="video", disable=not progress)
    for info in bar:
        try:
            dst = _output_path(Path(info.path), root, out, cfg.format)
            if dst.exists():
                skipped += 1
                continue
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
            written.append(dst)
        except (VideoReadError, ValueError) as err:
            failed.append((info.path, str(err)))
        bar.set_postfix(frames=frames)
    return PrepareResult(written, skipped, failed + index.unreadable, time.perf_counter() - start, frames)
