"""Invariances of several encoders on one set of real-video image sets, under both protocols.

    python tools/bench_invariance.py tracks=runs/tracks data=~/videos out=runs/inv_table \
        "encoders=(random=random:resnet18, fti=runs/fti, coco=yolo:PATH/yolov8n_int8_openvino_model)"

The sets (viewpoint, illumination, occlusion, instance) are built once from a ``vidssl tracks``
folder (:func:`vidssl.evaluation.invariance.tracks_from_folder`, ``build_labelled_sets``), every
encoder sees the same images, and each is scored with ``protocol=vidssl`` (:func:`score_sets`, mean L
of the top-k neurons in [0, 1]) and ``protocol=paper`` (:func:`paper_scores`, the authors' released
measure, 0-100), exactly as ``vidssl eval invariance`` does for one encoder.

An encoder is ``NAME=SPEC``: SPEC is anything ``encoder=`` takes (run folder, ``.safetensors``,
``random:NAME``; each is fed what it was trained on, Lab lightness for colorization: ``input=auto``)
or ``yolo:DIR``, the backbone of an ultralytics YOLOv8 OpenVINO export (layers 0-9,
CSPDarknet up to SPPF; needs ``openvino``), read as a supervised encoder: crops as RGB in [0, 1]
(ultralytics' input), the SPPF output averaged over space (256 channels for YOLOv8n).

Writes ``OUT/results.json`` (per encoder and protocol, the rows of both measures; settings; the
track counts), ``OUT/vidssl_top25.png`` and ``OUT/paper_top25.png``; prints a Markdown table; the
last line is one JSON object.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidssl.config import option, parse_overrides, to_dict
from vidssl.evaluation.invariance import (
    TRANSFORMATIONS,
    build_labelled_sets,
    paper_scores,
    paper_set_labels,
    plot_comparison,
    score_sets,
    sets_features,
    tracks_from_folder,
)
from vidssl.evaluation.results import save_results
from vidssl.features import encoder_input


@dataclass(frozen=True)
class BenchConfig:
    tracks: str = option("", "a 'vidssl tracks' folder")
    data: str = option("", "its videos ('' takes the folder in tracks.json)")
    out: str = option("runs/invariance_table", "output folder")
    encoders: tuple[str, ...] = option(("random=random:resnet18",), "NAME=SPEC, SPEC an encoder= value or yolo:DIR")
    sets: int = option(64, "at most this many sets per transformation")
    images_per_set: int = option(8, "images per set")
    image_size: int = option(64, "crop size seen by every encoder")
    min_box: float = option(32.0, "drop boxes whose shorter side is below this (native pixels)")
    min_track: int = option(8, "drop tracks with fewer boxes than this")
    rate: float = option(0.01, "protocol=vidssl firing rate")
    topk: tuple[int, ...] = option((10, 25), "numbers of top neurons")
    classes: str = option("auto", "protocol=paper classes: auto | object | set")
    seed: int = option(0, "seed of the sets and of random: encoders")
    batch_size: int = option(64, "images per forward pass")


def yolo_backbone_features(folder: Path, *, batch_size: int = 64) -> Callable[[torch.Tensor], torch.Tensor]:
    """(N, 3, S, S) uint8 -> (N, C) features of a YOLOv8 OpenVINO export's backbone (to the SPPF
    block, ``/model.9/cv2/act``), reshaped to the crops' size and averaged over space."""
    from vidssl.tracking.offline import block_openvino_telemetry

    block_openvino_telemetry()  # before the first import: openvino would otherwise send a usage event
    import openvino as ov

    xml = next(Path(folder).glob("*.xml"), None)
    if xml is None:
        raise FileNotFoundError(f"{folder}: no OpenVINO .xml model")
    core = ov.Core()
    model = core.read_model(xml)
    sppf = [op for op in model.get_ops() if op.get_friendly_name() == "/model.9/cv2/act/Mul"]
    if not sppf:
        raise ValueError(f"{xml}: no /model.9/cv2/act/Mul node (not a YOLOv8 detector export)")
    backbone = ov.Model([sppf[0].output(0)], model.get_parameters(), "backbone")

    def embed(images: torch.Tensor) -> torch.Tensor:
        backbone.reshape({0: [batch_size, 3, images.shape[2], images.shape[3]]})
        compiled = core.compile_model(backbone, "CPU")
        out = []
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].float().div(255).numpy()
            n = chunk.shape[0]
            padded = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)])
            out.append(torch.from_numpy(compiled(padded)[0][:n]).float().mean(dim=(2, 3)))
        return torch.cat(out)

    return embed


