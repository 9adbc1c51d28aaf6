"""``vidssl eval davis`` and ``vidssl eval jhmdb`` end to end on the synthetic videos, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from vidssl.cli import main
from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis
from vidssl.propagation.masks import read_mask

SEQ = "synth_000"


def _copy_first_j(davis: Path) -> float:
    """J of the trivial tracker that repeats the first mask on every frame."""
    from vidssl.evaluation.davis import SequenceScorer, score_sequence, summarize

    per_sequence = {}
    for folder in sorted((davis / "Annotations" / "480p").iterdir()):
        files = sorted(folder.glob("*.png"))
        first = read_mask(files[0])
        scorer = SequenceScorer(folder, num_objects=int(first.max()), last=len(files) - 1)
        for index, file in enumerate(files):
            scorer(index, file.stem, first)
        per_sequence[folder.name] = score_sequence(scorer.j, scorer.f)
    return summarize(per_sequence)["J"]


def test_pixels_on_synthetic_davis_give_a_sensible_j(synth_dir: Path, tmp_path: Path) -> None:
    """Lab-pixel propagation on the 3 synthetic videos (160x120, 24 frames, 2 objects each) with
    CRW's settings: J 0.22 (per video 0.35, 0.03, 0.28; F 0.17), above the 0.17 of repeating the
    first mask on every frame and far from an empty prediction (0). Colour alone is a weak cue
    here: objects are textured in several colours and the background is colourful too."""
    results = evaluate_davis(DavisEvalConfig(root=str(synth_dir / "davis"), encoder="pixels", out=str(tmp_path)),
                             progress=False)
    assert results["complete"] and results["objects"] == 6
    assert results["J"] > max(0.15, _copy_first_j(synth_dir / "davis")) and 0.1 < results["F"] < 1
    assert results["J&F"] == pytest.approx((results["J"] + results["F"]) / 2)
    first = read_mask(synth_dir / "davis" / "Annotations" / "480p" / SEQ / "00000.png")
    predicted = sorted((tmp_path / SEQ).glob("*.png"))
    assert len(predicted) == 24 and np.array_equal(read_mask(predicted[0]), first)
    with Image.open(predicted[5]) as image:  # DAVIS layout: palette PNG, same palette
        assert image.mode == "P" and image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]


def _fake_jhmdb(synth_dir: Path, root: Path) -> None:
    """The JHMDB layout made from a synthetic video: PNG frames numbered from 1 and a
    joint_positions.mat with 1-based (2, J, T) positions."""
    from vidssl.propagation.keypoints import read_keypoints

    frames = root / "Rename_Images" / "spin" / "clip_a"
    frames.mkdir(parents=True)
    for i, jpg in enumerate(sorted((synth_dir / "davis" / "JPEGImages" / "480p" / SEQ).glob("*.jpg"))[:10]):
        Image.open(jpg).save(frames / f"{i + 1:05d}.png")
    points = read_keypoints(synth_dir / "annotations" / f"{SEQ}.json")
    joints = root / "joint_positions" / "spin" / "clip_a"
    joints.mkdir(parents=True)
    savemat(joints / "joint_positions.mat", {"pos_img": points.xy[:10].transpose(2, 1, 0) + 1})


def test_eval_cli_davis_and_jhmdb(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = tmp_path / "one.txt"
    split.write_text(f"{SEQ}\n")
    assert main(["eval", "davis", str(synth_dir / "davis"), f"split={split}", "encoder=pixels",
                 f"out={tmp_path / 'davis'}", "overlay=true"]) == 0
    printed = capsys.readouterr().out
    assert SEQ in printed and "mean" in printed
    results = json.loads((tmp_path / "davis" / "results.json").read_text())
    assert set(results) >= {"J&F", "J", "F", "per_sequence", "settings"} and list(results["per_sequence"]) == [SEQ]
    assert results["settings"]["split"] == str(split) and (tmp_path / "davis" / f"{SEQ}.mp4").exists()
    assert results["frame_size"] == [120, 160] and results["torch"] and results["settings"]["preset"] == ""

    # A preset and a baseline: every resolved key is recorded; copy repeats the first mask exactly.
    assert main(["eval", "davis", str(synth_dir / "davis"), f"split={split}", "encoder=copy", "preset=dino",
                 f"out={tmp_path / 'copy'}"]) == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "copy" / "results.json").read_text())
    assert results["settings"]["neighbourhood"] == "square" and results["settings"]["topk"] == 5
    assert results["frame_size"] == [480, 640] and results["features"] == "copy"  # short side 480, long // 64
    first = read_mask(synth_dir / "davis" / "Annotations" / "480p" / SEQ / "00000.png")
    assert np.array_equal(read_mask(tmp_path / "copy" / SEQ / "00017.png"), first)

    _fake_jhmdb(synth_dir, tmp_path / "jhmdb")
    assert main(["eval", "jhmdb", str(tmp_path / "jhmdb"), "encoder=pixels", f"out={tmp_path / 'j'}"]) == 0
    assert "1 clips: PCK@0.1" in capsys.readouterr().out
    results = json.loads((tmp_path / "j" / "results.json").read_text())
    assert 0 <= results["PCK@0.1"] <= results["PCK@0.2"] <= 1 and results["clips"] == 1
    assert results["settings"]["sigma"] == 0.5 and (tmp_path / "j" / "spin" / "clip_a.json").exists()


def test_davis_root_without_a_first_annotation_names_the_file(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = synth_dir / "davis" / "JPEGImages" / "480p" / SEQ
    root = tmp_path / "davis"
    (root / "JPEGImages" / "480p").mkdir(parents=True)
    (root / "JPEGImages" / "480p" / SEQ).symlink_to(frames)
    (root / "Annotations" / "480p" / SEQ).mkdir(parents=True)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{SEQ}\n")
    assert main(["eval", "davis", str(root), f"out={tmp_path / 'o'}"]) == 1
    assert f"Annotations/480p/{SEQ}/00000.png: missing first-frame annotation" in capsys.readouterr().err


def test_results_writer_turns_nan_into_null_and_leaves_no_temporary(tmp_path: Path) -> None:
    from vidssl.evaluation.results import save_results

    path = save_results(tmp_path / "out", {"J": float("nan"), "per": {"a": [1.0, float("inf")]}, "n": 2})
    assert path.read_text() == '{\n "J": null,\n "per": {\n  "a": [\n   1.0,\n   null\n  ]\n },\n "n": 2\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_davis2016_binary_masks_are_one_object(synth_dir: Path, tmp_path: Path) -> None:
    """DAVIS-2016 ships grayscale masks of 0 and 255 (or 1-bit PNGs): 255 is the object there, not
    DAVIS-2017's void. They were read as all background and refused with "holds no object"."""
    from vidssl.propagation.masks import read_first_mask

    labels = np.zeros((6, 8), np.uint8)
    labels[2:4, 3:6] = 255
    Image.fromarray(labels, "L").save(tmp_path / "gray.png")
    Image.fromarray(labels > 0).save(tmp_path / "bits.png")  # mode "1"
    for name in ("gray.png", "bits.png"):
        assert np.array_equal(read_mask(tmp_path / name), (labels > 0).astype(np.uint8)), name
        assert read_first_mask(tmp_path / name).ids == (0, 1)
    ids = labels // 255 * 2
    ids[0, 0] = 255  # object ids with void: DAVIS-2017's layout, grayscale or palette
    Image.fromarray(ids, "L").save(tmp_path / "ids.png")
    palette = Image.fromarray(labels, "P")
    palette.putpalette([0, 0, 0] * 256)
    palette.save(tmp_path / "void.png")
    assert read_mask(tmp_path / "ids.png")[0, 0] == 0 and read_mask(tmp_path / "ids.png").max() == 2
    assert read_mask(tmp_path / "void.png").max() == 0  # a palette PNG's 255 stays void

    # the evaluation end to end: one object of a synthetic sequence as a DAVIS-2016 folder
    root = tmp_path / "davis2016"
    source = synth_dir / "davis" / "Annotations" / "480p" / SEQ
    (root / "Annotations" / "480p" / SEQ).mkdir(parents=True)
    (root / "JPEGImages" / "480p").mkdir(parents=True)
    (root / "JPEGImages" / "480p" / SEQ).symlink_to(synth_dir / "davis" / "JPEGImages" / "480p" / SEQ)
    for file in sorted(source.glob("*.png")):
        Image.fromarray(((read_mask(file) == 1) * 255).astype(np.uint8), "L").save(
            root / "Annotations" / "480p" / SEQ / file.name)
    (root / "split.txt").write_text(f"{SEQ}\n")
    results = evaluate_davis(DavisEvalConfig(root=str(root), split=str(root / "split.txt"), encoder="copy",
                                             out=str(tmp_path / "out")), progress=False)
    assert results["complete"] and results["objects"] == 1 and results["J"] > 0.1


