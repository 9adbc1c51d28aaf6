"""The learning benchmark on the developers' shared data (BENCHMARKS.md, "Learning benchmark"):
``vidssl bench`` with the shared videos, DAVIS-2016 dev, the JHMDB clip and every CPU recipe.

    python tools/bench_learning.py                        # every row (cached: re-running continues)
    python tools/bench_learning.py recipes=cpu/crw        # one recipe; any 'vidssl bench' key works
    python tools/bench_learning.py cached=true            # report what exists, compute nothing

This file holds only the data and the protocol; the benchmark is :mod:`vidssl.bench` and the
recipes are ``vidssl/recipes/cpu/*.yaml``. Before calling it, this script prepares the data the
way the published rows used it: the videos re-encoded at short side ``size`` (``vidssl prepare``,
into ``OUT/data``), and for ``fti_tracks`` the shared YOLO detector's tracks (``vidssl tracks``,
scaled to the prepared clips by ``tools/scale_tracks.py``). Its own keys: ``videos`` (the raw
videos), ``size``, ``detector``; every other ``key=value`` goes to ``vidssl bench`` over the
defaults below (``vidssl bench --help`` lists them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SHARED = Path("../shared/data")
OWN = {"videos": str(SHARED / "videos"), "size": "160", "detector": str(SHARED / "detectors" /
                                                                        "yolo11n_int8_openvino_model")}
# The protocol of the published rows (chosen before any score was seen): one shared ResNet-18
# initialisation, 50 million encoder input pixels per recipe, clips decoded at short side 96 (from 160),
# every score with CRW's propagation protocol.
BENCH = {
    "out": "runs/bench_learning",
    "recipes": "cpu/colorization,cpu/fti,cpu/simclr,cpu/fti_moco,cpu/fti_tracks,cpu/cpc,cpu/crw,cpu/vfs",
    "baselines": "copy,pixels,random",
    "evals": "davis,jhmdb,synth,knn,linear",
    "davis": str(SHARED / "davis2016"),
    "split": str(SHARED / "davis2016" / "ImageSets" / "dev.txt"),
    "jhmdb": str(SHARED / "jhmdb"),
    "budget_mpx": "50",
    "overrides": "(decode_size=96,workers=1,warmup_steps=10,log_every=10,save_every=50)",
    "title": "Learning benchmark: ResNet-18, 50 Mpx per recipe from one initialisation, shared real videos",
}


def main(argv: list[str]) -> int:
    from vidssl.cli import main as vidssl

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return vidssl(["bench", "--help"])
    given = dict(a.split("=", 1) for a in argv if "=" in a)
    own = {k: given.pop(k, v) for k, v in OWN.items()}
    keys = {**BENCH, **given}
    out = Path(keys["out"])
    data, full, tracks = out / "data", out / "tracks_full", out / "tracks"
    with_tracks = "fti_tracks" in keys["recipes"]
    if keys.get("cached", "false").lower() not in ("true", "1", "yes", "on"):
        # always: prepare skips the videos it finished, so a killed prepare completes instead of leaving a subset
        code = vidssl(["prepare", own["videos"], f"out={data}", f"size={own['size']}"])
        if code:
            return code
        if with_tracks and not (tracks / "tracks.json").exists():
            if not (full / "tracks.json").exists():
                code = vidssl(["tracks", own["videos"], f"out={full}", f"detector={own['detector']}",
                               "tracker=bytetrack", "min_score=0.25", "min_box=32"])
                if code:
                    return code
            subprocess.run([sys.executable, str(Path(__file__).with_name("scale_tracks.py")), str(full), str(data),
                            str(tracks)], check=True)
    keys = {"videos": str(data), **({"tracks": str(tracks)} if with_tracks else {}), **keys}
    return vidssl(["bench", *(f"{k}={v}" for k, v in keys.items())])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
