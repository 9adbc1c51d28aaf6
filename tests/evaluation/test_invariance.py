"""The invariance measure (Purushwalkam & Gupta 2020, arXiv:2007.13916) and ``vidssl eval invariance``.

The evidence is constructed encoders whose invariances are known by design: one that cannot see
what a transformation changes scores exactly 1, one that reads those pixels scores clearly lower.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vidssl.cli import main
from vidssl.evaluation.invariance import (
    ILLUMINATIONS,
    TRANSFORMATIONS,
    build_labelled_sets,
    build_sets,
    crop_object,
    firing_thresholds,
    invariance_scores,
    measure_invariance,
    occlude,
    paper_scores,
    score_sets,
    square_box,
    top_k_mean,
    tracks_from_folder,
    tracks_from_synth,
)
from vidssl.features import pooled_features


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 short videos: enough tracks for every transformation, including two objects of a class."""
    from vidssl.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth_invariance")
    generate(out, SynthConfig(num_videos=4, num_frames=16, height=96, width=128), progress=False)
    return out


class PixelProjection(nn.Module):
    """Features = a fixed random projection of the pixels where ``region`` is 1 (B, 3, S, S) ->
    (B, out_dim); with ``binarize`` each channel is first reduced to "above its own mid-range",
    which no brightness, contrast or per-channel gain change can alter on a two-level image."""

    def __init__(self, size: int, *, region: torch.Tensor | None = None, binarize: bool = False) -> None:
        super().__init__()
        self.out_dim = 32
        self.binarize = binarize
        self.register_buffer("region", torch.ones(size, size) if region is None else region)
        weight = torch.randn(3 * size * size, self.out_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.binarize:
            low, high = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
            x = (x > (low + high) / 2).float()
        return (x * self.region).flatten(1) @ self.weight


def _smooth_images(n: int, size: int, *, seed: int) -> torch.Tensor:
    """(n, 3, size, size) uint8 smooth random colour images."""
    coarse = torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (255 * smooth).round().to(torch.uint8)


def _two_level_images(n: int, size: int, *, seed: int) -> torch.Tensor:
    """(n, 3, size, size) uint8: a random blob pattern in one colour over another, every value in
    60..170 and the two levels 20 or more apart per channel, so no change of ILLUMINATIONS clips
    or merges them."""
    rng = np.random.default_rng(seed)
    field = torch.from_numpy(rng.standard_normal((n, 1, 6, 6))).float()
    pattern = F.interpolate(field, size=(size, size), mode="bilinear") > 0
    low = torch.from_numpy(rng.integers(60, 130, (n, 3, 1, 1)))
    high = low + torch.from_numpy(rng.integers(20, 41, (n, 3, 1, 1)))
    return torch.where(pattern, high, low).to(torch.uint8)


def test_thresholds_give_the_requested_global_firing_rate() -> None:
    features = torch.randn(1000, 16, generator=torch.Generator().manual_seed(0))
    for rate in (0.01, 0.05, 0.2):
        fires = features > firing_thresholds(features, rate=rate)
        assert fires.sum(dim=0).tolist() == [round(rate * 1000)] * 16


def test_thresholds_keep_equal_responses_together_and_skip_silent_neurons() -> None:
    features = torch.zeros(100, 3)
    features[:, 0] = torch.arange(100.0)
    # The top 10 responses are equal up to float noise: at rate 0.05 all 10 fire, not 5.
    features[90:, 0] = 200.0 + 1e-5 * torch.arange(10.0)
    features[:, 1] = 7.0  # constant: never fires
    features[3, 2] = 1.0  # a ReLU unit silent on 99 images: fires on its one active image only
    fires = features > firing_thresholds(features, rate=0.05)
    assert fires.sum(dim=0).tolist() == [10, 0, 1]
    with pytest.raises(ValueError, match="too few"):
        firing_thresholds(features[:1], rate=0.5)


def test_local_firing_rate_by_hand() -> None:
    thresholds = torch.tensor([0.5, 0.5])
    sets = [
        torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),  # neuron 0 fires on 2 of 3
        torch.tensor([[1.0, 0.0], [0.0, 0.0]]),  # on 1 of 2
        torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),  # on none
    ]
    scores = invariance_scores(sets, thresholds, global_rate=0.25)
    # Firing images: two in set 0, each with 1 of its 2 others firing (1/2), one in set 1 with
    # 0 of 1: L = (1/2 + 1/2 + 0) / 3. Neuron 1 never fires: no score.
    assert scores.local[0].item() == pytest.approx(1 / 3)
    assert scores.ratio[0].item() == pytest.approx(4 / 3)
    assert math.isnan(scores.local[1]) and math.isnan(scores.ratio[1])