def features_of(spec: str, sets: dict[str, list[torch.Tensor]], cfg: BenchConfig, *,
                gray: bool) -> dict[str, list[torch.Tensor]]:
    """Per transformation, one (n_j, D) feature tensor per set, for the encoder ``spec``."""
    if spec.startswith("yolo:"):
        embed = yolo_backbone_features(Path(spec[len("yolo:"):]), batch_size=cfg.batch_size)
        flat = [s for name in sets for s in sets[name]]
        parts = iter(torch.split(embed(torch.cat(flat)), [s.shape[0] for s in flat]))
        return {name: [next(parts) for _ in sets[name]] for name in sets}
    from vidssl.features import resolve_encoder

    return sets_features(resolve_encoder(spec, seed=cfg.seed), sets, batch_size=cfg.batch_size, device="cpu",
                         gray=gray)


def _cell(value: float | int | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def main(argv: list[str]) -> int:
    cfg = parse_overrides(BenchConfig, argv)
    source = tracks_from_folder(cfg.tracks, data=cfg.data, min_box=cfg.min_box, min_track=cfg.min_track)
    print(f"{cfg.tracks}: " + ", ".join(f"{k} {v}" for k, v in source.counts.items()))
    sets, classes = {}, {}
    for name in TRANSFORMATIONS:
        sets[name], classes[name] = build_labelled_sets(
            source.tracks, transformation=name, sets=cfg.sets, images_per_set=cfg.images_per_set,
            image_size=cfg.image_size, seed=cfg.seed, root=source.root,
        )
    specs = dict(item.partition("=")[::2] for item in cfg.encoders)  # label -> spec
    # what each encoder is fed: yolo backbones RGB, the others what their method trained them on
    inputs = {label: "rgb" if spec.startswith("yolo:") else encoder_input(spec) for label, spec in specs.items()}
    results: dict = {"vidssl": {}, "paper": {}}
    for label, spec in specs.items():
        features = features_of(spec, sets, cfg, gray=inputs[label] == "gray")
        results["vidssl"][label] = score_sets(features, rate=cfg.rate, topk=cfg.topk)
        results["paper"][label] = {
            name: paper_scores(features[name], paper_set_labels(name, classes[name], cfg.classes), topk=cfg.topk)
            for name in TRANSFORMATIONS
        }
    results["settings"] = {
        **to_dict(cfg), "data": str(source.root), "track_counts": source.counts,
        "sets": {name: len(sets[name]) for name in TRANSFORMATIONS},
        "images": {name: sum(s.shape[0] for s in sets[name]) for name in TRANSFORMATIONS},
        "class_labels": {name: sorted(set(classes[name])) for name in TRANSFORMATIONS},
        "inputs": inputs,
    }
    out = Path(cfg.out)
    save_results(out, results)
    k = max(cfg.topk)
    plot_comparison(results["vidssl"], out / f"vidssl_top{k}.png", key=f"top{k}",
                    title=f"protocol=vidssl: mean L of the top-{k} neurons")
    plot_comparison(results["paper"], out / f"paper_top{k}.png", key=f"top{k}", ymax=100.0,
                    title=f"protocol=paper (released code): top-{k} score")
    header = " | ".join(f"{t} {p}" for p in ("vidssl", "paper") for t in TRANSFORMATIONS)
    print(f"| encoder | {header} |")
    print("|---" * (1 + 2 * len(TRANSFORMATIONS)) + "|")
    for label in results["vidssl"]:
        cells = [_cell(results[p][label][t][f"top{k}"]) for p in ("vidssl", "paper") for t in TRANSFORMATIONS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    summary = {p: {label: {t: rows[t][f"top{k}"] for t in TRANSFORMATIONS} for label, rows in results[p].items()}
               for p in ("vidssl", "paper")}
    print(json.dumps({"top_k": k, **summary, "images": results["settings"]["images"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
