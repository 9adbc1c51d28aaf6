"""Frame-pair loading speed per backend, against the loader a user writes first.

    python tools/bench_loader.py [data=DIR] [workers=2] [size=224] [seconds=20] [rss_samples=10000]

Measures frame-pair samples per second through a DataLoader (``workers`` processes, random crops
of ``size`` px) for every installed backend (PyAV, decord, TorchCodec on the CPU, OpenCV; one that
cannot run here is listed with the reason) on the original files and on a copy made once by
``vidssl prepare`` (short side 256, a keyframe every 8 frames; and JPEG frame folders), against the
baseline: PyAV decoding each file sequentially from its start up to the sampled frames. Also prints
the decode ceiling (sequential decode frames/s of the same files, one process) and the loader's
resident memory (main process plus workers) at start and after ``rss_samples`` samples of the best
setting. With no ``data=`` it generates the synthetic set. The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader, Dataset

from vidssl.config import option, parse_overrides, to_dict
from vidssl.data.backends import BACKENDS, available_backends, output_size
from vidssl.data.datasets import VideoFrameDataset, sample_seed
from vidssl.data.index import VideoInfo, scan
from vidssl.data.prepare import PrepareConfig, prepare
from vidssl.data.samplers import PairSampler
from vidssl.data.transforms import random_crop


@dataclass(frozen=True)
class BenchConfig:
    data: str = option("", "folder of videos (default: generate the synthetic set)")
    out: str = option("", "also write the JSON figures to this file")
    workers: int = option(2, "DataLoader worker processes")
    batch_size: int = option(16, "pairs per batch")
    size: int = option(224, "output crop size")
    decode_size: int = option(256, "short side frames are resized to while decoding (before the crop)")
    max_gap: int = option(30, "largest gap between the two frames of a pair (frames)")
    seconds: float = option(20.0, "time budget of each measurement")
    samples: int = option(2000, "at most this many pairs per measurement")
    rss_samples: int = option(10000, "pairs drawn for the memory measurement")
    prepare: bool = option(True, "also measure on a prepared copy (re-encoded / frame folders)")
    backends: tuple[str, ...] = option((), "backends to measure (default: all installed)")


class SequentialBaseline(Dataset):
    """What a user writes first: open the file with PyAV, decode from the start up to the last
    sampled frame, keep the sampled ones, resize, crop."""

    def __init__(self, videos: list[VideoInfo], sampler: PairSampler, *, decode_size: int, transform) -> None:
        self.videos, self.sampler, self.decode_size, self.transform = videos, sampler, decode_size, transform

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, index: int) -> dict:
        import av
        import cv2

        generator = torch.Generator().manual_seed(sample_seed(0, 0, index))
        info = self.videos[index % len(self.videos)]
        wanted = self.sampler(info.num_frames, info.fps, generator)
        frames = {}
        with av.open(info.path) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    frames[i] = frame.to_ndarray(format="rgb24")
                if i >= max(wanted):
                    break
        h, w = output_size(info.height, info.width, self.decode_size)
        clip = np.stack([cv2.resize(frames[i], (w, h), interpolation=cv2.INTER_AREA) for i in wanted])
        clip = torch.from_numpy(clip).permute(0, 3, 1, 2)
        return {"frames": torch.stack([self.transform(f) for f in clip])}


def loader_rss(loader_iter) -> int:
    """Resident memory of this process plus its DataLoader workers, in bytes."""
    procs = [psutil.Process()] + [psutil.Process(w.pid) for w in getattr(loader_iter, "_workers", [])]
    return sum(p.memory_info().rss for p in procs)


def measure(dataset: Dataset, cfg: BenchConfig, *, samples: int, seconds: float, track_rss: bool = False) -> dict:
    """Pairs/s after the first batch (worker start-up excluded), within a time budget."""
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.workers, shuffle=False,
                        persistent_workers=False, prefetch_factor=4 if cfg.workers else None)
    it = iter(loader)
    next(it)
    rss_start = loader_rss(it) if track_rss else 0
    count, start = 0, time.perf_counter()
    while count < samples and (track_rss or time.perf_counter() - start < seconds):
        count += len(next(it)["frames"])
    elapsed = time.perf_counter() - start
    result = {"pairs_per_s": count / elapsed, "pairs": count, "seconds": elapsed}
    if track_rss:
        rss_end = loader_rss(it)
        result |= {"rss_start_mb": rss_start / 2**20, "rss_end_mb": rss_end / 2**20,
                   "rss_growth": rss_end / rss_start - 1}
    del it
    return result


def decode_ceiling(videos: list[VideoInfo], seconds: float) -> float:
    """Sequential decode frames/s (PyAV, one process, FFmpeg's own threads)."""
    import av

    frames, start = 0, time.perf_counter()
    for info in videos:
        with av.open(info.path) as container:
            container.streams.video[0].thread_type = "AUTO"
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                frames += 1
        if time.perf_counter() - start > seconds:
            break
    return frames / (time.perf_counter() - start)


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchConfig, argv)
    with tempfile.TemporaryDirectory(prefix="vidssl-bench-") as tmp:  # nothing written here outlives the run
        return bench(cfg, Path(tmp))


