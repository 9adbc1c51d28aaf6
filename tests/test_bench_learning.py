"""tools/bench_learning.py at a tiny size: the pipeline runs, the rows come out, and a second
run reuses what the first computed (the benchmark is a cache that a killed run continues)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_learning.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("bench_learning", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_learning"] = module
    spec.loader.exec_module(module)
    return module


def test_a_missing_data_folder_is_one_line_naming_it(tmp_path) -> None:
    tool = load_tool()
    with pytest.raises(SystemExit, match=r"nowhere: no such folder \(give davis=PATH"):
        tool.main([f"out={tmp_path}", "rows=(copy,)", "evals=(davis,)", "davis=nowhere"])


def test_every_method_gets_the_same_pixel_budget() -> None:
    tool = load_tool()
    cfg = tool.BenchConfig(budget_mpx=50.0)
    for name in tool.RECIPES:
        argv, steps = tool.train_command(cfg, name, Path("data"), Path("tracks"))
        keys = dict(a.split("=", 1) for a in argv[4:])
        assert keys["steps"] == str(steps) and keys["weights"].endswith("init.safetensors")
        per_step = tool.pixels_per_step(name, {**tool.COMMON, **tool.RECIPES[name]})
        assert steps * per_step >= 50e6 > (steps - 1) * per_step  # the budget, rounded up to a whole step
    # the counts follow each method's views: colorization sees refs + target, crw its patches
    colorization = {**tool.COMMON, **tool.RECIPES["colorization"]}
    assert tool.pixels_per_step("colorization", colorization) == 16 * 3 * 64 * 64
    crw = {**tool.COMMON, **tool.RECIPES["crw"]}
    assert tool.pixels_per_step("crw", crw) == 8 * 4 * 9 * 32 * 32


@pytest.mark.slow
def test_bench_runs_and_continues_from_its_cache(tmp_path, synth_dir, cache_dir, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tool = load_tool()
    out = tmp_path / "bench"
    args = [f"out={out}", f"videos={synth_dir / 'videos'}", f"davis={synth_dir / 'davis'}", "jhmdb=",
            "rows=(copy,random,fti)", "evals=(davis,)", "budget_mpx=0.3", "size=96",
            f"split={write_split(tmp_path, synth_dir)}"]
    assert tool.main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    table = last["table"]
    assert list(table) == ["copy", "random", "fti"]
    for row in table.values():
        assert 0 <= row["DAVIS J&F"] <= 1 and row["synth J&F"] is None
    assert table["fti"]["steps"] == 2 and (out / "train" / "fti" / "encoder.safetensors").exists()
    assert (out / "learning.png").stat().st_size > 0
    record = json.loads((out / "results.json").read_text())
    assert record["scores"]["random"]["davis"]["settings"]["preset"] == "crw"
    # the random row is the shared initialisation every method started from
    assert record["training"]["fti"]["argv"][-2] == f"weights={out / 'init.safetensors'}"
    # a second run trains nothing and scores nothing again
    stamp = (out / "eval" / "fti" / "davis" / "results.json").stat().st_mtime_ns
    assert tool.main(args) == 0
    assert capsys.readouterr().out.count("training") == 0
    assert (out / "eval" / "fti" / "davis" / "results.json").stat().st_mtime_ns == stamp
    assert (out / "logs" / "train_fti.log").read_text().count("$ vidssl train") == 1
    # cached=true reports what exists and computes nothing (crw is neither trained nor scored)
    report = [a for a in args if not a.startswith("rows=")] + ["rows=(copy,random,fti,crw)", "cached=true"]
    assert tool.main(report) == 0
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["table"]
    assert table["crw"]["DAVIS J&F"] is None and table["fti"]["DAVIS J&F"] is not None
    assert not (out / "train" / "crw").exists()


def write_split(tmp_path: Path, synth_dir: Path) -> Path:
    split = tmp_path / "split.txt"
    first = sorted(p.name for p in (synth_dir / "davis" / "JPEGImages" / "480p").iterdir())[0]
    split.write_text(first + "\n")
    return split