@pytest.mark.parametrize("name", ["../../elsewhere", "/etc", "a/b", ".."])
def test_a_split_naming_a_path_is_refused_before_anything_is_written(synth_dir: Path, tmp_path: Path,
                                                                      name: str) -> None:
    """A split line ``../../../NAME`` made the evaluation write its predictions over another folder's
    annotations (and score them as perfect)."""
    split = tmp_path / "split.txt"
    split.write_text(f"{SEQ}\n{name}\n")
    out = tmp_path / "out"
    assert main(["eval", "davis", f"root={synth_dir / 'davis'}", f"split={split}", "encoder=copy",
                 f"out={out}"]) != 0
    assert not out.exists() or not any(out.rglob("*.png"))


@pytest.mark.parametrize(("preset", "opens"), [("", 1), ("dino", 2)])
def test_davis_reads_each_first_mask_once_and_opens_each_video_once(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str, opens: int
) -> None:
    """Once more only where the encoder sees the frames resized (DINO's 480 x 640 here): the
    backend resizes them. The size the encoder saw comes back from propagate_masks."""
    import vidssl.data.backends as backends
    import vidssl.propagation.masks as masks

    split = tmp_path / "one.txt"
    split.write_text(f"{SEQ}\n")
    opened, read = [], []
    real_open, real_read = backends.open_video, masks.read_first_mask
    monkeypatch.setattr(backends, "open_video", lambda path, **kw: opened.append(path) or real_open(path, **kw))
    monkeypatch.setattr(masks, "read_first_mask", lambda path: read.append(path) or real_read(path))
    png_reads = []
    real_image_open = Image.open

    def image_open(path, *args, **kw):
        if Path(str(path)).name == "00000.png" and "Annotations" in str(path):
            png_reads.append(path)
        return real_image_open(path, *args, **kw)

    monkeypatch.setattr(Image, "open", image_open)
    results = evaluate_davis(DavisEvalConfig(root=str(synth_dir / "davis"), split=str(split), encoder="copy",
                                             preset=preset, out=str(tmp_path / "out")), progress=False)
    assert len(opened) == opens and len(read) == 1 and len(png_reads) == 1
    assert results["frame_size"] == ([120, 160] if not preset else [480, 640])
