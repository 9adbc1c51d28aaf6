"""Random init vs trained encoders under the same short budget, on the synthetic image tasks.

    python tools/compare_encoders.py [steps=150] [encoder=resnet18] [methods=(fti, simclr)] [out=runs/compare]

Trains each of ``methods`` with identical settings and seed on the synthetic videos: ``fti`` (frame
pairs up to ``max_gap`` apart), ``simclr`` (gap 0), ``fti+tracks`` (FTI plus object-track crop
pairs from the synthetic ground-truth tracks, written by ``vidssl tracks detector=groundtruth``)
and ``track`` (track pairs alone). Then evaluates them and the shared random initialisation with
the linear probe (L-BFGS), weighted kNN (k=20, 200) and the invariance measurement (Purushwalkam &
Gupta 2020) on held-out synthetic videos. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from vidssl.config import option, parse_overrides
from vidssl.data.synth import SynthConfig, generate
from vidssl.engine.trainer import run_config, train
from vidssl.evaluation.invariance import InvarianceConfig, run_invariance
from vidssl.evaluation.knn import KnnEvalConfig, run_knn
from vidssl.evaluation.linear import LinearEvalConfig, run_linear


@dataclass(frozen=True)
class CompareConfig:
    out: str = option("runs/compare", "output folder")
    encoder: str = option("resnet18", "architecture trained by both methods")
    steps: int = option(150, "optimizer steps per method (the shared budget)")
    batch_size: int = option(32, "pairs per step")
    image_size: int = option(64, "training crop size")
    max_gap: int = option(12, "FTI: largest gap between the two frames (frames)")
    num_videos: int = option(24, "synthetic training videos")
    workers: int = option(2, "loader workers")
    seed: int = option(0, "seed of data, initialisation and training")
    methods: tuple[str, ...] = option(("fti", "simclr"), "fti | simclr | fti+tracks | track")


def _ground_truth_tracks(synth: Path, out: Path) -> Path:
    """Tracks of the synthetic objects: their true boxes through ByteTrack (``vidssl tracks``)."""
    from vidssl.tracking.run import TracksConfig, track_folder

    if not (out / "tracks.json").exists():
        track_folder(replace(TracksConfig(), data=str(synth / "videos"), out=str(out), detector="groundtruth",
                             min_box=8, min_track=8))
    return out


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(CompareConfig, argv)
    out = Path(cfg.out)
    videos = out / "synth_train"
    if not (videos / "synth.json").exists():
        generate(videos, SynthConfig(num_videos=cfg.num_videos, num_frames=48, height=128, width=160,
                                     seed=cfg.seed + 1))
    base = dict(data=str(videos / "videos"), encoder=cfg.encoder, steps=cfg.steps, batch_size=cfg.batch_size,
                image_size=cfg.image_size, decode_size=cfg.image_size + 8, workers=cfg.workers, proj_hidden=512,
                optimizer="adamw", lr=1e-3, weight_decay=1e-6, warmup_steps=cfg.steps // 10, log_every=10,
                save_every=10**9, seed=cfg.seed)
    encoders = {"random init": f"random:{cfg.encoder}"}
    names = {"fti": "FTI", "simclr": "SimCLR", "fti+tracks": "FTI+tracks", "track": "tracks only"}
    for method in cfg.methods:
        if method not in names:
            raise ValueError(f"methods: unknown {method!r}; choose from {', '.join(names)}")
        run = out / method.replace("+", "_")
        extra: dict = {"method": "simclr" if method == "simclr" else "fti"}
        if "track" in method:  # object-track positives: a pair source of FTI's loss
            extra.update(tracks=str(_ground_truth_tracks(videos, out / "tracks")),
                         positives="both" if method == "fti+tracks" else "tracks")
        if not (run / "encoder.safetensors").exists():
            train(*run_config(**base, **extra, max_gap=cfg.max_gap, out=str(run)))
        encoders[names[method]] = str(run / "encoder.safetensors")

    table: dict[str, dict] = {}
    for name, spec in encoders.items():
        key = name.split()[0].lower().replace("+", "_")
        where = out / "eval" / key
        # built afresh, not replace()d from a default: `input=auto` is resolved for this encoder
        linear = run_linear(LinearEvalConfig(encoder=spec, out=str(where / "linear"), seed=cfg.seed))
        knn = run_knn(KnnEvalConfig(encoder=spec, out=str(where / "knn"), seed=cfg.seed))
        inv = run_invariance(InvarianceConfig(encoder=spec, data="", out=str(where / "invariance"), seed=cfg.seed))
        table[name] = {
            "linear_top1": linear["top1"],
            **{f"knn{k}_top1": v["top1"] for k, v in knn["by_k"].items()},
            **{f"inv_{t}_top25": r.get("top25") for t, r in inv.items() if t != "settings"},
        }
    columns = list(next(iter(table.values())))
    print("| encoder | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in table.items():
        cells = ["-" if row[c] is None else f"{row[c]:.3f}" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "results": table}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