def bench(cfg: BenchConfig, tmp: Path) -> dict:
    data = Path(cfg.data) if cfg.data else None
    if data is None:
        from vidssl.data.synth import SynthConfig, generate

        generate(tmp / "synth", SynthConfig(), progress=False)
        data = tmp / "synth" / "videos"
    sampler = PairSampler(min_gap=0, max_gap=cfg.max_gap)
    videos = [v for v in scan(data, min_frames=sampler.min_frames(30.0), progress=False).videos if not v.is_frames]
    mean_size = (np.mean([v.height for v in videos]), np.mean([v.width for v in videos]))
    frames = sum(v.num_frames for v in videos)
    print(f"{len(videos)} videos, mean {mean_size[0]:.0f}x{mean_size[1]:.0f}, {frames:,} frames, from {data}")
    transform = random_crop(cfg.size)
    candidates = list(cfg.backends) or ["decord", "pyav", "torchcodec", "opencv"]
    skipped = {b: BACKENDS[b].missing() if b in BACKENDS else "is not a backend" for b in candidates
               if b not in available_backends()}
    for name, why in skipped.items():
        print(f"  {name}: skipped, backend '{name}' {why}")
    backends = [b for b in candidates if b not in skipped]

    rows: dict[str, dict] = {}

    def run(name: str, dataset: Dataset, samples: int | None = None) -> None:
        rows[name] = measure(dataset, cfg, samples=samples or cfg.samples, seconds=cfg.seconds)
        print(f"  {name:<28} {rows[name]['pairs_per_s']:8.1f} pairs/s  ({rows[name]['pairs']} pairs)", flush=True)

    ceiling = decode_ceiling(videos, cfg.seconds)
    print(f"decode ceiling (sequential, PyAV): {ceiling:.0f} frames/s")
    print(f"pairs/s through a DataLoader ({cfg.workers} workers, batch {cfg.batch_size}, {cfg.size}px crops):")
    run("baseline (pyav sequential)",
        SequentialBaseline(videos, sampler, decode_size=cfg.decode_size, transform=transform))

    def dataset(vids: list[VideoInfo], backend: str) -> VideoFrameDataset:
        return VideoFrameDataset(vids, sampler, backend=backend, size=cfg.decode_size, transform=transform,
                                 samples_per_epoch=10**9)

    for backend in backends:
        run(backend, dataset(videos, backend))

    prepare_cost = {}
    if cfg.prepare:
        for fmt, backs in (("mp4", backends), ("frames", ["frames"])):
            pcfg = PrepareConfig(data=str(data), out=str(tmp / f"prepared-{fmt}"), size=cfg.decode_size, format=fmt)
            result = prepare(pcfg, progress=False)
            disk = sum(f.stat().st_size for f in Path(pcfg.out).rglob("*") if f.is_file())
            prepare_cost[fmt] = {"seconds": result.seconds, "frames": result.frames, "disk_mb": disk / 2**20}
            print(f"prepare format={fmt}: {result.seconds:.1f} s once for {result.frames:,} frames, "
                  f"{prepare_cost[fmt]['disk_mb']:.0f} MB on disk", flush=True)
            prepared = [v for v in scan(pcfg.out, progress=False).videos]
            for backend in backs:
                run(f"prepared {fmt} + {backend}", dataset(prepared, backend))

    base = rows["baseline (pyav sequential)"]["pairs_per_s"]
    best = max((k for k in rows if not k.startswith("baseline")), key=lambda k: rows[k]["pairs_per_s"])
    print(f"best: {best}, {rows[best]['pairs_per_s'] / base:.1f}x the baseline")

    best_backend = best.split(" + ")[-1]
    best_videos = prepared_videos = videos
    if best.startswith("prepared"):
        fmt = best.split()[1]
        prepared_videos = scan(tmp / f"prepared-{fmt}", progress=False).videos
        best_videos = prepared_videos
    memory = measure(dataset(best_videos, best_backend), replace(cfg), samples=cfg.rss_samples, seconds=0,
                     track_rss=True)
    print(f"loader memory ({best}): {memory['rss_start_mb']:.0f} MB at start, {memory['rss_end_mb']:.0f} MB after "
          f"{memory['pairs']:,} pairs ({100 * memory['rss_growth']:+.1f}%)")

    figures = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()} {os.cpu_count()} cores",
        "data": str(data),
        "videos": len(videos),
        "mean_size": [round(x) for x in mean_size],
        "config": to_dict(cfg),
        "decode_ceiling_fps": ceiling,
        "pairs_per_s": {k: v["pairs_per_s"] for k, v in rows.items()},
        "skipped_backends": skipped,
        "baseline_pairs_per_s": base,
        "best": best,
        "best_backend": best_backend,
        "speedup_vs_baseline": rows[best]["pairs_per_s"] / base,
        "prepare": prepare_cost,
        "rss_start_mb": memory["rss_start_mb"],
        "rss_end_mb": memory["rss_end_mb"],
        "rss_samples": memory["pairs"],
        "rss_growth": memory["rss_growth"],
    }
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
