"""``vidssl demo``: the main job end to end on synthetic videos (about 4 minutes on 2 idle CPU cores).

1. writes synthetic training videos and harder held-out ones (more objects, so more occlusion and
   more look-alike textures; nothing of the held-out videos is seen in training) at 320 x 256, where
   objects are 8-13 stride-8 feature cells across (at 160 x 128, 3-6 cells, no encoder tracks
   them: BENCHMARKS.md, "make demo"); ``lighting`` > 0 also changes the light over every video,
   training and held-out (synth ``lighting``);
2. trains a ResNet-18 on the training videos with the CPU recipe of ``method``
   (``vidssl/recipes/cpu/METHOD.yaml``, the file the learning benchmark trains too; by default
   ``cpu/fti``, FTI with InfoNCE, chosen on validation videos, where it led SimCLR), the demo's own
   data, folder and loader given on top, and prints that command (:func:`train_command`);
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
from vidssl.engine.config import find_recipe
from vidssl.files import atomic_path, atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    out: str = option("runs/demo", "demo folder (videos, run, evaluations, pictures, export)")
    method: Literal["fti", "colorization", "crw"] = option(
        "fti", "training method, trained with its CPU recipe vidssl/recipes/cpu/METHOD.yaml (BENCHMARKS.md, make "
        "demo, says why fti)")
    steps: int = option(0, "training steps, warmup a tenth of them (0: the recipe's)")
    batch_size: int = option(0, "samples per step (0: the recipe's)")
    lr: float = option(0.0, "learning rate (0: the recipe's)")
    image_size: int = option(0, "training crop size, CRW's patches scaled with it (0: the recipe's)")
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


def recipe_name(cfg: DemoConfig) -> str:
    """The shipped CPU recipe the demo trains with (``vidssl/recipes/cpu/METHOD.yaml``)."""
    return f"cpu/{cfg.method}.yaml"


def train_overrides(cfg: DemoConfig, data: Path, run: Path) -> dict[str, Any]:
    """The keys the demo gives on top of its recipe: its videos and run folder, then each of its
    own settings that differs from the recipe's value, in the order printed (:func:`train_command`)."""
    from vidssl.engine.config import config_dict, read_recipe, resolve

    recipe = read_recipe(recipe_name(cfg))
    wanted: dict[str, Any] = {"decode_size": _decode_size(cfg), "workers": cfg.workers, "seed": cfg.seed}
    if cfg.steps:  # warmup, logging and checkpoints follow the steps, as the recipe's do (190: 19, 19, 47)
        wanted |= {"steps": cfg.steps, "warmup_steps": max(1, cfg.steps // 10), "log_every": max(1, cfg.steps // 10),
                   "save_every": max(1, cfg.steps // 4)}
    if cfg.image_size:
        wanted["image_size"] = cfg.image_size
        for name in ("patch", "patch_stride"):  # CRW's patches are a fixed fraction of the crop (32 and 16 of 64)
            if name in recipe:
                wanted[name] = max(1, round(recipe[name] * cfg.image_size / recipe["image_size"]))
    if cfg.batch_size:
        wanted["batch_size"] = cfg.batch_size
    if cfg.lr:
        wanted["lr"] = cfg.lr
    resolved = config_dict(*resolve([], recipe=recipe))
    have = {**resolved["train"], **resolved["method"]}
    return {"data": str(data), "out": str(run), **{k: v for k, v in wanted.items() if have[k] != v}}


def train_command(cfg: DemoConfig, data: Path, run: Path) -> str:
    """``vidssl train RECIPE DATA out=RUN key=value ...``: the command that trains what the demo
    trains (the same resolution as the command line: :func:`train_configs` parses these keys)."""
    import shlex

    keys = train_overrides(cfg, data, run)
    rest = [shlex.quote(f"{k}={v}") for k, v in keys.items() if k not in ("data", "out")]
    return shlex.join(["vidssl", "train", recipe_name(cfg), keys["data"], f"out={keys['out']}"]) + "".join(
        f" {r}" for r in rest)


def train_configs(cfg: DemoConfig, data: Path, run: Path) -> tuple[Any, Any]:
    """The (TrainConfig, method Config) the demo trains with: its recipe file and overrides, resolved
    as ``vidssl train`` resolves them."""
    from vidssl.engine.config import read_recipe, resolve

    keys = train_overrides(cfg, data, run)
    return resolve([f"{k}={v}" for k, v in keys.items()], recipe=read_recipe(recipe_name(cfg)))


def run_demo(cfg: DemoConfig, *, progress: bool = True) -> dict:
    """Run the five steps of the module docstring under ``cfg.out``; returns the summary record
    (also ``out/demo.json``)."""
    from vidssl.data.synth import SynthConfig, generate
    from vidssl.engine.trainer import train
    from vidssl.evaluation.davis import DavisEvalConfig, evaluate_davis
    from vidssl.evaluation.synth import synthetic_keypoint_pck

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
    train_cfg, method_cfg = train_configs(cfg, train_data / "videos", run)
    if not (run / "encoder.safetensors").exists():
        resume = (run / "config.yaml").exists()  # a killed demo continues its run
        train(dataclasses.replace(train_cfg, resume=resume), method_cfg)

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
              "recipe": str(find_recipe(recipe_name(cfg))),
              "train_command": train_command(cfg, train_data / "videos", run)}
    atomic_write_json(out / "demo.json", record)
    return record


def _decode_size(cfg: DemoConfig) -> int:
    return cfg.decode_size or min(cfg.height, cfg.width)


def _settings(cfg: DemoConfig) -> dict[str, Any]:
    """What a demo folder's videos, run and scores depend on: the videos' and propagation's keys of
    ``cfg``, and the training config resolved from the recipe (the folder and the loader aside)."""
    from vidssl.engine.config import config_dict

    training = ("out", "workers", "method", "steps", "batch_size", "lr", "image_size", "decode_size")
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in training}
    run = Path(cfg.out) / "train"
    resolved = config_dict(*train_configs(cfg, Path(cfg.out) / "synth_train" / "videos", run))
    engine = {k: v for k, v in resolved["train"].items() if k not in ("data", "out", "workers", "resume", "overwrite")}
    return {**fields, **engine, **{f"method.{k}": v for k, v in resolved["method"].items()}}


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
    """The table and the four closing lines."""
    table = record["table"]
    lines = [f"{'encoder':<12} {'J&F':>7} {'PCK@0.1':>8} {'PCK@0.2':>8}"]
    lines += [f"{row:<12} {r['J&F']:>7.3f} {r['PCK@0.1']:>8.3f} {r['PCK@0.2']:>8.3f}" for row, r in table.items()]
    trained, random = table["trained"], table["random init"]
    gain = round(trained["PCK@0.2"], 3) - round(random["PCK@0.2"], 3)  # as printed: 0.362 -> 0.362 is no gain
    verdict = "better" if gain > 0 else "the same" if gain == 0 else "not better"
    lines += [
        "",
        f"learned: {record['config']['method']} on {record['config']['train_videos']} unlabelled videos moved "
        f"held-out J&F from {random['J&F']:.3f} (random init) to {trained['J&F']:.3f} "
        f"(pixels {table['pixels']['J&F']:.3f}); keypoint PCK@0.2 {random['PCK@0.2']:.3f} -> "
        f"{trained['PCK@0.2']:.3f} ({verdict})",
        f"pictures: {record['picture']} and {record['overlay']}; torchvision: "
        f"resnet18().load_state_dict(torch.load('{record['export']}'), strict=False)",
        f"trained with: {record['train_command']}  (recipe file {record['recipe']})",
        f"next: the same on your videos: {_on_your_videos(record['train_command'])}  "
        "(then: vidssl eval davis root=DAVIS encoder=runs/mine)",
    ]
    return "\n".join(lines)


def _on_your_videos(command: str) -> str:
    """``command`` with the demo's videos and run folder replaced by the user's."""
    import shlex

    argv = shlex.split(command)
    argv[3] = "~/your/videos"
    argv[4] = "out=runs/mine"
    return " ".join(argv[:3]) + " ~/your/videos " + shlex.join(argv[4:])


def main_record(cfg: DemoConfig) -> str:
    """Run the demo and return the text it prints."""
    record = run_demo(cfg)
    log.info("%s", json.dumps(record["table"]))
    return format_summary(record)
