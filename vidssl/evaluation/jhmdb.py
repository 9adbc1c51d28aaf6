"""``vidssl eval jhmdb``: human pose propagation on JHMDB, scored by PCK.

    vidssl eval jhmdb root=~/JHMDB encoder=runs/fti out=runs/fti/jhmdb

Layout (JHMDB's own): ``Rename_Images/<action>/<clip>/00001.png ...`` and
``joint_positions/<action>/<clip>/joint_positions.mat`` (``pos_img``: 2 x 15 joints x T frames,
MATLAB 1-based pixels, made 0-based on reading). Every clip's 15 first-frame joints are propagated
as Gaussian heatmaps (:func:`vidssl.propagation.propagate.propagate_keypoints`) and scored on the
other frames.

PCK, as CRW's and UVC's JHMDB evaluation computes it (``eval_pck.py`` of ajabri/videowalk and
Liusifei/UVC; CRW, 2020, arXiv:2006.14613; UVC, Li et al. 2019, arXiv:1909.11895): a predicted
joint is correct when its distance to the truth is at most ``alpha * 0.6 * ||(x_max, y_max) -
(x_min, y_min)||``, the diagonal of the bounding box of that frame's ground-truth joints times 0.6;
the first frame is not scored; joints without a prediction (an empty heatmap, e.g. a joint given
outside the image) are left out; PCK@alpha is the mean over the 15 joint types of each type's
fraction of correct predictions, pooled over all clips and frames
(:mod:`vidssl.evaluation.jhmdb_metrics`). Results are fractions in [0, 1]
(the papers print percentages). Frames are used at their own size (320 x 240), where CRW's code
squeezes them to 320 x 320.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vidssl.config import ConfigError, option
from vidssl.evaluation.jhmdb_metrics import joint_distances, pck
from vidssl.evaluation.results import save_results
from vidssl.propagation.keypoints import read_jhmdb_mat
from vidssl.propagation.propagate import (
    PropagationConfig,
    extractor_for,
    propagate_keypoints,
    protocol_record,
    seen_size,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JhmdbEvalConfig(PropagationConfig):
    """``vidssl eval jhmdb``: every setting, recorded in ``results.json``."""

    root: str = option("", "JHMDB folder with Rename_Images/<action>/<clip>/ and joint_positions/<action>/<clip>/")
    split: str = option(
        "", "clips to score, one a line: <action>/<clip>, <clip>, or JHMDB's '<clip>.avi 2' (2 = test) ('' = all)"
    )
    out: str = option("runs/eval/jhmdb", "results folder: results.json and <action>/<clip>.json predictions")
    overlay: bool = option(False, "also write <action>/<clip>.mp4 with the predicted skeletons")
    alphas: tuple[float, ...] = option((0.1, 0.2), "PCK thresholds (fractions of the reference size)")


def find_clips(root: Path) -> list[str]:
    """``<action>/<clip>`` of every clip with both frames and joint positions under ``root``."""
    joints = root / "joint_positions"
    if not (root / "Rename_Images").is_dir() or not joints.is_dir():
        raise FileNotFoundError(f"{root}: expected JHMDB's Rename_Images/ and joint_positions/ folders")
    return sorted(
        f"{mat.parent.parent.name}/{mat.parent.name}"
        for mat in joints.glob("*/*/joint_positions.mat")
        if (root / "Rename_Images" / mat.parent.parent.name / mat.parent.name).is_dir()
    )


def select_clips(clips: list[str], split: Path) -> list[str]:
    """The clips a split file names. Lines are ``<action>/<clip>`` or ``<clip>``, optionally with
    ``.avi`` and a second field; with a second field (JHMDB's split files: 1 = train, 2 = test)
    only lines marked 2 are kept."""
    if not split.is_file():
        raise FileNotFoundError(f"{split}: no such split file")
    by_name = {c.split("/")[1]: c for c in clips}
    wanted = []
    for line in split.read_text().splitlines():
        fields = line.split()
        if not fields or (len(fields) > 1 and fields[1] != "2"):
            continue
        name = fields[0].removesuffix(".avi")
        clip = name if name in clips else by_name.get(name)
        if clip is None:
            raise FileNotFoundError(f"{split}: clip {name!r} has no frames and joint positions under the root")
        wanted.append(clip)
    return wanted


def evaluate_jhmdb(cfg: JhmdbEvalConfig, *, progress: bool = True) -> dict:
    """Propagate and score every clip (module docstring).

    Returns the ``results.json`` record: ``PCK@<alpha>`` for each alpha (fractions in [0, 1]),
    ``per_clip`` (each clip's PCKs and frames), ``per_joint`` (each joint type's PCKs), ``clips``,
    ``frames``, ``seconds``, ``fps``, ``features`` and ``settings`` (every key of ``cfg``).

    Raises:
        FileNotFoundError: a missing root, split file or clip.
        ValueError: an unreadable joint_positions.mat (the message names it).
    """
    if not cfg.root:
        raise ConfigError("eval jhmdb needs the JHMDB folder: vidssl eval jhmdb root=DIR encoder=...")
    root, out = Path(cfg.root), Path(cfg.out)
    clips = find_clips(root)
    if cfg.split:
        clips = select_clips(clips, Path(cfg.split))
    if not clips:
        raise ValueError(f"{root}: no clip with frames and joint_positions.mat")
    from vidssl.data.backends import list_frame_files

    extractor = extractor_for(cfg)
    started = time.perf_counter()
    rows: list[np.ndarray] = []
    per_clip: dict[str, dict] = {}
    total_frames = 0
    names: tuple[str, ...] = ()
    for clip in tqdm(clips, desc="jhmdb", unit="clip", disable=not progress):
        frames = root / "Rename_Images" / clip
        truth = read_jhmdb_mat(root / "joint_positions" / clip / "joint_positions.mat")
        count = len(list_frame_files(frames))
        if count != len(truth.xy):
            log.warning("%s: %d frames but %d annotated; scoring the first %d", clip, count, len(truth.xy),
                        min(count, len(truth.xy)))
        pred, _ = propagate_keypoints(frames, truth, out, extractor, settings=cfg, name=clip, overlay=cfg.overlay,
                                      backend="frames", progress=progress)
        used = min(len(pred), len(truth.xy))
        distances = joint_distances(pred[:used], truth.xy[:used], truth.groups)
        rows.append(distances)
        names = truth.names
        per_clip[clip] = {**{f"PCK@{a}": pck(distances, a) for a in cfg.alphas}, "frames": used}
        total_frames += len(pred)
    distances = np.concatenate(rows)
    seconds = time.perf_counter() - started
    results = {
        **{f"PCK@{a}": pck(distances, a) for a in cfg.alphas},
        "per_clip": per_clip,
        "per_joint": {
            name: {f"PCK@{a}": pck(distances[:, [j]], a) for a in cfg.alphas} for j, name in enumerate(names)
        },
        "clips": len(clips),
        "frames": total_frames,
        "seconds": seconds,
        "fps": total_frames / seconds,
        "features": extractor.name,
        **protocol_record(cfg, seen_size(root / "Rename_Images" / clips[0], cfg, backend="frames")),
    }
    save_results(out, results)
    return results