def test_top_k_mean_ignores_neurons_that_never_fired() -> None:
    scores = torch.tensor([math.nan, 0.2, 1.0, 0.5])
    assert top_k_mean(scores, k=2) == pytest.approx(0.75)
    assert top_k_mean(scores, k=10) == pytest.approx(1.7 / 3)
    assert math.isnan(top_k_mean(torch.full((3,), math.nan), k=1))


def test_features_constant_within_sets_score_one_and_random_features_do_not() -> None:
    generator = torch.Generator().manual_seed(0)
    per_set = torch.randn(64, 32, generator=generator)
    invariant = [per_set[j].expand(8, 32).clone() for j in range(64)]
    independent = [torch.randn(8, 32, generator=generator) for _ in range(64)]
    results = score_sets({"invariant": invariant, "independent": independent}, rate=0.01, topk=(10, 25))
    assert results["invariant"]["top10"] == 1.0 and results["invariant"]["top25"] == 1.0
    # Each neuron fires on one whole set (8 of 512 images), so L / G = 1 / (8 / 512).
    assert results["invariant"]["ratio_top10"] == pytest.approx(64.0)
    assert results["independent"]["top10"] < 0.5
    assert results["independent"]["neurons_scored"] == 32


def _released_measure(feat: np.ndarray, item_ids: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    """A plain re-statement of measure_invariances.py (senthilps8/demystifyssl) on flat arrays:
    (N, D) features, one set id and one class label per image; returns its printed top-10, top-25."""
    unique_classes = np.unique(classes)
    firing_percent = min((1.0 - 1.0 / len(unique_classes)) * 100, 95)
    n = feat.shape[0]
    index = int((n * firing_percent) // 100)
    upper = np.sort(feat, axis=0)[index]  # fires when >= (global) or > (local)
    lower = np.sort(feat, axis=0)[::-1][index]  # fires when <
    global_firing = (feat >= upper).mean(axis=0)
    local_sum = np.zeros((len(unique_classes), feat.shape[1]))
    local_count = np.zeros_like(local_sum)
    for item in np.unique(item_ids):
        members = np.flatnonzero(item_ids == item)
        if len(members) < 3:
            continue
        c = list(unique_classes).index(classes[members[0]])
        firing = np.maximum((feat[members] > upper).sum(0), (feat[members] < lower).sum(0))
        local_sum[c][firing > 0] += firing[firing > 0] / len(members)
        local_count[c][firing > 0] += 1
    per_class = np.sort(local_sum / (local_count + 1e-20) / global_firing, axis=1)[:, ::-1]
    return tuple(per_class[:, :k].mean(axis=1).mean() * (100 - firing_percent) for k in (10, 25))


@pytest.mark.parametrize("case", ["gaussian", "relu ties", "one class", "many sets"])
def test_paper_protocol_matches_a_restatement_of_the_released_code(case: str) -> None:
    rng = np.random.default_rng(len(case))
    shapes = {"gaussian": (40, 4), "relu ties": (30, 3), "one class": (12, 1), "many sets": (90, 90)}
    num_sets, num_classes = shapes[case]
    sizes = rng.integers(2, 9, num_sets)  # sets of 2 are skipped by the released code
    labels = rng.permutation(np.arange(num_sets) % num_classes)  # every class has a set
    sets = [rng.standard_normal((n, 32)) for n in sizes]
    if case == "relu ties":  # many exact zeros and repeated values: > against >= matters
        sets = [np.maximum(np.round(s, 1), 0) for s in sets]
    names = [f"class{c}" for c in labels]
    ours = paper_scores([torch.from_numpy(s).float() for s in sets], names, topk=(10, 25))
    feat = np.concatenate(sets).astype(np.float32).astype(np.float64)
    item_ids = np.repeat(np.arange(num_sets), sizes)
    classes = np.repeat(np.array(names), sizes)
    expected = _released_measure(feat, item_ids, classes)
    assert (ours["top10"], ours["top25"]) == pytest.approx(expected, rel=1e-12)
    assert ours["classes"] == num_classes and ours["images"] == sizes.sum()
    assert ours["sets_scored"] == (sizes >= 3).sum()
    assert ours["firing_rate"] == pytest.approx(max(1 / num_classes, 0.05))


def test_paper_protocol_by_hand_and_against_the_vidssl_protocol() -> None:
    """One neuron, responses 0..19 in four sets of five, two classes: every difference of the
    released measure (rate 1/C, both directions, c/n per set, per class, times the rate) shows."""
    sets = [[15, 16, 17, 18, 19], [0, 1, 2, 3, 10], [4, 5, 11, 12, 13], [6, 7, 8, 9, 14]]
    features = [torch.tensor(s, dtype=torch.float32)[:, None] for s in sets]
    # C = 2: rate 50%, index 10. Top threshold 10 (G = #{>= 10} / 20 = 0.5, locally > 10);
    # bottom threshold 9 (fires below 9). Per set c = max(#up, #down), share c / 5:
    # 5 up -> 1; 4 down -> 0.8; 3 up -> 0.6; 3 down (1 up) -> 0.6. Class a: (1 + 0.8) / 2 / 0.5
    # = 1.8, class b: 0.6 / 0.5 = 1.2; mean 1.5, times 50 = 75.
    paper = paper_scores(features, ["a", "a", "b", "b"], topk=(1,))
    assert paper["top1"] == pytest.approx(75.0)
    assert paper["firing_rate"] == 0.5 and paper["classes"] == 2 and paper["sets_scored"] == 4
    # vidssl at the same rate: fires on >= 10 only; c = 5, 1, 3, 1 -> L = (5*4/4 + 3*2/4) / 10.
    assert score_sets({"x": features}, rate=0.5, topk=(1,))["x"]["top1"] == pytest.approx(0.65)
    # Sets of two images are not scored, but their class still sets the rate (C = 3: 33%).
    three = paper_scores([*features, torch.zeros(2, 1)], ["a", "a", "b", "b", "c"], topk=(1,))
    assert three["classes"] == 3 and three["sets_scored"] == 4
    assert three["firing_rate"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="top-25"):
        paper_scores([torch.zeros(3, 8)], ["a"], topk=(25,))


def test_illumination_invariant_encoder_scores_one_and_a_pixel_encoder_lower() -> None:
    images = _two_level_images(64, 24, seed=0)
    sets = {"illumination": [torch.stack([light(image) for light in ILLUMINATIONS]) for image in images]}
    blind = measure_invariance(PixelProjection(24, binarize=True), sets, rate=0.02)["illumination"]
    pixels = measure_invariance(PixelProjection(24), sets, rate=0.02)["illumination"]
    assert blind["top10"] == 1.0 and blind["top25"] == 1.0
    assert pixels["top10"] < 0.8 and pixels["top25"] < blind["top25"] - 0.3


def test_occlusion_invariant_encoder_scores_one_and_one_that_sees_the_object_lower() -> None:
    size, box = 32, (8.0, 8.0, 24.0, 24.0)
    inside = torch.zeros(size, size)
    inside[8:24, 8:24] = 1
    rng = np.random.default_rng(0)
    images = _smooth_images(64, size, seed=1)
    sets = {"occlusion": [torch.stack([image] + [occlude(image, box, rng=rng) for _ in range(7)]) for image in images]}
    surround = measure_invariance(PixelProjection(size, region=1 - inside), sets, rate=0.02)["occlusion"]
    centre = measure_invariance(PixelProjection(size, region=inside), sets, rate=0.02)["occlusion"]
    assert surround["top10"] == 1.0 and surround["top25"] == 1.0
    assert centre["top10"] < 0.9 and centre["top25"] < surround["top25"] - 0.2


def test_occluders_cover_part_of_the_object_box_only() -> None:
    image = torch.full((3, 40, 40), 128, dtype=torch.uint8)
    rng = np.random.default_rng(0)
    for _ in range(20):
        changed = (occlude(image, (10.0, 5.0, 30.0, 35.0), rng=rng) != 128).any(dim=0)
        rows, cols = torch.nonzero(changed, as_tuple=True)
        if rows.numel():  # a flat grey of level 128 changes nothing
            assert rows.min() >= 5 and rows.max() < 35 and cols.min() >= 10 and cols.max() < 30
            assert changed.sum() <= 0.45 * 20 * 30


def test_sets_from_synthetic_tracks_are_deterministic(synth: Path) -> None:
    tracks = tracks_from_synth(synth)
    assert tracks and all(len(t.frames) == len(t.boxes) for t in tracks)
    for name in TRANSFORMATIONS:
        first = build_sets(tracks, transformation=name, sets=6, images_per_set=3, image_size=24, seed=0)
        again = build_sets(tracks, transformation=name, sets=6, images_per_set=3, image_size=24, seed=0)
        assert 0 < len(first) <= 6 and all(s.shape[1:] == (3, 24, 24) and s.dtype == torch.uint8 for s in first)
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
        sizes = {s.shape[0] for s in first}
        if name == "illumination":
            assert sizes == {len(ILLUMINATIONS)}
        elif name == "instance":  # up to images_per_set objects of one class, at least two
            assert sizes <= {2, 3}
        else:
            assert sizes == {3}


def test_tracks_files_plug_in_relative_to_their_data_root(synth: Path, tmp_path: Path) -> None:
    """Tracks as ``vidssl tracks`` writes them (rel paths in CSVs) make the same sets as the
    ground truth read directly: one Track type (vidssl.tracking) serves both."""
    import dataclasses

    from vidssl.data.tracks import read_tracks_csv, write_tracks_csv

    tracks = tracks_from_synth(synth)
    relative = [dataclasses.replace(t, video=Path(t.video).relative_to(synth).as_posix()) for t in tracks]
    by_video: dict[str, list] = {}
    for track in relative:
        by_video.setdefault(track.video, []).append(track)
    written = []
    for i, (video, video_tracks) in enumerate(sorted(by_video.items())):
        write_tracks_csv(tmp_path / f"{i}.csv", video_tracks)
        assert [t.video for t in read_tracks_csv(tmp_path / f"{i}.csv")] == [video] * len(video_tracks)
        written += read_tracks_csv(tmp_path / f"{i}.csv")
    order = {(t.video, t.track_id): t for t in written}
    read_back = [order[t.video, t.track_id] for t in relative]
    kwargs = dict(transformation="viewpoint", sets=5, images_per_set=3, image_size=24, seed=1)
    direct = build_sets(tracks, **kwargs)
    from_files = build_sets(read_back, root=synth, **kwargs)
    assert len(direct) == len(from_files) > 0
    assert all(torch.equal(a, b) for a, b in zip(direct, from_files, strict=True))


def test_features_of_an_intermediate_layer() -> None:
    from vidssl.features import resolve_encoder

    encoder = resolve_encoder("random:resnet18")
    images = _smooth_images(3, 32, seed=0)
    assert pooled_features(encoder, images, layer="layer3", batch_size=2, device="cpu").shape == (3, 256)
    with pytest.raises(ValueError, match="did you mean 'layer3'"):
        pooled_features(encoder, images, layer="layer_3", device="cpu")


def test_square_crops_keep_the_aspect_and_stay_inside_the_frame() -> None:
    assert square_box((10.0, 20.0, 30.0, 60.0), height=100, width=100) == (0, 20, 40, 60)  # shifted right of 0
    assert square_box((90.0, 90.0, 99.0, 95.0), height=100, width=100) == (90, 88, 99, 97)
    assert square_box((0.0, 0.0, 500.0, 20.0), height=100, width=120) == (20, 0, 120, 100)  # at most the frame
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[20:60, 10:30] = 255
    crop, box = crop_object(frame, (10.0, 20.0, 30.0, 60.0), size=20)
    assert crop.shape == (3, 20, 20) and box == (5.0, 0.0, 15.0, 20.0)
    assert crop[:, :, 6:14].min() == 255 and crop[:, :, :4].max() == 0


def test_cli_writes_results_and_a_chart(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "invariance"
    argv = ["eval", "invariance", "random:resnet18", f"data={synth}", f"out={out}"]
    argv += ["sets=16", "images_per_set=4", "image_size=32", "rate=0.05", "batch_size=64"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:3] == ["transformation", "top10", "top25"]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {*TRANSFORMATIONS, "settings"}
    for name in TRANSFORMATIONS:
        row = results[name]
        assert 0 <= row["top25"] <= row["top10"] <= 1, (name, row)
        assert row["ratio_top10"] >= row["top10"] and row["sets"] > 0 and row["neurons_scored"] > 0
    assert results["settings"]["encoder"] == "random:resnet18" and results["settings"]["neurons"] == 512
    with Image.open(out / "invariance.png") as chart:
        assert chart.format == "PNG" and chart.width > 400 and chart.height > 300


def test_cli_without_an_encoder_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "invariance"]) == 1
    assert "needs an encoder" in capsys.readouterr().err


def _tracks_folder(synth: Path, out: Path) -> list:
    """The synthetic ground truth written as ``vidssl tracks`` writes a folder (rel paths to the
    mp4s, tracks.json naming the data root), plus one 3-box track and one track of tiny boxes."""
    import dataclasses

    from vidssl.data.tracks import csv_path, write_manifest, write_tracks_csv

    tracks = [
        dataclasses.replace(t, video=f"videos/{Path(t.video).name}.mp4") for t in tracks_from_synth(synth)
    ]
    first = tracks[0]
    short = dataclasses.replace(first, track_id=901, frames=first.frames[:3], boxes=first.boxes[:3],
                                scores=first.scores[:3])
    tiny_boxes = np.tile(np.array([[5.0, 5.0, 9.0, 9.0]], np.float32), (len(first), 1))
    tiny = dataclasses.replace(first, track_id=902, boxes=tiny_boxes)
    by_video: dict[str, list] = {}
    for track in [*tracks, short, tiny]:
        by_video.setdefault(track.video, []).append(track)
    for video, video_tracks in by_video.items():
        write_tracks_csv(csv_path(out, video), video_tracks)
    write_manifest(out, {"version": 1, "data": str(synth), "videos": {v: {} for v in by_video}})
    return tracks


def test_tracks_folder_skips_and_counts_short_tracks_and_small_boxes(synth: Path, tmp_path: Path) -> None:
    tracks = _tracks_folder(synth, tmp_path / "tracks")
    source = tracks_from_folder(tmp_path / "tracks", min_box=8, min_track=4)
    assert source.root == synth
    assert source.counts["tracks_read"] == len(tracks) + 2
    assert source.counts["tracks_too_short"] >= 2  # the 3-box track and the tiny one at least
    assert source.counts["boxes_too_small"] >= len(tracks[0])
    assert source.counts["tracks_kept"] == len(source.tracks) > 0
    assert all(len(t) >= 4 for t in source.tracks) and {901, 902}.isdisjoint(t.track_id for t in source.tracks)
    sides = np.concatenate([np.minimum(t.boxes[:, 2] - t.boxes[:, 0], t.boxes[:, 3] - t.boxes[:, 1])
                            for t in source.tracks])
    assert sides.min() >= 8
    images, classes = build_labelled_sets(source.tracks, transformation="instance", sets=4, images_per_set=3,
                                          image_size=24, seed=0, root=source.root)
    assert len(images) == len(classes) > 0 and set(classes) <= {t.class_name for t in source.tracks}
    with pytest.raises(FileNotFoundError, match="tracks.json"):
        tracks_from_folder(tmp_path / "nowhere")


def test_cli_on_tracks_of_real_video_under_both_protocols(synth: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _tracks_folder(synth, tmp_path / "tracks")
    common = ["eval", "invariance", "random:resnet18", f"tracks={tmp_path / 'tracks'}", "sets=12", "images_per_set=4",
              "image_size=32", "min_box=8", "min_track=4"]
    assert main([*common, f"out={tmp_path / 'vidssl'}", "rate=0.05"]) == 0
    assert main([*common, f"out={tmp_path / 'paper'}", "protocol=paper"]) == 0
    printed = capsys.readouterr().out
    assert "firing_rate" in printed and "ratio_top10" in printed
    ours = json.loads((tmp_path / "vidssl" / "results.json").read_text())
    paper = json.loads((tmp_path / "paper" / "results.json").read_text())
    assert paper["settings"]["track_counts"] == ours["settings"]["track_counts"]
    assert paper["settings"]["data"] == str(synth)
    for name in TRANSFORMATIONS:
        assert 0 <= ours[name]["top10"] <= 1 and 0 <= paper[name]["top10"] <= 100
        assert paper[name]["sets"] == ours[name]["sets"] and paper[name]["images"] == ours[name]["images"]
    # classes=auto: one class per set for viewpoint and illumination (ALOI), the object class for
    # occlusion and instance: with 12 sets or fewer the rate is 1/C, never the 5% floor.
    assert paper["viewpoint"]["classes"] == paper["viewpoint"]["sets"]
    assert paper["occlusion"]["classes"] == len(paper["settings"]["class_labels"]["occlusion"])
    assert paper["occlusion"]["firing_rate"] == pytest.approx(1 / paper["occlusion"]["classes"])


def test_cli_names_the_missing_tracks_folder_and_video(synth: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "invariance", "random:resnet18", f"tracks={tmp_path / 'none'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "none") in err and "tracks.json" in err
    _tracks_folder(synth, tmp_path / "tracks")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    argv = ["eval", "invariance", "random:resnet18", f"tracks={tmp_path / 'tracks'}", f"data={empty}", "min_box=8",
            "min_track=4", "transformations=viewpoint", "images_per_set=4"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(empty / "videos") in err and "not found" in err
    assert main(["eval", "invariance", "random:resnet18", "protocol=papers"]) == 1
    assert "unknown protocol 'papers'" in capsys.readouterr().err


def test_comparison_chart_draws_one_bar_per_encoder(tmp_path: Path) -> None:
    from vidssl.evaluation.invariance import plot_comparison

    scores = {"a": {"viewpoint": {"top25": 80.0}, "instance": {"top25": math.nan}}, "b": {"viewpoint": {"top25": 20.0}}}
    plot_comparison(scores, tmp_path / "chart.png", key="top25", title="t", ymax=100.0)
    with Image.open(tmp_path / "chart.png") as chart:
        pixels = np.asarray(chart.convert("RGB"))
    blue, orange = (pixels == (31, 119, 180)).all(-1), (pixels == (255, 127, 14)).all(-1)
    # Bars (beyond the legend swatches): encoder a's is 4 times as tall as b's.
    bar_a, bar_b = blue[60:].any(axis=1).sum(), orange[60:].any(axis=1).sum()
    assert bar_a == pytest.approx(4 * bar_b, rel=0.05)


def test_paper_classes_follow_the_papers_datasets_unless_forced() -> None:
    from vidssl.evaluation.invariance import paper_set_labels

    objects = ["dog", "dog", "person"]
    assert paper_set_labels("viewpoint", objects, "auto") == ["0", "1", "2"]  # ALOI: no class labels
    assert paper_set_labels("illumination", objects, "auto") == ["0", "1", "2"]
    assert paper_set_labels("occlusion", objects, "auto") == objects  # GOT-10k classes
    assert paper_set_labels("instance", objects, "auto") == objects  # PASCAL3D+ categories
    assert paper_set_labels("viewpoint", objects, "object") == objects
    assert paper_set_labels("instance", objects, "set") == ["0", "1", "2"]
