"""``vidssl eval davis``: semi-supervised video object segmentation by label propagation.

    vidssl eval davis root=~/DAVIS encoder=runs/fti out=runs/fti/davis

Reads the DAVIS-2017 layout (``JPEGImages/480p/<seq>/*.jpg``, ``Annotations/480p/<seq>/*.png``,
sequences from ``ImageSets/2017/val.txt`` or ``split=FILE``), propagates every sequence's
first-frame annotation (all its objects at once) with :func:`vidssl.propagation.propagate.propagate_masks`,
writes the predictions as palette PNGs in the DAVIS results layout (``out/<seq>/<frame>.png``)
and scores them as the official semi-supervised evaluation does (davis2017-evaluation):

- objects are the ids 1..K, K the largest id in the first annotation (255, void, is background);
- J and F (:mod:`vidssl.evaluation.davis_metrics`) per object and frame, the first and last frames
  excluded; an object absent from both truth and prediction in a frame scores J = F = 1 there;
- an object's score is its mean over frames; J and F are means over all objects of all
  sequences (not over sequences), and J&F is their mean.

Each mask is scored as soon as it is made, so memory does not grow with the sequence. Results go
to ``out/results.json`` (:func:`vidssl.evaluation.results.save_results`) after every sequence
(``complete`` is false until the last), so a long run can be read while it runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vidssl.config import ConfigError, option
from vidssl.evaluation.davis_metrics import BOUND_TH, boundary_f_measure, region_similarity
from vidssl.evaluation.results import save_results
from vidssl.propagation.propagate import PropagationConfig, extractor_for, propagate_masks, protocol_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DavisEvalConfig(PropagationConfig):
    """``vidssl eval davis``: every setting, recorded in ``results.json``."""

    root: str = option("", "DAVIS folder with JPEGImages/<resolution>/<seq>/ and Annotations/<resolution>/<seq>/")
    split: str = option("", "file of sequence names, one a line (default ROOT/ImageSets/2017/val.txt)")
    resolution: str = option("480p", "subfolder of JPEGImages and Annotations")
    out: str = option("runs/eval/davis", "results folder: results.json and predictions <seq>/<frame>.png")
    overlay: bool = option(False, "also write <seq>.mp4 with the predicted masks drawn over the frames")
    bound_th: float = option(BOUND_TH, "F's boundary tolerance: a fraction of the image diagonal (>= 1: pixels)")


def read_split(path: Path) -> list[str]:
    """Sequence names of a split file (one a line; blank lines and ``#`` comments skipped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such split file")
    names = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n]
    for name in names:  # each name becomes ROOT/.../<name> and OUT/<name>: it must stay inside both
        if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise ValueError(f"{path}: {name!r} is not a sequence name (a folder name, without '/' or '..')")
    return names


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


class SequenceScorer:
    """Scores each predicted mask of one sequence as it is made (``on_mask`` of
    :func:`vidssl.propagation.propagate.propagate_masks`): J and F of objects 1..``num_objects``
    against ``annotations/<frame>.png``, except on frames 0 and ``last`` (or without annotation)."""

    def __init__(self, annotations: Path, *, num_objects: int, last: int, bound_th: float = BOUND_TH) -> None:
        self.annotations, self.last, self.bound_th = annotations, last, bound_th
        self.j: dict[int, list[float]] = {k: [] for k in range(1, num_objects + 1)}
        self.f: dict[int, list[float]] = {k: [] for k in range(1, num_objects + 1)}

    def __call__(self, index: int, frame: str, mask: np.ndarray) -> None:
        from vidssl.propagation.masks import read_mask

        truth = self.annotations / f"{frame}.png"
        if index in (0, self.last) or not truth.is_file():
            return
        gt = read_mask(truth)
        if gt.shape != mask.shape:
            raise ValueError(f"{truth}: annotation is {gt.shape[1]}x{gt.shape[0]}, "
                             f"frames are {mask.shape[1]}x{mask.shape[0]}")
        for k in self.j:
            self.j[k].append(region_similarity(mask == k, gt == k))
            self.f[k].append(boundary_f_measure(mask == k, gt == k, bound_th=self.bound_th))


def score_sequence(j: dict[int, list[float]], f: dict[int, list[float]]) -> dict:
    """Per-object means of per-frame J and F lists, and the sequence's means over its objects."""
    objects = {str(k): {"J": _mean(j[k]), "F": _mean(f[k]), "frames": len(j[k])} for k in sorted(j)}
    seq_j, seq_f = _mean([o["J"] for o in objects.values()]), _mean([o["F"] for o in objects.values()])
    return {"J&F": (seq_j + seq_f) / 2, "J": seq_j, "F": seq_f, "objects": objects}


