"""``vidssl SUBCOMMAND [INPUT] [key=value ...]``: the command line.

Each subcommand is one typed config dataclass plus one library call, so everything the CLI does
is also reachable (and tested) in-process through :func:`main`. ``vidssl SUBCOMMAND --help`` lists
every key with its default and meaning; an unknown key is an error with a "did you mean" hint.

Every failure is one line on stderr, ``vidssl SUBCOMMAND: <file>: <what is wrong>``, and a non-zero
exit: 2 for what parsing finds (keys, values, ``out=``), 1 for what the command finds once it reads
files (a run folder that already holds a run, unreadable data, a full disk, a non-finite loss).
``VIDSSL_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vidssl.config import ConfigError, fields_help, option, parse_overrides


@dataclass(frozen=True)
class IndexConfig:
    data: str = option("", "folder of videos (searched recursively), a video file or a frame folder")
    min_frames: int = option(1, "videos with fewer frames are skipped and counted in the summary")
    refresh: bool = option(False, "ignore the cached manifest and probe every file again")
    cache_dir: str = option("", "manifest folder (default $VIDSSL_CACHE_DIR or ~/.cache/vidssl)")


def _run_synth(cfg: Any) -> int:
    from pathlib import Path

    from vidssl.data.synth import generate

    result = generate(Path(cfg.out), cfg)
    print(f"wrote {len(result.videos)} synthetic videos to {cfg.out}")
    return 0


def _run_index(cfg: IndexConfig) -> int:
    from pathlib import Path

    from vidssl.data.index import scan

    if not cfg.data:
        raise ConfigError("index needs a folder: vidssl index DIR")
    index = scan(cfg.data, min_frames=cfg.min_frames, refresh=cfg.refresh,
                 cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None)
    print(index.summary())
    return 0


def _run_prepare(cfg: Any) -> int:
    from vidssl.data.prepare import prepare

    result = prepare(cfg)
    print(
        f"prepared {len(result.written)} videos ({result.frames:,} frames) in {result.seconds:.1f} s"
        f" into {cfg.out}; {result.skipped} already done; {len(result.failed)} failed"
        + (f": {', '.join(p for p, _ in result.failed[:3])}" if result.failed else "")
    )
    return 0


def _run_train(cfgs: tuple[Any, Any]) -> int:
    from vidssl.engine.trainer import train

    out = train(*cfgs)
    print(f"run folder: {out}")
    return 0


def _is_recipe(arg: str) -> bool:
    """A YAML file, or the name of a shipped recipe (``cpu/fti``) that is not a path on disk."""
    if "=" in arg:
        return False
    if arg.endswith((".yaml", ".yml")):
        return True
    from vidssl.engine.config import shipped_recipe

    return not Path(arg).exists() and shipped_recipe(arg) is not None


def _engine_config() -> type:
    from vidssl.engine.config import TrainConfig

    return TrainConfig  # the engine's keys; each method adds its own (see _train_help)


def _parse_train(args: list[str]) -> tuple[Any, Any]:
    """``[RECIPE.yaml] [DATA] key=value ...`` -> (TrainConfig, the method's Config)."""
    from vidssl.engine.config import read_recipe, resolve

    recipes = [a for a in args if _is_recipe(a)]
    if len(recipes) > 1:
        raise ConfigError(f"one recipe at a time, got {', '.join(recipes)}")
    pairs = _positional("data", [a for a in args if not _is_recipe(a)])
    return resolve(pairs, recipe=read_recipe(recipes[0]) if recipes else None,
                   source=recipes[0] if recipes else "recipe")


def _train_help(args: list[str]) -> list[tuple[str, str, str]]:
    """Engine keys, then the keys of the method named by ``method=`` (or the recipe's; default fti)."""
    from vidssl.engine.config import help_rows, method_class, read_recipe

    method = next((a.partition("=")[2].strip() for a in args if a.partition("=")[0].strip() == "method"), "")
    if not method:
        recipe = next((a for a in args if _is_recipe(a)), None)
        method = str(read_recipe(recipe).get("method", "fti")) if recipe else "fti"
    method_class(method)  # a one-line error for an unknown method
    return help_rows(method)


@dataclass(frozen=True)
class ExportConfig:
    run: str = option("", "run folder or checkpoint file (from vidssl train)")
    out: str = option("encoder.safetensors", "output file")
    format: Literal["safetensors", "torchvision", "onnx"] = option(
        "safetensors", "safetensors (vidssl.load_encoder) | torchvision (state_dict for torchvision.models) | onnx"
    )
    image_size: int = option(224, "example input size traced for onnx")


def _run_export(cfg: ExportConfig) -> int:
    from pathlib import Path

    from vidssl.engine.checkpoint import encoder_from_checkpoint
    from vidssl.export import save_encoder

    if not cfg.run:
        raise ConfigError("export needs a run folder or checkpoint: vidssl export RUN out=FILE")
    encoder = encoder_from_checkpoint(Path(cfg.run))
    path = save_encoder(encoder, Path(cfg.out), format=cfg.format, image_size=cfg.image_size)
    print(f"wrote {path}")
    return 0


@dataclass(frozen=True)
class Command:
    summary: str
    config: Callable[[], type]  # lazy, so `vidssl --help` imports no decoders or torch
    run: Callable[[Any], int]
    positional: str | None = None  # the config key that a bare INPUT argument sets
    parse: Callable[[list[str]], Any] | None = None  # instead of parse_overrides(config(), ...): train
    help_rows: Callable[[list[str]], list[tuple[str, str, str]]] | None = None  # keys that depend on the args


def _synth_config() -> type:
    from vidssl.data.synth import SynthConfig

    return SynthConfig


def _prepare_config() -> type:
    from vidssl.data.prepare import PrepareConfig

    return PrepareConfig


def _eval_linear_config() -> type:
    from vidssl.evaluation.linear import LinearEvalConfig

    return LinearEvalConfig


def _run_eval_linear(cfg: Any) -> int:
    from vidssl.evaluation.linear import run_linear

    run_linear(cfg)  # prints its own summary line and writes results.json
    return 0


def _eval_knn_config() -> type:
    from vidssl.evaluation.knn import KnnEvalConfig

    return KnnEvalConfig


def _run_eval_knn(cfg: Any) -> int:
    from vidssl.evaluation.knn import run_knn

    run_knn(cfg)
    return 0


def _invariance_config() -> type:
    from vidssl.evaluation.invariance import InvarianceConfig

    return InvarianceConfig


def _run_invariance(cfg: Any) -> int:
    from vidssl.evaluation.invariance import format_table, run_invariance

    results = run_invariance(cfg)
    print(format_table({k: v for k, v in results.items() if k != "settings"}, topk=cfg.topk))
    print(f"wrote {cfg.out}/results.json and {cfg.out}/invariance.png")
    return 0


def _propagate_config() -> type:
    from vidssl.propagation.propagate import PropagateConfig

    return PropagateConfig


def _run_propagate(cfg: Any) -> int:
    from vidssl.propagation.propagate import run_propagate

    record = run_propagate(cfg)
    speed = f"{record['fps']:.2f} frames/s"
    print(f"propagated {record['kind']} through {record['frames']} frames ({speed}) into {cfg.out}")
    return 0


def _eval_davis_config() -> type:
    from vidssl.evaluation.davis import DavisEvalConfig

    return DavisEvalConfig


def _run_eval_davis(cfg: Any) -> int:
    from vidssl.evaluation.davis import evaluate_davis, format_table

    print(format_table(evaluate_davis(cfg)))
    print(f"wrote {cfg.out}/results.json and the predicted masks")
    return 0


def _eval_jhmdb_config() -> type:
    from vidssl.evaluation.jhmdb import JhmdbEvalConfig

    return JhmdbEvalConfig


def _run_eval_jhmdb(cfg: Any) -> int:
    from vidssl.evaluation.jhmdb import evaluate_jhmdb

    results = evaluate_jhmdb(cfg)
    scores = "  ".join(f"PCK@{a} {results[f'PCK@{a}']:.3f}" for a in cfg.alphas)
    print(f"{results['clips']} clips: {scores}; wrote {cfg.out}/results.json")
    return 0


def _demo_config() -> type:
    from vidssl.demo import DemoConfig

    return DemoConfig


def _run_demo(cfg: Any) -> int:
    from vidssl.demo import main_record

    print(main_record(cfg))
    return 0


def _bench_config() -> type:
    from vidssl.bench import BenchConfig

    return BenchConfig


def _run_bench(cfg: Any) -> int:
    from vidssl.bench import run_bench
    from vidssl.bench_report import markdown_table

    record = run_bench(cfg, progress=True)
    print(markdown_table(record["table"]))
    print(f"wrote {cfg.out}/results.json, {cfg.out}/results.md" + (f" and {record['plot']}" if record["plot"] else ""))
    return 0


def _report_config() -> type:
    from vidssl.bench import ReportConfig

    return ReportConfig


def _parse_report(args: list[str]) -> Any:
    """``RESULTS.json ... [out=PAGE]``: every bare argument is a results file."""
    import dataclasses

    cfg = parse_overrides(_report_config(), [a for a in args if "=" in a])
    return dataclasses.replace(cfg, results=(*cfg.results, *(a for a in args if "=" not in a)))


def _run_report(cfg: Any) -> int:
    import shlex

    from vidssl.bench_report import report
    from vidssl.files import atomic_write_text

    command = shlex.join(["vidssl", "bench", "report", *cfg.results, *([f"out={cfg.out}"] if cfg.out else []),
                          *([f"curves={cfg.curves}"] if cfg.curves else [])])
    page = report(cfg.results, command=command, curves_png=cfg.curves)
    if cfg.out:
        atomic_write_text(Path(cfg.out), page)
        print(f"wrote {cfg.out}" + (f" and {cfg.curves}" if cfg.curves else ""))
    else:
        print(page, end="")
    return 0


def _eval_synth_config() -> type:
    from vidssl.evaluation.synth import SynthEvalConfig

    return SynthEvalConfig


def _run_eval_synth(cfg: Any) -> int:
    from vidssl.evaluation.synth import evaluate_synth

    r = evaluate_synth(cfg)
    points = f", PCK@0.1 {r['PCK@0.1']:.3f}, PCK@0.2 {r['PCK@0.2']:.3f}" if "PCK@0.2" in r else ""
    print(f"held-out synthetic videos: J&F {r['J&F']:.3f} (J {r['J']:.3f}, F {r['F']:.3f}){points}; "
          f"wrote {cfg.out}/results.json")
    return 0


def _eval_cycle_config() -> type:
    from vidssl.evaluation.cycle import CycleConfig

    return CycleConfig


def _run_eval_cycle(cfg: Any) -> int:
    from vidssl.evaluation.cycle import evaluate_cycle

    r = evaluate_cycle(cfg)
    gain = "n/a (no colour changed)" if r["colour gain"] is None else f"{r['colour gain']:.3f}"
    print(f"{r['clips']} clips of {len(r['videos'])} videos: colour gain {gain}; round trip: cycle J "
          f"{r['cycle J']:.3f}, cycle accuracy {r['cycle accuracy']:.3f}; wrote {cfg.out}/results.json")
    return 0


def _tracks_config() -> type:
    from vidssl.tracking.run import TracksConfig

    return TracksConfig


def _run_tracks(cfg: Any) -> int:
    from vidssl.tracking.run import track_folder

    result = track_folder(cfg)
    print(result.summary())
    return 1 if result.failed and not (result.tracked or result.skipped) else 0  # nothing usable came out


def _track_crops_config() -> type:
    from vidssl.evaluation.track_images import TrackCropsConfig

    return TrackCropsConfig


def _run_track_crops(cfg: Any) -> int:
    from vidssl.evaluation.track_images import make_track_crops

    print(make_track_crops(cfg).summary())
    return 0


COMMANDS: dict[str, Command] = {
    "synth": Command("write synthetic videos with masks, keypoints and boxes", _synth_config, _run_synth),
    "index": Command("index a folder of videos and print what is usable", lambda: IndexConfig, _run_index, "data"),
    "prepare": Command("re-encode a video folder for fast random access", _prepare_config, _run_prepare, "data"),
    "tracks": Command(
        "detect and track objects in every video of a folder (ultralytics detector + tracker)", _tracks_config,
        _run_tracks, "data",
    ),
    "tracks crops": Command(
        "labelled object crops (ImageFolder, split by video) from the tracks of 'vidssl tracks', for eval knn / "
        "linear", _track_crops_config, _run_track_crops, "tracks",
    ),
    "export": Command(
        "write a trained encoder alone (safetensors, torchvision, onnx)", lambda: ExportConfig, _run_export, "run",
    ),
    "demo": Command(
        "learn from synthetic videos, propagate masks and keypoints on held-out ones, compare and show them",
        _demo_config, _run_demo,
    ),
    "train": Command(
        "train an encoder with a self-supervised method ([RECIPE] [DATA] key=value ...; RECIPE: a YAML file or a "
        "shipped name such as cpu/fti)", _engine_config,
        _run_train, "data", parse=_parse_train, help_rows=_train_help,
    ),
    "eval linear": Command(
        "linear probe (logistic regression) of a frozen encoder on an image folder", _eval_linear_config,
        _run_eval_linear, "data",
    ),
    "eval knn": Command(
        "weighted k-NN classification (DINO) with a frozen encoder on an image folder", _eval_knn_config,
        _run_eval_knn, "data",
    ),
    "eval invariance": Command(
        "how invariant an encoder is to viewpoint, illumination, occlusion, instance (Purushwalkam & Gupta 2020)",
        _invariance_config, _run_invariance, "encoder",
    ),
    "propagate": Command(
        "carry first-frame masks or keypoints through a video (CRW / DINO label propagation)", _propagate_config,
        _run_propagate, "video",
    ),
    "eval davis": Command(
        "DAVIS J&F of label propagation with an encoder's features", _eval_davis_config, _run_eval_davis, "root",
    ),
    "eval jhmdb": Command(
        "JHMDB PCK of keypoint propagation with an encoder's features", _eval_jhmdb_config, _run_eval_jhmdb, "root",
    ),
    "eval synth": Command(
        "J&F and keypoint PCK of propagation on held-out synthetic videos (written first when absent)",
        _eval_synth_config, _run_eval_synth, "root",
    ),
    "eval cycle": Command(
        "label-free: a gray clip's first colour carried forward (colour gain); regions out and back (cycle J)",
        _eval_cycle_config, _run_eval_cycle, "root",
    ),
    "bench": Command(
        "compare training recipes: one initialisation, one pixel budget, one protocol (cached; results JSON, "
        "Markdown, plot)", _bench_config, _run_bench,
    ),
    "bench report": Command(
        "a Markdown results page from results files of vidssl bench (RESULTS.json ... [out=PAGE] [curves=PNG])",
        _report_config, _run_report, parse=_parse_report,
    ),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: vidssl SUBCOMMAND [INPUT] [key=value ...]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", "'vidssl SUBCOMMAND --help' lists its keys."]
    return "\n".join(lines)


def command_help(name: str, args: list[str] | None = None) -> str:
    """The help text of one subcommand: every key with its default and meaning."""
    cmd = COMMANDS[name]
    rows = cmd.help_rows(args or []) if cmd.help_rows else fields_help(cmd.config())
    key_w = max(len(k) for k, _, _ in rows)
    def_w = min(24, max(len(d) for _, d, _ in rows))
    positional = f" [{cmd.positional.upper()}]" if cmd.positional else ""
    lines = [f"usage: vidssl {name}{positional} [key=value ...]", "", cmd.summary, "", "keys (default, meaning):"]
    lines += [f"  {k:<{key_w}}  {d:<{def_w}}  {h}" for k, d, h in rows]
    return "\n".join(lines)


def _positional(key: str | None, args: list[str]) -> list[str]:
    """``key=value`` pairs, a bare INPUT argument becoming ``key=INPUT`` (once)."""
    pairs: list[str] = []
    for arg in args:
        if "=" not in arg and key and not any(p.startswith(f"{key}=") for p in pairs):
            pairs.append(f"{key}={arg}")
        else:
            pairs.append(arg)
    return pairs


def parse_command(argv: list[str]) -> tuple[str, Any]:
    """(subcommand name, its config) from argv; raises ConfigError on bad input."""
    name, *rest = argv
    cmd = COMMANDS[name]
    if cmd.parse is not None:
        return name, cmd.parse(rest)
    return name, parse_overrides(cmd.config(), _positional(cmd.positional, rest))


def main(argv: list[str] | None = None) -> int:
    """Run ``vidssl`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:  # two-word subcommands: `eval linear`
        argv = [f"{argv[0]} {argv[1]}", *argv[2:]]
    if argv[0] not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"vidssl: unknown subcommand '{argv[0]}'{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in argv[1:]):
        try:
            print(command_help(argv[0], [a for a in argv[1:] if a not in ("-h", "--help")]))
        except (ConfigError, FileNotFoundError) as err:
            print(f"vidssl {argv[0]}: {err}", file=sys.stderr)
            return 2
        return 0
    debug = os.environ.get("VIDSSL_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        name, cfg = parse_command(argv)
        _check_out(name, cfg)
    except FileNotFoundError as err:
        print(f"vidssl {argv[0]}: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"vidssl {argv[0]}: {_one_line(err)}\n(see 'vidssl {argv[0]} --help')", file=sys.stderr)
        return 2
    try:
        return COMMANDS[name].run(cfg)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training's graceful stop
        if debug:
            raise
        print(f"vidssl {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every failure is one line; VIDSSL_DEBUG=1 shows the traceback
        if debug:
            raise
        print(f"vidssl {name}: {_describe(err)}", file=sys.stderr)
        stopped = getattr(err, "exit_code", None)  # TrainingStopped: 128 + the signal, as schedulers expect
        return stopped if isinstance(stopped, int) else 1


# Errors whose message already says what is wrong and where (vidssl's own, and the OS's, which
# name the file); anything else is prefixed with its type so the line still means something.
def _expected() -> tuple[type[BaseException], ...]:
    expected: list[type[BaseException]] = [ConfigError, ValueError, OSError]
    for module, name in (("vidssl.data.backends", "VideoReadError"), ("vidssl.engine.trainer", "NonFiniteLossError"),
                         ("vidssl.engine.run_folder", "TrainingStopped")):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            expected.append(cls)
    return tuple(expected)


def _one_line(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def _describe(err: BaseException) -> str:
    """One line for ``err``: its own message when it is an expected error, else type and message,
    with a pointer to the traceback switch."""
    if isinstance(err, _expected()) and not isinstance(err, (KeyError, IndexError)):
        text = _one_line(err)
        if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
            text = f"{err.filename}: {text}"
        return text
    return f"{type(err).__name__}: {_one_line(err)} (unexpected; VIDSSL_DEBUG=1 shows the traceback)"


# Subcommands whose ``out`` is a single file; for every other one it is a folder.
_OUT_IS_FILE = frozenset({"export", "bench report"})


def _check_out(name: str, cfg: Any) -> None:
    """``out=`` must be usable before any work starts (``eval knn`` would otherwise extract every
    feature first): a folder for the commands that write folders, not a folder for ``export``."""
    cfgs = cfg if isinstance(cfg, tuple) else (cfg,)
    out = next((c.out for c in cfgs if hasattr(c, "out")), None)
    if not out:
        return
    path = Path(str(out)).expanduser()
    if name in _OUT_IS_FILE:
        if path.is_dir():
            raise ConfigError(f"out={out}: is a folder; give a file name")
    elif path.exists() and not path.is_dir():
        raise ConfigError(f"out={out}: is a file, not a folder")
    elif not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ConfigError(f"out={out}: {parent} is a file, not a folder")
