"""Map-style frame datasets: reproducible samples, augmentation modes, and bad files mid-run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from testdata import read_index
from torch.utils.data import DataLoader

from vidssl.data.datasets import VideoFrameDataset
from vidssl.data.index import VideoInfo, scan
from vidssl.data.samplers import ClipSampler, PairSampler, ReferenceTargetSampler, SequenceSampler
from vidssl.data.transforms import random_crop


def test_items_match_their_indices(index_videos, cache_dir) -> None:
    videos = scan(index_videos["short_gop"], progress=False).videos
    samplers = (PairSampler(min_gap=2, max_gap=9), SequenceSampler(length=4, stride=3), ReferenceTargetSampler(),
                ClipSampler(length=5))
    for sampler in samplers:
        ds = VideoFrameDataset(videos, sampler, samples_per_epoch=6)
        for i in range(len(ds)):
            item = ds[i]
            assert item["frames"].dtype == torch.uint8 and item["frames"].shape[1:] == (3, 96, 128)
            decoded = [read_index(f.permute(1, 2, 0).numpy()) for f in item["frames"]]
            assert decoded == item["indices"].tolist()


def test_samples_depend_on_seed_epoch_index_only(synth_dir: Path, cache_dir) -> None:
    videos = scan(synth_dir / "videos", progress=False).videos
    ds = VideoFrameDataset(videos, PairSampler(max_gap=10), transform=random_crop(64), samples_per_epoch=8, seed=3)
    by_workers = []
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=4, num_workers=workers)
        by_workers.append([b["frames"] for b in loader])
    assert all(torch.equal(a, b) for a, b in zip(*by_workers, strict=True))  # worker count does not matter
    first = ds[5]["frames"]
    ds.set_epoch(1)
    assert not torch.equal(first, ds[5]["frames"])  # a new epoch draws new samples
    ds.set_epoch(0)
    assert torch.equal(first, ds[5]["frames"])  # and epoch 0 again gives the same ones


def test_independent_vs_consistent_augmentation(synth_dir: Path, cache_dir) -> None:
    videos = scan(synth_dir / "videos", progress=False).videos
    sampler = PairSampler(min_gap=0, max_gap=0)  # the same frame twice
    independent = VideoFrameDataset(videos, sampler, transform=random_crop(48))
    consistent = VideoFrameDataset(videos, sampler, transform=random_crop(48), consistent=True)
    assert any(not torch.equal(*independent[i]["frames"]) for i in range(len(videos)))
    assert all(torch.equal(*consistent[i]["frames"]) for i in range(len(videos)))


def test_file_failing_while_sampling_is_skipped(tmp_path: Path, index_videos, cache_dir, caplog) -> None:
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(index_videos["short_gop"], tmp_path / name)
    videos = scan(tmp_path, progress=False).videos
    (tmp_path / "b.mp4").write_bytes(b"\x00" * 1000)  # damaged after indexing
    videos.append(VideoInfo(str(tmp_path / "gone.mp4"), 70, 25.0, 96, 128))  # deleted after indexing
    ds = VideoFrameDataset(videos, PairSampler(max_gap=5), samples_per_epoch=40)
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]  # the epoch completes
    assert len(items) == 40
    bad = {i for i, v in enumerate(ds.videos) if Path(v.path).name in ("b.mp4", "gone.mp4")}
    assert ds.excluded == bad and not {it["video"] for it in items} & bad
    warnings = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(warnings) == 2 and any("b.mp4" in w for w in warnings)  # reported once each


def test_too_short_videos_are_left_out(index_videos, cache_dir) -> None:
    videos = scan(index_videos["short_gop"], progress=False).videos
    ds = VideoFrameDataset([*videos, VideoInfo("/x/short.mp4", 3, 25.0, 96, 128)], SequenceSampler(length=4, stride=2))
    assert len(ds.videos) == 1 and ds.too_short == 1


def test_a_failing_file_is_reported_once_per_run_not_per_worker(tmp_path: Path, index_videos, capfd) -> None:
    """Issue 13: a file failing during sampling was reported by every DataLoader worker that met it."""
    import sys

    good = tmp_path / "good.mp4"
    shutil.copy(index_videos["short_gop"], good)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)  # damaged after indexing
    videos = [VideoInfo(str(good), 70, 25.0, 96, 128), VideoInfo(str(bad), 70, 25.0, 96, 128)]
    ds = VideoFrameDataset(videos, PairSampler(max_gap=5), samples_per_epoch=16, size=32)
    handler = logging.StreamHandler(sys.stderr)  # workers write to the inherited stderr
    logger = logging.getLogger("vidssl.data.datasets")
    logger.addHandler(handler)
    try:
        batches = list(DataLoader(ds, batch_size=2, num_workers=2))  # each worker meets bad.mp4
    finally:
        logger.removeHandler(handler)
    assert len(batches) == 8
    err = capfd.readouterr().err
    assert err.count(f"skipping {bad}") == 1, err
