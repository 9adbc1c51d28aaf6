"""``vidssl eval synth``: the synthetic held-out protocol: masks and keypoints propagated through
synthetic videos that no training run saw.

Held-out videos (:mod:`vidssl.data.synth`: ``videos`` videos of ``frames`` frames, up to
``objects`` objects each, so more occlusion and look-alike textures than the training default, own
seed) are written into ``root`` when it holds none; then every object's first-frame mask is
propagated with the encoder and scored as DAVIS J&F (:mod:`vidssl.evaluation.davis`), and its 5
keypoints (the centre and 4 extremities) as PCK@0.1 / @0.2 (JHMDB's measure; occluded truth not
scored). Needs no data: the demo and ``vidssl bench`` score encoders with it by default.

    vidssl eval synth root=runs/synth_held_out encoder=runs/mine preset=crw

A caution the learning benchmark measured (BENCHMARKS.md): the flat-coloured synthetic shapes
reward what random features already do; these scores do not rank recipes for real video.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidssl.config import option
from vidssl.files import exclusive
from vidssl.propagation.propagate import PropagationConfig


@dataclass(frozen=True)
class SynthEvalConfig(PropagationConfig):
    """``vidssl eval synth``: every setting, recorded in ``results.json``."""

    root: str = option("runs/synth_held_out", "held-out synthetic videos (a 'vidssl synth' folder: davis/, "
                                              "annotations/); written there first when absent, with the keys below")
    videos: int = option(6, "held-out videos written when ROOT holds none")
    frames: int = option(40, "frames per written video")
    height: int = option(240, "height of the written videos")
    width: int = option(320, "width of the written videos")
    objects: int = option(5, "objects per written video (2..this)")
    lighting: float = option(0.0, "changing light in the written videos (synth lighting=)")
    video_seed: int = option(1000, "seed of the written videos (training videos use others: nothing is shared)")
    out: str = option("runs/eval/synth", "results folder: results.json, masks/, keypoints/")


def held_out_videos(cfg: SynthEvalConfig, *, progress: bool = False) -> Path:
    """``cfg.root``, with the held-out videos written into it first when it holds none."""
    from vidssl.data.synth import SynthConfig, generate

    root = Path(cfg.root)
    if (root / "synth.json").exists():
        return root
    with exclusive(root.with_name(f".{root.name}.lock"), f"{root}: being written by another process; waiting"):
        if not (root / "synth.json").exists():  # written while this one waited (two benches on one folder)
            generate(root, SynthConfig(out=str(root), num_videos=cfg.videos, num_frames=cfg.frames, height=cfg.height,
                                       width=cfg.width, num_objects=cfg.objects, lighting=cfg.lighting,
                                       seed=cfg.video_seed), progress=progress)
    return root


def propagation_settings(cfg: PropagationConfig) -> dict[str, Any]:
    """The propagation keys of ``cfg`` (any config deriving from :class:`PropagationConfig`)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PropagationConfig)}


def evaluate_synth(cfg: SynthEvalConfig, *, progress: bool = True) -> dict[str, Any]:
    """Score ``cfg.encoder`` on the held-out videos; returns the ``results.json`` record: ``J&F``,
    ``J``, ``F`` (DAVIS), ``PCK@0.1`` / ``PCK@0.2`` (absent for ``encoder=copy``, which carries no
    points), ``per_sequence`` and ``settings``."""
    from vidssl.config import to_dict
    from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis
    from vidssl.evaluation.results import save_results

    root = held_out_videos(cfg, progress=progress)
    out = Path(cfg.out)
    settings = propagation_settings(cfg)
    davis = evaluate_davis(DavisEvalConfig(root=str(root / "davis"), out=str(out / "masks"), **settings),
                           progress=progress)
    record: dict[str, Any] = {"J&F": davis["J&F"], "J": davis["J"], "F": davis["F"],
                              "per_sequence": davis.get("per_sequence", {})}
    if cfg.encoder != "copy":
        record |= synthetic_keypoint_pck(root, out / "keypoints", settings, progress)
    record["settings"] = to_dict(cfg)
    save_results(out, record)
    return record


def synthetic_keypoint_pck(held: Path, out: Path, settings: dict[str, Any], progress: bool) -> dict[str, float]:
    """PCK@0.1 / @0.2 of the synthetic keypoints of ``held`` (a ``vidssl synth`` folder) propagated
    from the first frame with the propagation ``settings`` (every object's 5 points; occluded truth
    not scored), pooled over the videos."""
    from vidssl.data.synth import NUM_KEYPOINTS
    from vidssl.evaluation.jhmdb_metrics import joint_distances, pck
    from vidssl.propagation.keypoints import read_keypoints
    from vidssl.propagation.propagate import extractor_for, propagate_keypoints

    prop = PropagationConfig(**settings)
    extractor = extractor_for(prop)
    distances = []
    for ann in sorted((held / "annotations").glob("*.json")):
        truth = read_keypoints(ann)
        frames = held / "davis" / "JPEGImages" / "480p" / ann.stem
        pred, _ = propagate_keypoints(frames, truth, out, extractor, settings=prop, name=ann.stem, backend="frames",
                                      progress=progress)
        gt = np.where(truth.visible[..., None] > 0, truth.xy, np.nan)
        d = joint_distances(pred, gt, tuple(truth.groups))  # (T, objects * K)
        distances.append(d.reshape(-1, NUM_KEYPOINTS))  # joint types: the centre and 4 extremities
    if not distances:
        raise FileNotFoundError(f"{held / 'annotations'}: no keypoint files (*.json of 'vidssl synth')")
    d = np.concatenate(distances)
    return {"PCK@0.1": pck(d, 0.1), "PCK@0.2": pck(d, 0.2)}
