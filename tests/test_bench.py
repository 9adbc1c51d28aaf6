"""``vidssl bench``: recipes compared on one pixel budget from one initialisation, cached; its
results page; the CPU recipes it and the demo share."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from vidssl.bench import (
    BenchConfig,
    bench_command,
    build_method,
    method_pixels_per_sample,
    pixels_per_step,
    resolve_command,
    train_command,
)
from vidssl.bench_report import headline
from vidssl.cli import main, parse_command
from vidssl.config import ConfigError
from vidssl.engine.config import RECIPES, config_dict, read_recipe, resolve
from vidssl.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
CPU = sorted(p.stem for p in (RECIPES / "cpu").glob("*.yaml"))


def built(method: str, **keys):
    return build_method(*resolve([f"method={method}", *(f"{k}={v}" for k, v in keys.items())]))


def test_pixels_per_sample_come_from_the_data_spec_and_views() -> None:
    # fti: a pair of frames, each one crop of image_size
    assert method_pixels_per_sample(built("fti", image_size=64)) == 2 * 64 * 64
    assert method_pixels_per_sample(built("fti", image_size=64, max_gap=0)) == 2 * 64 * 64  # simclr: one frame twice
    # colorization: the references and the target
    assert method_pixels_per_sample(built("colorization", image_size=64, num_refs=2)) == 3 * 64 * 64
    assert method_pixels_per_sample(built("colorization", image_size=32, num_refs=3)) == 4 * 32 * 32
    # crw: every frame of the clip cut into a grid of patches: 3 x 3 of 32 px from 64, 7 x 7 of 64 px from 256
    crw = built("crw", image_size=64, clip_len=4, patch=32, patch_stride=16)
    assert method_pixels_per_sample(crw) == 4 * 9 * 32 * 32
    paper = built("crw", image_size=256, clip_len=3, patch=64, patch_stride=32)
    assert method_pixels_per_sample(paper) == 3 * 49 * 64 * 64
    # cpc: the sequence; dino: two global and N local crops (a view recipe returning a dict)
    assert method_pixels_per_sample(built("cpc", image_size=48, seq_len=5)) == 5 * 48 * 48
    assert method_pixels_per_sample(built("dino", image_size=64, local_crops=3, local_size=24)) == 2 * 64**2 + 3 * 24**2


def test_frame_and_track_pairs_count_both_views(tmp_path) -> None:
    (tmp_path / "tracks").mkdir()
    both = built("fti", image_size=64, positives="both", tracks=str(tmp_path / "tracks"))
    assert method_pixels_per_sample(both) == 4 * 64 * 64


@pytest.mark.parametrize("name", CPU)
def test_every_cpu_recipe_resolves_and_has_the_benchmarks_budget(name: str, tmp_path) -> None:
    keys = read_recipe(f"cpu/{name}")
    (tmp_path / "tracks").mkdir()
    pairs = [f"tracks={tmp_path / 'tracks'}"] if keys.get("positives", "frames") != "frames" else []
    train_cfg, method_cfg = resolve(pairs, recipe=keys)
    assert train_cfg.method == keys["method"] and isinstance(method_cfg, METHODS[train_cfg.method].Config)
    for key, value in keys.items():
        where = train_cfg if key in {f.name for f in dataclasses.fields(train_cfg)} else method_cfg
        assert key == "tracks" or getattr(where, key) == value, (name, key)
    large = name.endswith("_large")  # the evaluation-scale variants: 128 px crops, batch cut to keep the pixels
    assert train_cfg.encoder == "resnet18" and train_cfg.image_size == (128 if large else 64)
    # the pixels of the published benchmark rows (their per-name formulas, BENCHMARKS.md): 50 Mpx gave 96-382 steps
    side, batch = train_cfg.image_size, train_cfg.batch_size
    views = {"colorization": keys.get("num_refs", 0) + 1, "cpc": keys.get("seq_len", 0),
             "crw": keys.get("clip_len", 0) * 9 * keys.get("patch", 0) ** 2 / side**2, "fti_tracks": 4,
             "vfs": 2 * keys.get("frames_per_half", 1),  # vfs: the released 2 x 4 frames a video
             }.get(name.removesuffix("_large"), 2)
    assert pixels_per_step(train_cfg, method_cfg) == batch * views * side * side


def test_train_takes_a_shipped_recipe_by_name(tmp_path) -> None:
    name, (train_cfg, method_cfg) = parse_command(["train", "cpu/fti", str(tmp_path), "steps=3"])
    assert train_cfg.data == str(tmp_path) and train_cfg.steps == 3 and train_cfg.image_size == 64
    assert method_cfg.loss == "infonce" and train_cfg.warmup_steps == 19
    assert parse_command(["train", "cpu/crw.yaml", "lr=0.1"])[1][0].method == "crw"
    with pytest.raises(FileNotFoundError, match="shipped recipes: .*cpu/fti"):
        read_recipe("cpu/nope")


def test_bench_help_and_bad_input_are_one_line(tmp_path, capsys) -> None:
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert "budget_mpx" in out and "recipes" in out and "Traceback" not in out
    assert main(["bench", "report", "--help"]) == 0 and "results" in capsys.readouterr().out
    assert main(["eval", "synth", "--help"]) == 0 and "video_seed" in capsys.readouterr().out
    for args, message in ((["baselines=(nope,)"], "baselines: unknown row 'nope'"),
                          (["overrides=(steps=3,)"], "overrides: 'steps=3'"),
                          (["recipes=(cpu/nope,)"], "cpu/nope: no such recipe file"),
                          (["evals=(davis,)"], "evals has davis but davis=''"),
                          (["recipes=(cpu/fti,fti)"], "two rows named fti")):
        assert main(["bench", f"out={tmp_path / 'b'}", *args]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_the_learning_benchmark_tool_is_configuration(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "tools" / "bench_learning.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules["bench_learning"] = tool
    spec.loader.exec_module(tool)
    assert tool.main(["--help"]) == 0 and "budget_mpx" in capsys.readouterr().out
    # every row it trains is a recipe file, and its keys are keys of vidssl bench
    cfg = parse_command(["bench", *(f"{k}={v}" for k, v in tool.BENCH.items())])[1]
    assert cfg.recipes == tuple(f"cpu/{n}" for n in ("colorization", "fti", "simclr", "fti_moco", "fti_tracks", "cpc",
                                                      "crw", "vfs"))
    # no recipe dict is left in tools/ or the demo: the recipes are files
    for path in (ROOT / "tools" / "bench_learning.py", ROOT / "vidssl" / "demo.py"):
        text = path.read_text()
        assert "RECIPES" not in text and '"lr":' not in text and "'lr':" not in text, path


TINY = ["synth_videos=2", "synth_held_out=1", "synth_frames=12", "synth_height=64", "synth_width=80",
        "baselines=(random,)", "budget_mpx=0.008",
        "overrides=(image_size=32,batch_size=2,workers=0,proj_hidden=32,decode_size=64)"]


def test_bench_compares_two_recipes_and_a_rerun_recomputes_nothing(tmp_path, cache_dir, capsys, monkeypatch) -> None:
    out = tmp_path / "bench"
    args = ["bench", f"out={out}", "recipes=(cpu/fti,cpu/simclr)", *TINY]
    assert main(args) == 0
    capsys.readouterr()
    record = json.loads((out / "results.json").read_text())
    assert list(record["table"]) == ["random", "fti", "simclr"]
    for row in record["table"].values():
        assert 0 <= row["synth J&F"] <= 1 and 0 <= row["synth PCK@0.2"] <= 1
    # one budget: 2 views of 32 x 32 px, batch 2 = 4,096 pixels a step; 8,000 pixels = 2 steps
    for name in ("fti", "simclr"):
        training = record["training"][name]
        assert training["pixels_per_step"] == 4096 and training["steps"] == 2 == record["table"][name]["steps"]
        # the recorded command, parsed by the command line, is the config the row trained with (every key)
        trained = yaml.safe_load((out / "train" / name / "config.yaml").read_text())
        command = shlex.split(training["command"])
        assert config_dict(*parse_command(command[1:])[1]) == trained
        assert f"weights={out / 'init.safetensors'}" in command  # one shared initialisation
    # provenance: the command re-creates the config; machine and date are there
    assert parse_command(shlex.split(record["command"])[1:])[1] == parse_command(args)[1]
    assert record["machine"] and record["date"].endswith("UTC")
    assert (out / "learning.png").stat().st_size > 0
    markdown = (out / "results.md").read_text()
    assert "| fti |" in markdown and record["command"] in markdown

    # a rerun trains nothing and scores nothing
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr("vidssl.engine.trainer.train", fail)
    monkeypatch.setattr("vidssl.evaluation.synth.evaluate_synth", fail)
    monkeypatch.setattr("vidssl.bench._now", lambda: "a later date")
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = json.loads((out / "results.json").read_text())
    assert again["table"] == record["table"] and again["date"] == record["date"]  # when the figures were computed
    # other settings in the same folder are refused in one line naming what differs
    assert main([*args[:-1], "overrides=(image_size=48,batch_size=2,workers=0,proj_hidden=32,decode_size=64)"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.image_size 32 -> 48" in err

    # so are other synthetic videos (the encoders and scores in the folder were made on these)
    assert main([*args, "synth_videos=3"]) == 1
    assert "synth_train: holds synthetic videos made with other settings (num_videos 2 -> 3)" in capsys.readouterr().err

    # the results page, generated from the results file by one command that it names
    page = tmp_path / "results.md"
    assert main(["bench", "report", str(out / "results.json"), f"out={page}"]) == 0
    text = page.read_text()
    assert f"vidssl bench report {out / 'results.json'} out={page}" in text
    assert record["command"] in text and record["machine"] in text and record["date"] in text


def test_report_refuses_what_is_not_a_results_file(tmp_path, capsys) -> None:
    assert main(["bench", "report", str(tmp_path / "missing.json")]) == 1
    assert "missing.json: no such results file" in capsys.readouterr().err
    (tmp_path / "other.json").write_text("{}")
    assert main(["bench", "report", str(tmp_path / "other.json")]) == 1
    assert "not a results file of vidssl bench" in capsys.readouterr().err


def test_a_recipe_with_track_positives_gets_the_tracks(tmp_path) -> None:
    (tmp_path / "tracks").mkdir()
    cfg = BenchConfig(out=str(tmp_path), tracks=str(tmp_path / "tracks"))
    with_tracks = train_command(cfg, "cpu/fti_tracks", tmp_path, tmp_path / "init.safetensors", 5)
    assert f"tracks={tmp_path / 'tracks'}" in with_tracks and with_tracks[-1] == "steps=5"
    assert resolve_command(with_tracks)[1].positives == "both"
    plain = train_command(cfg, "cpu/fti", tmp_path, tmp_path / "init.safetensors", 5)
    assert not any(a.startswith("tracks=") for a in plain)  # fti with frame pairs would refuse tracks=


def test_bench_command_round_trips() -> None:
    cfg = BenchConfig(recipes=("cpu/fti", "cpu/crw"), baselines=(), overrides=("decode_size=96", "workers=1"),
                      title="a b", budget_mpx=0.5)
    assert parse_command(shlex.split(bench_command(cfg))[1:])[1] == cfg
    with pytest.raises(ConfigError):
        parse_command(["bench", "budget_mpx=0"])


def test_davis_columns_name_the_size_a_run_scored_at() -> None:
    # a run at davis_size=240 and a 480p run's cheap 240p points must share one column, and neither may
    # pass its 240p scores off as the full-size "DAVIS J&F"
    scores = {"davis": {"J&F": 0.5, "J": 0.6, "F": 0.4}, "davis~default": {"J&F": 0.7, "J": 0.7, "F": 0.7},
              "davis@240": {"J&F": 0.3, "J": 0.3, "F": 0.3}, "jhmdb": {"PCK@0.1": 0.2, "PCK@0.2": 0.4}}
    full = headline(scores)
    assert full["DAVIS J&F"] == 0.5 and full["DAVIS J&F [default]"] == 0.7 and full["DAVIS J&F [240p]"] == 0.3
    small = headline({k: v for k, v in scores.items() if "@" not in k}, 240)
    assert small["DAVIS J&F [240p]"] == 0.5 and small["DAVIS J&F [default, 240p]"] == 0.7
    assert "DAVIS J&F" not in small and small["JHMDB PCK@0.2"] == 0.4  # only DAVIS has a size


def test_eval_synth_writes_and_scores_held_out_videos(tmp_path, capsys) -> None:
    root, out = tmp_path / "held", tmp_path / "scores"
    args = ["eval", "synth", str(root), "encoder=pixels", "videos=1", "frames=6", "height=64", "width=80",
            f"out={out}"]
    assert main(args) == 0
    assert "held-out synthetic videos: J&F" in capsys.readouterr().out
    record = json.loads((out / "results.json").read_text())
    assert 0 <= record["J&F"] <= 1 and 0 <= record["PCK@0.2"] <= 1 and list(record["per_sequence"]) == ["synth_000"]
    assert (root / "synth.json").exists() and record["settings"]["video_seed"] == 1000
    assert main([*args[:3], "encoder=copy", f"out={tmp_path / 'copy'}"]) == 0  # copy: masks only
    assert "PCK@0.2" not in json.loads((tmp_path / "copy" / "results.json").read_text())


def test_bench_seeds_curves_both_protocols_and_the_label_free_score(tmp_path, cache_dir, capsys,
                                                                    monkeypatch) -> None:
    """seeds=, curve=, two protocols and the cycle score on held-out videos: every row, point and
    score cached in its own folder; seed tables, curves with the cycle score's ranking, a plot."""
    out = tmp_path / "bench"
    args = ["bench", f"out={out}", "recipes=(cpu/fti,)", *TINY[:5], "synth_videos=3", "synth_frames=24",
            "baselines=(random,pixels)", "budget_mpx=0.016",
            "overrides=(image_size=32,batch_size=2,workers=0,proj_hidden=32,decode_size=64)",
            "seeds=(0,1)", "curve=(0.25,0.5)", "held_out=1", "evals=(synth,cycle)", "preset=(crw,default)"]
    assert main(args) == 0, capsys.readouterr().err
    record = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in record["rows"]]
    assert names == ["random", "random.s1", "pixels", "fti", "fti.s1", "fti@0.25", "fti@0.5"]  # curves: 1st seed
    # the end rows: the held-out synthetic score under both protocols, and the cycle score
    assert set(record["scores"]["fti"]) == {"synth", "synth~default", "cycle"}
    assert set(record["scores"]["fti@0.5"]) == {"cycle"}  # a curve point: the cheap scores only
    for seed, name in ((0, "fti"), (1, "fti.s1")):
        command = shlex.split(record["training"][name]["command"])
        assert f"seed={seed}" in command and "val_videos=1" in command and "snapshots=(1,2)" in command
        assert not any(a.startswith("val_every") for a in command)
        assert (out / "train" / name / "snapshots" / "step_000001.safetensors").exists()
        init = out / ("init.safetensors" if seed == 0 else "init.s1.safetensors")
        assert f"weights={init}" in command and init.exists()
    # the two random rows are two initialisations
    assert record["scores"]["random"]["cycle"]["cycle J"] != record["scores"]["random.s1"]["cycle"]["cycle J"]
    # the held-out video is scored, never trained on: the training log names it
    held = record["scores"]["fti"]["cycle"]["videos"]
    assert len(held) == 1
    # seeds: mean and spread of the end rows; curves from the initialisation to the end, per seed
    assert record["seeds"]["fti"]["cycle J"]["n"] == 2 and record["seeds"]["random"]["synth J&F"]["n"] == 2
    curve = record["curves"]["fti"]["points"]
    assert [p["fraction"] for p in curve] == [0, 0.25, 0.5, 1] and curve[0]["row"] == "random"
    assert set(record["curves"]) == {"fti"}
    assert (out / "curves.png").stat().st_size > 0
    page = (out / "results.md").read_text()
    assert "Learning curves" in page and "Over seeds" in page and "synth J&F [default]" in page

    # the runs held the video out without validating themselves (the cycle eval scores their snapshots)
    assert not (out / "train" / "fti" / "val.jsonl").exists()

    # more clips for the label-free score: the cycle scores are computed again, nothing else
    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr("vidssl.engine.trainer.train", fail)
    monkeypatch.setattr("vidssl.evaluation.synth.evaluate_synth", fail)
    assert main([*args, "cycle_clips=3"]) == 0, capsys.readouterr().err
    again = json.loads((out / "results.json").read_text())
    assert {again["scores"][n]["cycle"]["settings"]["clips"] for n in names} == {3}
    assert again["scores"]["fti"]["synth"] == record["scores"]["fti"]["synth"]