def summarize(per_sequence: dict[str, dict]) -> dict[str, float]:
    """Means over every object of every sequence (the official DAVIS averaging)."""
    objects = [o for seq in per_sequence.values() for o in seq["objects"].values()]
    mean_j, mean_f = _mean([o["J"] for o in objects]), _mean([o["F"] for o in objects])
    return {"J&F": (mean_j + mean_f) / 2, "J": mean_j, "F": mean_f, "objects": len(objects)}


def format_table(results: dict) -> str:
    """The per-sequence table and the means, as printed by ``vidssl eval davis``."""
    rows = results["per_sequence"]
    width = max([len("sequence"), *map(len, rows)])
    lines = [f"{'sequence':<{width}}  objects      J      F    J&F"]
    for name, seq in rows.items():
        lines.append(f"{name:<{width}}  {len(seq['objects']):>7}  {seq['J']:.3f}  {seq['F']:.3f}  {seq['J&F']:.3f}")
    means = f"{results['J']:.3f}  {results['F']:.3f}  {results['J&F']:.3f}"
    lines.append(f"{'mean':<{width}}  {results['objects']:>7}  {means}")
    return "\n".join(lines)


def evaluate_davis(cfg: DavisEvalConfig, *, progress: bool = True) -> dict:
    """Propagate and score every sequence of the split (module docstring).

    Returns the ``results.json`` record: ``J&F``, ``J``, ``F`` (means over objects, fractions in
    [0, 1]), ``objects``, ``per_sequence`` (per sequence: ``J&F``, ``J``, ``F``, ``frames``,
    ``objects`` with each object's ``J``, ``F`` and scored ``frames``), ``frames``, ``seconds``,
    ``fps``, ``features``, ``complete`` and ``settings`` (every key of ``cfg``).

    Raises:
        FileNotFoundError: a missing root, split file, frame folder or first-frame annotation.
        ValueError: an annotation whose size differs from its frames (the message names the file).
    """
    if not cfg.root:
        raise ConfigError("eval davis needs the DAVIS folder: vidssl eval davis root=DIR encoder=...")
    root, out = Path(cfg.root), Path(cfg.out)
    images, annotations = root / "JPEGImages" / cfg.resolution, root / "Annotations" / cfg.resolution
    for folder in (images, annotations):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder (expected the DAVIS-2017 layout under {root})")
    split = Path(cfg.split) if cfg.split else root / "ImageSets" / "2017" / "val.txt"
    sequences = read_split(split)
    if not sequences:
        raise ValueError(f"{split}: lists no sequence")
    from vidssl.data.backends import list_frame_files
    from vidssl.propagation.masks import read_first_mask

    extractor = extractor_for(cfg)
    started = time.perf_counter()
    per_sequence: dict[str, dict] = {}
    total_frames = 0

    sizes: set[tuple[int, int]] = set()

    def record(complete: bool) -> dict:
        seconds = time.perf_counter() - started
        size = sorted(sizes)[0] if len(sizes) == 1 else None  # per sequence otherwise
        return {**summarize(per_sequence), "per_sequence": per_sequence, "frames": total_frames,
                "seconds": seconds, "fps": total_frames / seconds if seconds else 0.0, "features": extractor.name,
                "complete": complete, **protocol_record(cfg, size)}

    for name in tqdm(sequences, desc="davis", unit="seq", disable=not progress):
        frames = images / name
        if not frames.is_dir():
            raise FileNotFoundError(f"{frames}: no such sequence folder (listed in {split})")
        files = list_frame_files(frames)  # the one listing: frame names for the annotations and outputs
        first_path = annotations / name / f"{files[0].stem}.png" if files else annotations / name
        if not first_path.is_file():
            raise FileNotFoundError(f"{first_path}: missing first-frame annotation of sequence {name}")
        first = read_first_mask(first_path)  # read once: objects, and the labels propagated
        scorer = SequenceScorer(annotations / name, num_objects=max(first.ids), last=len(files) - 1,
                                bound_th=cfg.bound_th)
        run = propagate_masks(frames, first, out, extractor, settings=cfg, name=name, overlay=cfg.overlay,
                              backend="frames", on_mask=scorer, progress=progress, names=[f.stem for f in files])
        total_frames += run.frames
        sizes.add(run.seen)
        per_sequence[name] = {**score_sequence(scorer.j, scorer.f), "frames": run.frames, "frame_size": list(run.seen)}
        save_results(out, record(complete=False))
    results = record(complete=True)
    save_results(out, results)
    return results
