"""The training data pipeline (vidssl.data.pipeline): index -> dataset -> this rank's loader -> device."""

from __future__ import annotations

import pytest
import torch

from vidssl.data.pipeline import SampleRange, build_loader
from vidssl.data.samplers import PairSampler
from vidssl.data.spec import DataSpec
from vidssl.distributed import DistInfo

CPU = torch.device("cpu")


def loader(synth_dir, **kw):
    args = dict(data=synth_dir / "videos", spec=DataSpec(PairSampler(min_gap=0, max_gap=4)), device=CPU,
                dist=DistInfo(), decode_size=56, image_size=32, batch_size=2, seed=3, steps=3)
    return build_loader(**{**args, **kw})


def test_ranks_share_one_stream_without_overlap() -> None:
    one = list(SampleRange(first_micro_batch=0, num_micro_batches=3, batch_size=2, dist=DistInfo()))
    assert one == [0, 1, 2, 3, 4, 5]
    ranks = [list(SampleRange(first_micro_batch=1, num_micro_batches=2, batch_size=2, dist=DistInfo(r, 2, r)))
             for r in range(2)]
    assert ranks == [[4, 5, 8, 9], [6, 7, 10, 11]]  # global micro-batch m = samples [4m, 4m+4)


def test_a_resumed_loader_yields_the_tail_of_the_full_one(synth_dir, cache_dir) -> None:
    full = loader(synth_dir, accum=2)
    assert full.index.summary().startswith("3 videos")
    batches = list(full.loader)
    assert len(batches) == 3 * 2 and batches[0]["frames"].shape == (2, 2, 3, 32, 32)
    tail = list(loader(synth_dir, accum=2, first_step=2).loader)
    assert len(tail) == 2
    for a, b in zip(batches[4:], tail, strict=True):
        assert torch.equal(a["frames"], b["frames"])


@pytest.mark.parametrize("color_on", ["loader", "device"])
def test_colour_runs_where_asked(synth_dir, cache_dir, color_on: str) -> None:
    data = loader(synth_dir, color_on=color_on)
    assert data.device_color == (color_on == "device")
    batch = next(iter(data.loader))
    assert data.images_in(batch) == 2 * 2
    moved = data.to_device(batch, step=0, micro=0)
    if color_on == "device":  # augmented on the device: float in [0, 1], repeatable per (step, micro-batch)
        assert moved["frames"].dtype == torch.float32 and 0 <= moved["frames"].min() <= moved["frames"].max() <= 1
        again = data.to_device(batch, step=0, micro=0)["frames"]
        assert torch.equal(moved["frames"], again)
        assert not torch.equal(moved["frames"], data.to_device(batch, step=1, micro=0)["frames"])
    else:
        assert torch.equal(moved["frames"], batch["frames"])


def test_nothing_usable_is_one_line(tmp_path, cache_dir) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no usable videos"):
        loader(tmp_path, data=tmp_path / "empty")