def test_bench_refuses_curves_and_seeds_it_cannot_run(tmp_path, capsys) -> None:
    base = ["bench", f"out={tmp_path}", "recipes=(cpu/fti,)"]
    for extra, message in ((["curve=(1.5,)"], "not fractions of the budget"), (["seeds=(1,1)"], "a seed twice"),
                           (["evals=(cycle,)"], "held_out=0"), (["preset=(crw,nope)"], "unknown protocol 'nope'")):
        assert main([*base, *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_report_reads_results_files_of_the_release_before_seeds_and_curves(tmp_path) -> None:
    from vidssl.bench_report import report

    old = {"command": "vidssl bench recipes=(cpu/fti)", "machine": "a CPU", "date": "2026-12-06 10:00 UTC",
           "results": "runs/bench/results.json", "plot": "", "training": {},
           "config": {"recipes": ["cpu/fti"], "preset": "crw", "seed": 0, "budget_mpx": 50.0, "title": ""},
           "table": {"random": {"DAVIS J&F": 0.5}, "fti": {"DAVIS J&F": 0.55}},
           "scores": {"random": {"davis": {"J&F": 0.5}}, "fti": {"davis": {"J&F": 0.55}}}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    page = report([str(path)])
    assert "| fti | 0.550 |" in page and "| random | 0.500 |" in page


def test_report_draws_the_curves_of_several_runs_in_one_picture(tmp_path, capsys) -> None:
    """Two schedules of one recipe (a 50 and a 200 Mpx run) are two lines of one picture, each named by
    its budget; a page of files without curves refuses curves= in one line."""
    def record(budget: float, steps: int) -> dict:
        points = [{"fraction": f, "step": round(f * steps), "mpx": f * budget, "row": f"colorization@{f:g}",
                   "cpu_min": None if budget < 100 else f * 30,  # the 50 Mpx run resumed: no minutes
                   "DAVIS J&F": 0.5 + f * budget / 1000, "colour gain": 0.4 + f / 10 + budget / 10000}
                  for f in (0.03125, 0.25, 0.5, 1.0)]  # 1/32 to 1: a log-spaced axis
        return {"command": f"vidssl bench budget_mpx={budget:g}", "machine": "a CPU", "date": "2026-12-07 07:00 UTC",
                "results": f"runs/b{budget:g}/results.json", "plot": "", "training": {},
                "config": {"recipes": ["cpu/colorization"], "preset": ["crw"], "seed": 0, "budget_mpx": budget,
                           "title": f"{budget:g} Mpx"},
                "table": {"pixels": {"DAVIS J&F": 0.45}, "colorization": {"DAVIS J&F": points[-1]["DAVIS J&F"]}},
                "scores": {}, "curves": {"colorization": {"points": points}}}

    paths = []
    for budget, steps in ((50.0, 100), (200.0, 400)):
        paths.append(tmp_path / f"b{budget:g}.json")
        paths[-1].write_text(json.dumps(record(budget, steps)))
    picture, page = tmp_path / "curves.png", tmp_path / "page.md"
    assert main(["bench", "report", *map(str, paths), f"out={page}", f"curves={picture}"]) == 0
    assert picture.stat().st_size > 0 and f"curves={picture}" in page.read_text()
    from vidssl.bench_report import merged_curves, pooled_rankings, upgrade

    found, table = merged_curves([upgrade(json.loads(p.read_text())) for p in paths])
    assert set(found) == {"colorization (50 Mpx run)", "colorization (200 Mpx run)"} and set(table) == {"pixels"}
    # both runs' points ranked at once (DAVIS rises with Mpx, the gain with the fraction and a little with the
    # budget): the pick is the 200 Mpx run's end, the best point of either run
    pooled = pooled_rankings(found)["colour gain"]
    assert pooled["points"] == 8 and pooled["curves"] == 2 and pooled["lost"] == 0
    assert pooled["chosen"] == pooled["best"] == "colorization (200 Mpx run) at 200 Mpx"
    assert "Over all 8 points of the 2 curves at once, colour gain ranks them" in page.read_text()
    capsys.readouterr()
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({**record(50.0, 100), "curves": {}}))
    assert main(["bench", "report", str(bare), f"curves={tmp_path / 'none.png'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of the results files has a learning curve" in err


def test_curves_of_seeds_scored_only_at_full_size_keep_the_cheap_panel_and_ranking(tmp_path) -> None:
    """Seed 0's curve is scored at 240p (its ends at 480p too); seeds 1 and 2 only at 480p. The DAVIS
    panel and the pooled ranking were taken from the column every point had: none, so both vanished."""
    from vidssl.bench_report import _curve_column, plot_curves, pooled_rankings

    def point(row: str, mpx: float, **scores: float) -> dict:
        return {"fraction": mpx / 200, "mpx": mpx, "row": row, "step": None, "cpu_min": None, **scores}

    main_curve = [point("random", 0, **{"DAVIS J&F": 0.53, "DAVIS J&F [240p]": 0.44, "colour gain": 0.45}),
                  *(point(f"fti@{f}", f * 200, **{"DAVIS J&F [240p]": 0.4 + f / 10, "colour gain": 0.46 + f / 100})
                    for f in (0.25, 0.5)),
                  point("fti", 200, **{"DAVIS J&F": 0.62, "DAVIS J&F [240p]": 0.48, "colour gain": 0.48,
                                       "DAVIS J&F [default, 240p]": 0.44, "DAVIS J&F [default]": 0.59})]
    seed = [point("random.s1", 0, **{"DAVIS J&F": 0.54, "DAVIS J&F [240p]": 0.46, "colour gain": 0.46}),
            point("fti.s1", 200, **{"DAVIS J&F": 0.59, "colour gain": 0.47})]
    found = {"fti": {"points": main_curve}, "fti.s1": {"points": seed}}
    assert _curve_column(main_curve) == "DAVIS J&F [240p]" and _curve_column(seed) == "DAVIS J&F"
    pooled = pooled_rankings(found)["colour gain"]
    assert pooled["column"] == "DAVIS J&F [240p]" and pooled["points"] == 5  # fti.s1's end has no 240p score
    assert pooled["chosen"] == pooled["best"] == "fti at 200 Mpx"
    assert plot_curves(found, {}, tmp_path / "c.png", title="t") is not None and (tmp_path / "c.png").stat().st_size


def _image_folder(root: Path, colours: dict[str, tuple[int, int, int]], per_split: int = 4) -> Path:
    """An ImageFolder root of flat-coloured 16 x 16 images, one class per colour."""
    from PIL import Image

    for split in ("train", "val"):
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(per_split):
                shade = tuple(max(0, c - 9 * i) for c in colour)
                Image.new("RGB", (16, 16), shade).save(root / split / name / f"{i}.png")
    return root


def test_bench_images_scores_knn_on_an_image_folder_too_and_caches_it(tmp_path, capsys, monkeypatch) -> None:
    """images=DIR adds knn~images ("kNN balanced top-1 [images]": mean per-class accuracy, the majority
    baseline under the table) beside the synthetic crops' knn; a rerun computes nothing, another
    folder or a result of before the balanced figure recomputes that score alone; without the key
    nothing changes."""
    import vidssl.evaluation.image_features as image_features
    import vidssl.evaluation.knn as knn

    synthetic = _image_folder(tmp_path / "synthetic", {"a": (200, 0, 0), "b": (0, 200, 0)})
    real = _image_folder(tmp_path / "real", {"cat": (250, 250, 0), "dog": (0, 0, 250), "cup": (0, 250, 250)})
    other = _image_folder(tmp_path / "other", {"x": (250, 0, 250), "y": (90, 90, 90)})
    resolve = image_features.resolve_image_root
    monkeypatch.setattr(image_features, "resolve_image_root",  # the synthetic set, small
                        lambda data, progress=True: resolve(data or str(synthetic)))
    monkeypatch.setenv("VIDSSL_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real_knn = knn.run_knn
    monkeypatch.setattr(knn, "run_knn", lambda cfg: calls.append(cfg.data) or real_knn(cfg))
    out = tmp_path / "bench"
    args = ["bench", f"out={out}", "recipes=()", "baselines=(random,)", "evals=(knn,)", "init=random:resnet18"]

    assert main([*args, f"images={real}"]) == 0, capsys.readouterr().err
    record = json.loads((out / "results.json").read_text())
    assert set(record["scores"]["random"]) == {"knn", "knn~images"} and calls == ["", str(real)]
    assert record["scores"]["random"]["knn~images"]["num_classes"] == 3
    assert record["scores"]["random"]["knn"]["num_classes"] == 2
    assert set(record["table"]["random"]) == {"kNN top-1", "kNN balanced top-1 [images]"}
    real_score = record["scores"]["random"]["knn~images"]
    assert record["table"]["random"]["kNN balanced top-1 [images]"] == real_score["top1_balanced"]
    assert "top1" in real_score and real_score["majority_balanced"] == pytest.approx(1 / 3)
    page = (out / "results.md").read_text()
    assert "kNN balanced top-1 [images]" in page and "scores 0.333 balanced and 0.333 top-1" in page

    calls.clear()  # a knn~images result of before the balanced figure: computed again
    old = out / "eval" / "random" / "knn~images" / "results.json"
    old.write_text(json.dumps({k: v for k, v in json.loads(old.read_text()).items() if k != "top1_balanced"}))
    assert main([*args, f"images={real}"]) == 0 and calls == [str(real)]

    calls.clear()
    assert main([*args, f"images={real}"]) == 0 and calls == []  # cached
    assert main([*args, f"images={other}"]) == 0 and calls == [str(other)]  # another folder: that score again
    record = json.loads((out / "results.json").read_text())
    assert record["scores"]["random"]["knn~images"]["num_classes"] == 2
    calls.clear()
    assert main(args) == 0 and calls == []  # without the key: the row and table as before
    record = json.loads((out / "results.json").read_text())
    assert set(record["scores"]["random"]) == {"knn"} and set(record["table"]["random"]) == {"kNN top-1"}

    assert main([*args[:-2], "evals=(synth,)", f"images={real}"]) == 1
    assert "scored by the knn and linear evals" in capsys.readouterr().err
    assert main([*args, f"images={tmp_path}"]) == 1
    assert f"{tmp_path / 'train'}: expected" in capsys.readouterr().err


def test_a_seed_table_says_when_a_column_has_fewer_seeds_than_its_row() -> None:
    from vidssl.bench_report import seed_markdown

    text = seed_markdown({"colorization": {"DAVIS J&F": {"mean": 0.597, "sd": 0.0, "n": 1},
                                           "cycle J": {"mean": 0.8, "sd": 0.01, "n": 3},
                                           "JHMDB PCK@0.2": {"mean": 0.6, "sd": 0.02, "n": 2}}})
    assert "| colorization (3) |" in text and "0.597 (1 seed)" in text and "± 0.000" not in text
    assert "0.800 ± 0.010 |" in text and "0.600 ± 0.020 (2 seeds)" in text


def test_two_benches_on_one_folder_take_turns_on_a_row_and_a_score(tmp_path, caplog, monkeypatch) -> None:
    """Two processes on one out= (one per core) trained and scored the same rows twice, two writers in one
    folder; now the second waits on the first one's lock and reuses its run and its score."""
    import logging
    import threading
    import time

    import vidssl.bench as bench
    from vidssl.bench import Row, Score, score_row, train_row

    caplog.set_level(logging.WARNING)
    cfg = BenchConfig(out=str(tmp_path / "bench"), recipes=("cpu/fti",), videos=str(tmp_path), budget_mpx=0.008)
    calls: list[str] = []

    def once_the_other_waits(text: str) -> None:
        limit = time.monotonic() + 60
        while text not in caplog.text:
            assert time.monotonic() < limit, f"no process waited: {caplog.text!r}"
            time.sleep(0.02)

    def fake_train(cfg, train_cfg, method_cfg, argv, name, per_step, learned):
        calls.append(name)
        once_the_other_waits("trained by another process")
        folder = Path(train_cfg.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "encoder.safetensors").write_bytes(b"weights")
        record = {"steps": train_cfg.steps, "config": learned}
        (folder / "bench.json").write_text(json.dumps(record))
        return record

    def fake_score(cfg, row, score, out, encoder, *, progress):
        calls.append(score.key(cfg))
        once_the_other_waits("being scored by another process")
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"J&F": 0.5}))
        return {"J&F": 0.5}

    monkeypatch.setattr(bench, "_train", fake_train)
    monkeypatch.setattr(bench, "_score", fake_score)
    for job in (lambda: train_row(cfg, "cpu/fti", tmp_path, 0),
                lambda: score_row(cfg, Row("random", "random", 0), Score("synth", "crw"), progress=False)):
        got: list = []
        pair = [threading.Thread(target=lambda job=job, got=got: got.append(job()), daemon=True) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join(120)
        assert len(got) == 2 and got[0] == got[1]  # both return the one run / score
    assert calls == ["fti", "synth"]  # each computed once
    import fcntl

    with open(Path(cfg.out) / "train" / ".fti.s1.lock", "a+b") as other:  # another process training seed 1
        fcntl.flock(other, fcntl.LOCK_EX)
        assert train_row(cfg, "cpu/fti", tmp_path, 1, wait=False) is bench.BUSY  # run_bench trains another first
    assert calls == ["fti", "synth"]


def test_a_bench_skips_a_score_another_process_holds_and_comes_back_to_it(tmp_path, caplog, monkeypatch) -> None:
    """The same command started twice (one per core) shares the scores: the second skips the one the
    first is computing, scores the rest, then reads the first one's result instead of computing it."""
    import fcntl
    import logging
    import threading
    import time

    import vidssl.bench as bench
    from vidssl.bench import BUSY, Row, Score, run_bench, score_row

    caplog.set_level(logging.INFO, logger="vidssl.bench")
    cfg = BenchConfig(out=str(tmp_path / "bench"), recipes=(), baselines=("random", "pixels"), evals=("synth",))
    calls: list[str] = []
    figures = {"J&F": 0.25, "PCK@0.1": 0.5, "PCK@0.2": 0.75}

    def fake_score(cfg, row, score, out, encoder, *, progress):
        calls.append(row.name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(figures))
        return figures

    monkeypatch.setattr(bench, "_score", fake_score)
    held = tmp_path / "bench" / "eval" / "random" / ".synth.lock"
    held.parent.mkdir(parents=True)
    with open(held, "a+b") as other:  # the other process, scoring random's synth
        fcntl.flock(other, fcntl.LOCK_EX)
        assert score_row(cfg, Row("random", "random", 0), Score("synth", "crw"), progress=False, wait=False) is BUSY
        got: list = []
        first = threading.Thread(target=lambda: got.append(run_bench(cfg)), daemon=True)
        first.start()
        limit = time.monotonic() + 120
        while "being scored by another process; waiting" not in caplog.text:
            assert first.is_alive() and time.monotonic() < limit
            first.join(0.05)
        assert "random synth: being scored by another process; coming back to it" in caplog.text
        assert calls == ["pixels"]  # the rest was scored meanwhile
        (held.parent / "synth").mkdir()
        (held.parent / "synth" / "results.json").write_text(json.dumps({**figures, "J&F": 0.125}))  # the other's
        fcntl.flock(other, fcntl.LOCK_UN)
        first.join(120)
    assert calls == ["pixels"] and got[0]["table"]["random"]["synth J&F"] == 0.125
