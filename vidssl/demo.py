"""``vidssl demo``: the main job end to end on synthetic videos (about 4 minutes on 2 idle CPU cores).

1. writes synthetic training videos and harder held-out ones (more objects, so more occlusion and
   more look-alike textures; nothing of the held-out videos is seen in training) at 320 x 256, where
   objects are 8-13 stride-8 feature cells across (at 160 x 128, 3-6 cells, no encoder tracks
   them: BENCHMARKS.md, "make demo"); ``lighting`` > 0 also changes the light over every video,
   training and held-out (synth ``lighting``);
2. trains a ResNet-18 on the training videos (``method``, by default FTI with the learning
   benchmark's InfoNCE recipe, chosen on validation videos, where it led SimCLR; ``RECIPES``);
3. propagates the first-frame masks and keypoints through the held-out videos with the trained
   encoder, with the same random initialisation, and with ``pixels``, and prints one table (DAVIS
   J&F, PCK@0.1 / @0.2); every ResNet is read at ``res3`` (stride 8);
4. writes an overlay video of the trained encoder's masks and one PNG with frames of trained vs
   random vs pixels side by side;
5. exports the encoder in torchvision format and loads it back into ``torchvision.models``.

Everything is seeded: the same command gives the same videos, initialisation and samples. A demo
folder holds one configuration (``demo_config.json``): rerunning the same command continues or
reuses it; other settings are refused rather than mixed with it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw

from vidssl.config import option
from vidssl.files import atomic_path, atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    out: str = option("runs/demo", "demo folder (videos, run, evaluations, pictures, export)")
    method: Literal["fti", "colorization", "crw"] = option(
        "fti", "training method, each with a small-scale recipe (RECIPES; BENCHMARKS.md, make demo, says why fti)")
    steps: int = option(190, "training steps")
    batch_size: int = option(0, "samples per step (0: the method's demo recipe)")
    lr: float = option(0.0, "learning rate (0: the method's demo recipe)")
    image_size: int = option(64, "training crop size")
    decode_size: int = option(0, "short side the training frames are decoded at (0: the videos' own)")
    train_videos: int = option(12, "synthetic training videos")
    held_out: int = option(4, "held-out synthetic videos the encoders are scored on")
    held_out_objects: int = option(5, "objects per held-out video (2..this): more occlusion than in training")
    lighting: float = option(0.0, "changing light in every video, training and held-out (synth lighting=); 0 = none")
    frames: int = option(40, "frames per video")
    height: int = option(256, "frame height")
    width: int = option(320, "frame width")
    radius: float = option(12.0, "propagation: neighbourhood radius in stride-8 feature cells")
    topk: int = option(10, "propagation: context positions kept per target position")
    temperature: float = option(0.05, "propagation: softmax temperature of the kept affinities")
    workers: int = option(2, "loader workers")
    seed: int = option(0, "seed of the videos, the initialisation and the samples")

    def __post_init__(self) -> None:  # propagation's own checks, before minutes of training rather than after
        from vidssl.propagation.propagate import PropagationConfig

        PropagationConfig(encoder="pixels", radius=self.radius, topk=self.topk, temperature=self.temperature)


ROWS = ("trained", "random init", "pixels")

RECIPES: dict[str, dict[str, Any]] = {
    # The recipe of the learning benchmark's fti row (tools/bench_learning.py): two frames up to 30 apart as
    # positives, InfoNCE at temperature 0.1, batch 32, SGD 0.05; chosen for the demo on validation videos
    # (BENCHMARKS.md, make demo), where it led SimCLR (the same at gap 0) and colorization.
    "fti": {"loss": "infonce", "temperature": 0.1, "max_gap": 30, "proj_hidden": 512, "batch_size": 32,
            "optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4},
    "colorization": {"num_refs": 2, "ref_stride": 3, "kmeans_samples": 40, "encoder_stride": 8, "batch_size": 16,
                     "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0},
    # CRW cuts each frame into 3 x 3 patches of half its side (32 px of 64)
    "crw": {"clip_len": 4, "frame_gap": 2, "patch": 0.5, "patch_stride": 0.25, "temperature": 0.05,
            "encoder_stride": 8, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0},
}
"""Small-scale training settings per method (what fits a CPU in minutes); ``patch`` and ``patch_stride``
are fractions of the crop size."""


def _train_keys(cfg: DemoConfig) -> dict[str, Any]:
    """What the demo trains with besides its data and folder; the closing line prints the same keys, so
    the command it suggests for the user's own videos is the recipe that ran (the shipped recipe files
    are the papers' GPU settings)."""
    return {"encoder": "resnet18", "image_size": cfg.image_size, "steps": cfg.steps, **_recipe_keys(cfg)}


def _recipe_keys(cfg: DemoConfig) -> dict[str, Any]:
    """The training keys of ``cfg.method``'s recipe, with the demo's own overrides."""
    keys = dict(RECIPES[cfg.method])
    for name in ("patch", "patch_stride"):
        if name in keys:
            keys[name] = round(keys[name] * cfg.image_size)
    if cfg.batch_size:
        keys["batch_size"] = cfg.batch_size
    if cfg.lr:
        keys["lr"] = cfg.lr
    return keys


def run_demo(cfg: DemoConfig, *, progress: bool = True) -> dict:
    """Run the five steps of the module docstring under ``cfg.out``; returns the summary record
    (also ``out/demo.json``)."""
    from vidssl.data.synth import SynthConfig, generate
    from vidssl.engine.trainer import run_config, train
    from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis

    out = Path(cfg.out)
    _claim(out, cfg)
    size = dict(num_frames=cfg.frames, height=cfg.height, width=cfg.width, lighting=cfg.lighting)
    train_data, held = out / "synth_train", out / "synth_held_out"
    if not (train_data / "synth.json").exists():
        generate(train_data, SynthConfig(out=str(train_data), num_videos=cfg.train_videos, seed=cfg.seed, **size),
                 progress=progress)
    if not (held / "synth.json").exists():
        generate(held, SynthConfig(out=str(held), num_videos=cfg.held_out, num_objects=cfg.held_out_objects,
                                   seed=cfg.seed + 1000, **size), progress=progress)

    run = out / "train"
    train_cfg, method_cfg = run_config(
        method=cfg.method, data=str(train_data / "videos"), out=str(run), decode_size=_decode_size(cfg),
        workers=cfg.workers, warmup_steps=max(1, cfg.steps // 10), seed=cfg.seed, log_every=max(1, cfg.steps // 10),
        save_every=max(1, cfg.steps // 4), **_train_keys(cfg),
        resume=(run / "config.yaml").exists())  # a killed demo continues its run
    if not (run / "encoder.safetensors").exists():
        train(train_cfg, method_cfg)

    # every ResNet read at res3 (CRW's trunk, stride 8), as the learning benchmark reads every row
    layer = "res3"
    specs = {"trained": str(run), "random init": "random:resnet18", "pixels": "pixels"}
    table: dict[str, dict[str, float]] = {}
    for row, encoder in specs.items():  # each encoder reads what it was trained on (input=auto)
        key = row.replace(" ", "_")
        settings = dict(encoder=encoder, seed=cfg.seed, stride=8,
                        layer=layer if row != "pixels" else "", context=10, radius=cfg.radius, topk=cfg.topk,
                        temperature=cfg.temperature)
        davis = evaluate_davis(DavisEvalConfig(root=str(held / "davis"), out=str(out / "eval" / key),
                                               overlay=row == "trained", **settings), progress=progress)
        points = synthetic_keypoint_pck(held, out / "eval" / key / "keypoints", settings, progress)
        table[row] = {"J&F": davis["J&F"], **points}

    picture = side_by_side(held / "davis", out / "eval", out / "trained_vs_random_vs_pixels.png")
    first = sorted(p for p in (out / "eval" / "trained").glob("*.mp4"))
    export = out / "encoder_torchvision.pth"
    _export_and_reload(run, export)
    record = {"table": table, "picture": str(picture), "overlay": str(first[0]) if first else "",
              "export": str(export), "config": dataclasses.asdict(cfg),
              "train_keys": " ".join(f"{k}={v}" for k, v in _train_keys(cfg).items())}
    atomic_write_json(out / "demo.json", record)
    return record


def _decode_size(cfg: DemoConfig) -> int:
    return cfg.decode_size or min(cfg.height, cfg.width)


def _settings(cfg: DemoConfig) -> dict[str, Any]:
    """What a demo folder's videos, run and scores depend on: ``cfg`` with the recipe resolved (loader
    workers and the folder aside)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "workers", "batch_size", "lr",
                                                                           "decode_size")}
    return {**fields, "decode_size": _decode_size(cfg), "recipe": _recipe_keys(cfg)}


def _claim(out: Path, cfg: DemoConfig) -> None:
    """Record the settings in ``out/demo_config.json``, or check that the folder's demo was made with
    them: its videos and run are reused, so other settings would mix two demos."""
    record = out / "demo_config.json"
    wanted = json.loads(json.dumps(_settings(cfg)))  # as the file holds it (tuples as lists)
    if record.exists():
        held = json.loads(record.read_text())
        changed = [f"{k} {held.get(k)!r} -> {wanted[k]!r}" for k in sorted(wanted) if held.get(k) != wanted[k]]
        if changed:
            raise ValueError(f"{out}: holds a demo made with other settings ({'; '.join(changed)}); remove the folder "
                             "(rm -rf it) or choose another out=")
        return
    if (out / "synth_train").exists() or (out / "train").exists():
        raise ValueError(f"{out}: holds a demo of an earlier vidssl (no demo_config.json); remove the folder (rm -rf "
                         "it) or choose another out=")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, wanted)


def synthetic_keypoint_pck(held: Path, out: Path, settings: dict[str, Any], progress: bool) -> dict[str, float]:
    """PCK@0.1 / @0.2 of the synthetic keypoints propagated from the first frame (every object's 5
    points; occluded truth not scored), pooled over the held-out videos."""
    from vidssl.data.synth import NUM_KEYPOINTS
    from vidssl.evaluation.jhmdb_metrics import joint_distances, pck
    from vidssl.propagation.keypoints import read_keypoints
    from vidssl.propagation.propagate import PropagationConfig, extractor_for, propagate_keypoints

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
    d = np.concatenate(distances)
    return {"PCK@0.1": pck(d, 0.1), "PCK@0.2": pck(d, 0.2)}


def side_by_side(davis: Path, evals: Path, path: Path, *, frames: int = 3, scale: int = 0) -> Path:
    """A PNG: rows are frames of the first held-out video (later and later), columns the ground
    truth and each encoder's propagated masks drawn over the frame, enlarged ``scale`` times (0: to
    about 320 px wide, so small frames stay visible)."""
    from vidssl.propagation.masks import read_mask

    seq = sorted((davis / "JPEGImages" / "480p").iterdir())[0]
    names = sorted(p.stem for p in seq.glob("*.jpg"))
    picks = [names[round(i * (len(names) - 1) / frames)] for i in range(1, frames + 1)]
    columns = [("ground truth", davis / "Annotations" / "480p" / seq.name)]
    columns += [(row, evals / row.replace(" ", "_") / seq.name) for row in ROWS]
    palette = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                        [145, 30, 180], [70, 240, 240]], dtype=np.float32)
    tiles = []
    for name in picks:
        image = np.asarray(Image.open(seq / f"{name}.jpg").convert("RGB"), dtype=np.float32)
        scale = scale or max(1, round(320 / image.shape[1]))
        gray = image.mean(axis=2, keepdims=True)
        row = []
        for _, folder in columns:
            mask = read_mask(folder / f"{name}.png")
            colour = palette[np.clip(mask, 0, len(palette) - 1)]
            # labels in solid colour over the frame in dimmed gray, so they read apart from the textures
            blend = np.where(mask[..., None] > 0, 0.2 * gray + 0.8 * colour, 0.7 * gray)
            row.append(np.kron(blend, np.ones((scale, scale, 1))))
        tiles.append(np.concatenate(row, axis=1))
    grid = np.concatenate(tiles, axis=0).astype(np.uint8)
    header = 18
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + header), "white")
    canvas.paste(Image.fromarray(grid), (0, header))
    draw = ImageDraw.Draw(canvas)
    width = grid.shape[1] // len(columns)
    for i, (title, _) in enumerate(columns):
        draw.text((i * width + 4, 3), f"{title}", fill="black")
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def _export_and_reload(run: Path, path: Path) -> None:
    """Export in torchvision format and load it into a plain torchvision ResNet-18 (all but fc)."""
    import torchvision

    from vidssl.engine.checkpoint import encoder_from_checkpoint
    from vidssl.export import save_encoder
    from vidssl.features import with_stride

    # the same weights in torchvision's stride-32 network (a stride-8 ResNet differs only in conv strides)
    save_encoder(with_stride(encoder_from_checkpoint(run), 32), path, format="torchvision")
    missing, unexpected = torchvision.models.resnet18().load_state_dict(torch.load(path, weights_only=True),
                                                                        strict=False)
    if sorted(missing) != ["fc.bias", "fc.weight"] or unexpected:
        raise RuntimeError(f"{path}: did not load into torchvision.models.resnet18 ({missing}, {unexpected})")


def format_summary(record: dict) -> str:
    """The table and the three closing lines."""
    table = record["table"]
    lines = [f"{'encoder':<12} {'J&F':>7} {'PCK@0.1':>8} {'PCK@0.2':>8}"]
    lines += [f"{row:<12} {r['J&F']:>7.3f} {r['PCK@0.1']:>8.3f} {r['PCK@0.2']:>8.3f}" for row, r in table.items()]
    trained, random = table["trained"], table["random init"]
    lines += [
        "",
        f"learned: {record['config']['method']} on {record['config']['train_videos']} unlabelled videos moved "
        f"held-out J&F from {random['J&F']:.3f} (random init) to {trained['J&F']:.3f} "
        f"(pixels {table['pixels']['J&F']:.3f}); keypoint PCK@0.2 {random['PCK@0.2']:.3f} -> "
        f"{trained['PCK@0.2']:.3f} ({'better' if trained['PCK@0.2'] > random['PCK@0.2'] else 'not better'})",
        f"pictures: {record['picture']} and {record['overlay']}; torchvision: "
        f"resnet18().load_state_dict(torch.load('{record['export']}'), strict=False)",
        f"next: vidssl train {record['config']['method']}.yaml ~/your/videos out=runs/mine {record['train_keys']}  "
        "(then: vidssl eval davis root=DAVIS encoder=runs/mine)",
    ]
    return "\n".join(lines)


def main_record(cfg: DemoConfig) -> str:
    """Run the demo and return the text it prints."""
    record = run_demo(cfg)
    log.info("%s", json.dumps(record["table"]))
    return format_summary(record)
