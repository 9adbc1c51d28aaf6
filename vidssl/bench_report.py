"""The results of ``vidssl bench``: tables, seed statistics, comparisons against the baselines,
learning curves and how well the label-free scores rank them, the pictures, and ``vidssl bench
report``'s page of several results files.

Everything here reads results records (``OUT/results.json``, :func:`vidssl.bench.run_bench`) and
computes nothing that needs a model: a results file of another machine or release gives the same
page (:func:`upgrade` brings an older record into today's shape).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import textwrap
from pathlib import Path
from typing import Any

from vidssl.config import ConfigError


def row_name(recipe: str) -> str:
    """A recipe's row: its file name without ``.yaml`` (``cpu/fti`` -> ``fti``)."""
    return Path(recipe).name.removesuffix(".yaml").removesuffix(".yml")


METRICS = {"davis": ("DAVIS", ("J&F", "J", "F")), "jhmdb": ("JHMDB", ("PCK@0.1", "PCK@0.2")),
           "synth": ("synth", ("J&F", "PCK@0.1", "PCK@0.2")), "knn": ("kNN", ("top1",)),
           "linear": ("linear", ("top1",)), "cycle": ("cycle", ("colour gain", "cycle J", "cycle accuracy"))}
IMAGES_METRICS = ("top1_balanced",)
"""The table's metric of ``knn~images`` / ``linear~images``: an image folder of real crops is as
unbalanced as the videos it was cut from, so its headline is the mean per-class accuracy (top-1,
and the majority baseline, stay in the score's results)."""
METRIC_NAMES = {"top1": "top-1", "top1_balanced": "balanced top-1"}
PLOTTED = ("DAVIS J&F", "JHMDB PCK@0.2", "synth J&F", "synth PCK@0.2", "kNN top-1", "linear top-1",
           "kNN balanced top-1 [images]", "linear balanced top-1 [images]", "cycle J")  # colour gain < 0 is no bar


def column(key: str, metric: str, davis_size: int = 0) -> str:
    """A table column of score ``key`` (:meth:`vidssl.bench.Score.key`) and one of its metrics: ``DAVIS J&F``,
    ``DAVIS J&F [default]``, ``DAVIS J&F [240p]``, ``kNN top-1``, ``kNN balanced top-1 [images]``,
    ``cycle J``. A DAVIS score at the run's own size is named with ``davis_size`` where that is not
    0 (the frames as they are), so 240p scores of two runs share a column whichever size was each run's main."""
    which, _, rest = key.partition("@")
    which, _, preset = which.partition("~")
    size = rest or (str(davis_size) if which == "davis" and davis_size else "")
    label = METRICS[which][0]
    name = metric if which == "cycle" else f"{label} {METRIC_NAMES.get(metric, metric)}"
    tags = [t for t in (preset, f"{size}p" if size else "") if t]
    return f"{name} [{', '.join(tags)}]" if tags else name


def headline(scores: dict[str, Any], davis_size: int = 0) -> dict[str, float | None]:
    """The numbers of one row's table line, by column (a score's metrics; absent: not scored)."""
    line: dict[str, float | None] = {}
    for key, result in scores.items():
        which, _, tag = key.partition("@")[0].partition("~")
        for metric in IMAGES_METRICS if tag == "images" else METRICS[which][1]:
            value = result.get(metric)
            line[column(key, metric, davis_size)] = None if value is None else float(value)
    return line


_ORDER = [column(which, metric) for which, (_, metrics) in METRICS.items() for metric in metrics]


def _ordered(columns: set[str]) -> list[str]:
    """Columns grouped by protocol and size (the main ones first), in :data:`METRICS` order within."""

    def key(c: str) -> tuple[str, int, str]:
        base, _, tag = c.partition(" [")
        return tag, _ORDER.index(base) if base in _ORDER else len(_ORDER), c

    return sorted(columns, key=key)


def markdown_table(table: dict[str, dict[str, Any]]) -> str:
    """One line per row; the score columns that hold a number, then the training cost."""
    columns = _ordered({c for v in table.values() for c, x in v.items() if x is not None and c not in _COST})
    columns += [c for c in _COST if any(v.get(c) is not None for v in table.values())]
    lines = ["| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for row, values in table.items():
        cells = []
        for c in columns:
            v = values.get(c)
            cells.append("" if v is None else f"{v}" if c in _COST else f"{v:.3f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_COST = ("train min", "train CPU min", "steps")


def per_sequence_table(scores: dict[str, dict[str, Any]], which: str = "davis") -> str:
    """J&F per sequence and row of score ``which`` (Markdown; '' when none has sequences)."""
    rows_ = {r: s[which]["per_sequence"] for r, s in scores.items() if s.get(which, {}).get("per_sequence")}
    if not rows_:
        return ""
    sequences = list(dict.fromkeys(seq for per in rows_.values() for seq in per))
    lines = ["| sequence | " + " | ".join(rows_) + " |", "|---|" + "---:|" * len(rows_)]
    for seq in sequences:
        cells = [f"{rows_[r][seq]['J&F']:.3f}" if seq in rows_[r] else "" for r in rows_]
        lines.append(f"| {seq} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(cfg: dict[str, Any], table: dict[str, dict[str, Any]], row_list: list[dict[str, Any]]) -> dict:
    """Per baseline and recipe with more than one seed: each column's mean, standard deviation
    (n - 1) and seed count over its end rows."""
    groups: dict[str, list[str]] = {}
    for r in row_list:
        if r["fraction"] >= 1:
            groups.setdefault(r["base"], []).append(r["name"])
    out = {}
    for base, names in groups.items():
        if len(names) < 2:
            continue
        stats = {}
        for c in {c for n in names for c, v in table.get(n, {}).items() if v is not None and c not in _COST}:
            values = [table[n][c] for n in names if table.get(n, {}).get(c) is not None]
            if values:
                mean = sum(values) / len(values)
                sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
                stats[c] = {"mean": mean, "sd": sd, "n": len(values)}
        if stats and max(v["n"] for v in stats.values()) >= 2:  # a spread needs two seeds that have scores
            out[base] = stats
    return out


def seed_markdown(stats: dict[str, dict[str, dict[str, float]]]) -> str:
    if not stats:
        return ""
    columns = _ordered({c for s in stats.values() for c in s})
    lines = ["| row (seeds) | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for base, s in stats.items():
        n = max(v["n"] for v in s.values())
        cells = ["" if c not in s else f"{s[c]['mean']:.3f} (1 seed)" if s[c]["n"] < 2 else
                 f"{s[c]['mean']:.3f} ± {s[c]['sd']:.3f}" + (f" ({s[c]['n']} seeds)" if s[c]["n"] < n else "")
                 for c in columns]
        lines.append(f"| {base} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sequence_means(scores: dict[str, dict[str, Any]], names: list[str], key: str) -> dict[str, float]:
    """Per DAVIS sequence, the mean J&F over ``names`` (the seeds of one row) of score ``key``."""
    per: dict[str, list[float]] = {}
    for n in names:
        for seq, v in scores.get(n, {}).get(key, {}).get("per_sequence", {}).items():
            per.setdefault(seq, []).append(float(v["J&F"]))
    return {seq: sum(v) / len(v) for seq, v in per.items() if len(v) == len(names)}


def comparisons(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every recipe against ``random`` and ``pixels`` on each full-size DAVIS protocol: the
    difference of seed means, the spread (the two rows' seed standard deviations added), the
    sequences where the recipe is ahead, and a one-sided Wilcoxon signed-rank test over sequences
    of the per-sequence J&F (means over seeds). A **win** is a difference beyond the spread with
    p < 0.05."""
    from scipy.stats import wilcoxon

    rows_, scores = record["rows"], record["scores"]
    ends: dict[str, list[str]] = {}
    for r in rows_:
        if r["fraction"] >= 1:
            ends.setdefault(r["base"], []).append(r["name"])
    recipes = [row_name(r) for r in record["config"]["recipes"]]
    keys = sorted({k for s in scores.values() for k in s if k.startswith("davis") and "@" not in k})
    out = []
    for key in keys:
        for base in recipes:
            for other in ("random", "pixels"):
                if base not in ends or other not in ends:
                    continue
                mine, theirs = _sequence_means(scores, ends[base], key), _sequence_means(scores, ends[other], key)
                common = sorted(set(mine) & set(theirs))
                if not common:
                    continue
                a = [scores[n][key]["J&F"] for n in ends[base] if key in scores.get(n, {})]
                b = [scores[n][key]["J&F"] for n in ends[other] if key in scores.get(n, {})]

                def sd(v: list[float]) -> float:
                    m = sum(v) / len(v)
                    return (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0

                diff = sum(a) / len(a) - sum(b) / len(b)
                spread = sd(a) + sd(b)
                deltas = [mine[s] - theirs[s] for s in common]
                p = float(wilcoxon(deltas, alternative="greater").pvalue) if any(deltas) else 1.0
                out.append({"score": key, "row": base, "against": other, "seeds": [len(a), len(b)],
                            "difference": diff, "spread": spread, "ahead": sum(d > 0 for d in deltas),
                            "sequences": len(common), "p": p, "win": diff > spread and p < 0.05})
    return out


def comparison_markdown(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    lines = ["| score | row | against | seeds | J&F difference | spread | sequences ahead | p (Wilcoxon) | win |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for c in items:
        lines.append(f"| {c['score']} | {c['row']} | {c['against']} | {c['seeds'][0]} vs {c['seeds'][1]} | "
                     f"{c['difference']:+.3f} | {c['spread']:.3f} | {c['ahead']}/{c['sequences']} | {c['p']:.3f} | "
                     f"{'yes' if c['win'] else 'no'} |")
    return "\n".join(lines)


def curves(record: dict[str, Any]) -> dict[str, Any]:
    """Each recipe's learning curve per seed: points (fraction of the budget, million pixels,
    every score), from the initialisation (the seed's random row, fraction 0) through the
    snapshots to the end; and, where the cycle score was computed, how well it ranks the points
    against DAVIS J&F: Spearman's rho, and the J&F lost by keeping the point it prefers."""

    cfg, table = record["config"], record["table"]
    budget = float(cfg["budget_mpx"])
    by_base: dict[str, dict[int, list[tuple[float, str]]]] = {}
    randoms = {r["seed"]: r["name"] for r in record["rows"] if r["base"] == "random"}
    for r in record["rows"]:
        if r["recipe"]:
            by_base.setdefault(r["base"], {}).setdefault(r["seed"], []).append((r["fraction"], r["name"]))
    out: dict[str, Any] = {}
    for base, seeds in by_base.items():
        for seed, points in seeds.items():
            if len(points) < 2:
                continue
            points = sorted(points)
            if seed in randoms:
                points = [(0.0, randoms[seed]), *points]
            run = record["training"].get(base if seed == (cfg.get("seeds") or [cfg["seed"]])[0] else
                                         f"{base}.s{seed}", {})
            steps, per_step, cpu = run.get("steps"), run.get("pixels_per_step"), run.get("cpu_minutes")
            at = {0.0: 0, 1.0: steps, **(fraction_steps(cfg.get("curve", ()), steps) if steps else {})}
            # a point's CPU minutes: the run's, pro rata to its steps (a resumed run counts only what it ran)
            line = [{"fraction": f, "step": at.get(f), "row": n,
                     "mpx": at[f] * per_step / 1e6 if per_step and at.get(f) is not None else f * budget,
                     "cpu_min": cpu * at[f] / steps if cpu and steps and at.get(f) is not None and
                     not run.get("resumed") else None,
                     **{c: v for c, v in table.get(n, {}).items() if v is not None and c not in _COST}}
                    for f, n in points if table.get(n)]
            entry: dict[str, Any] = {"points": line}
            target = _curve_column(line)
            for signal in LABEL_FREE:
                have = [p for p in line if p.get(signal) is not None and p.get(target) is not None]
                if target and len(have) >= 3:
                    trained = [p for p in have if p["fraction"] > 0]
                    chosen, best, lost = _choice(trained, target, signal)
                    entry.setdefault("rankings", {})[signal] = {
                        "signal": signal, "column": target, "spearman": _rho(have, target, signal),
                        "spearman_trained": _rho(trained, target, signal), "chosen": chosen["row"],
                        "best": best["row"], "lost": lost}
            if entry.get("rankings"):  # the one keep_best uses where it was scored
                entry["ranking"] = next(iter(entry["rankings"].values()))
            first = (cfg.get("seeds") or [cfg["seed"]])[0]
            out[base if seed == first else f"{base}.s{seed}"] = entry
    return out


LABEL_FREE = ("colour gain", "cycle J")  # the label-free scores a curve is ranked by; keep_best's first


def _choice(points: list[dict[str, Any]], target: str, signal: str) -> tuple[dict, dict, float]:
    """The point ``signal`` prefers, the best point by ``target``, and the ``target`` lost by the choice."""
    chosen, best = max(points, key=lambda p: p[signal]), max(points, key=lambda p: p[target])
    return chosen, best, best[target] - chosen[target]


def _rho(points: list[dict[str, Any]], column: str, signal: str = "cycle J") -> float | None:
    """Spearman's rho of the label-free ``signal`` against ``column`` over ``points``; None for
    fewer than 3 points or a constant score (which ranks nothing)."""
    from scipy.stats import spearmanr

    if len(points) < 3:
        return None
    value = float(spearmanr([p[signal] for p in points], [p[column] for p in points]).statistic)
    return None if math.isnan(value) else value


def fraction_steps(fractions: tuple[float, ...] | list[float], steps: int) -> dict[float, int]:
    """The step of each curve fraction of a run of ``steps`` (at least 1, at most ``steps - 1``);
    a fraction that lands on the step of a smaller one is left out (one encoder, one point)."""
    out: dict[float, int] = {}
    for f in sorted(fractions):
        step = min(max(1, round(f * steps)), max(1, steps - 1))
        if step not in out.values():
            out[f] = step
    return out


def _curve_column(line: list[dict[str, Any]]) -> str:
    """The DAVIS J&F column of the main protocol that most points of ``line`` have (the cheap size
    on a tie): a curve's points are scored at the cheap size, its ends at both, and the other
    seeds' ends perhaps only at the full one. Rankings use the points that have it."""
    counts: dict[str, int] = {}
    for p in line:
        for c in p:
            if re.fullmatch(r"DAVIS J&F( \[\d+p\])?", c):  # the main protocol's: no protocol in the name
                counts[c] = counts.get(c, 0) + 1
    return max(sorted(counts), key=lambda c: (counts[c], "p]" in c), default="")


def curve_markdown(found: dict[str, Any]) -> str:
    parts = []
    for name, entry in found.items():
        columns = _ordered({c for p in entry["points"] for c in p} - set(_POINT_KEYS))
        lines = [f"{name}:", "", "| budget | step | Mpx | CPU min | " + " | ".join(columns) + " |",
                 "|---:|---:|---:|---:|" + "---:|" * len(columns)]
        for p in entry["points"]:
            cells = [f"{p[c]:.3f}" if p.get(c) is not None else "" for c in columns]
            cpu = "" if p.get("cpu_min") is None else f"{p['cpu_min']:.1f}"
            lines.append(f"| {p['fraction']:g} | {p.get('step', '')} | {p['mpx']:.1f} | {cpu} | " + " | ".join(cells)
                         + " |")
        def shown(value: float | None) -> str:
            return "n/a" if value is None else f"{value:+.2f}"

        rankings = entry.get("rankings") or ({"cycle J": entry["ranking"]} if "ranking" in entry else {})
        for signal, k in rankings.items():
            lines += ["", f"{signal} ranks these points against {k['column']} with Spearman's rho "
                          f"{shown(k['spearman'])} ({shown(k.get('spearman_trained'))} without the initialisation); "
                          f"of the trained points it prefers {k['chosen']}, the best is {k['best']}: "
                          f"{k['lost']:.3f} J&F lost by its choice."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


_POINT_KEYS = ("fraction", "mpx", "row", "step", "cpu_min")  # a curve point's own keys, not scores
# the curve panels (DAVIS: the curve's own column)
CURVE_PLOTTED = ("DAVIS J&F", "JHMDB PCK@0.2", "colour gain", "cycle J")


def plot_curves(found: dict[str, Any], table: dict[str, dict[str, Any]], path: Path, *, title: str) -> Path | None:
    """The curves' main scores (DAVIS J&F at the curve's size, JHMDB PCK@0.2, the label-free scores), a line per
    recipe and seed, the baselines as horizontal lines; against million encoder input pixels (top)
    and training CPU minutes (bottom, where the runs recorded them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if not found:
        return None
    points = [p for e in found.values() for p in e["points"]]
    counts = {c: sum(p.get(c) is not None for p in points) for c in {c for p in points for c in p} - set(_POINT_KEYS)}
    davis = _curve_column(points)
    # a panel per main score at least two points have; each curve drawn through its points that have it
    columns = [c for c in (davis, *CURVE_PLOTTED[1:]) if counts.get(c, 0) >= 2] or \
        _ordered({c for c, n in counts.items() if n == len(points)})
    if not columns:
        return None
    axes_x = [("mpx", "encoder input pixels (millions)")]
    timed = {n for n, e in found.items() if all(p.get("cpu_min") is not None for p in e["points"])}
    if timed:  # a resumed run's minutes are not pro rata to its steps: it has no line on this row
        axes_x.append(("cpu_min", "training CPU minutes (pro rata to steps)"))
    untimed = [n for n in found if n not in timed] if timed else []
    fig, axes = plt.subplots(len(axes_x), len(columns), figsize=(4.8 * len(columns), 3.6 * len(axes_x)),
                             squeeze=False)
    for (x, label), row_axes in zip(axes_x, axes, strict=True):
        for ax, c in zip(row_axes, columns, strict=True):
            for i, (name, entry) in enumerate(found.items()):
                line = [p for p in entry["points"] if p.get(c) is not None]
                if line and (x == "mpx" or name in timed):  # one colour per run on both rows
                    ax.plot([p[x] for p in line], [p[c] for p in line], marker="o", label=name, color=f"C{i % 10}")
            for base, style in (("pixels", "--"), ("copy", ":")):
                if table.get(base, {}).get(c) is not None:
                    ax.axhline(table[base][c], linestyle=style, color="gray", label=base)
            ax.set_xlabel(label, fontsize=8)
            spread = sorted(p[x] for e in found.values() for p in e["points"] if p[x])
            if spread and spread[-1] >= 8 * spread[0]:  # 1/8x to 4x of a budget: log-spaced, the init at 0
                ax.set_xscale("symlog", linthresh=spread[0], linscale=0.5)
                ax.set_xlim(0, spread[-1] * 1.3)
                low, high = math.ceil(math.log10(spread[0])), math.floor(math.log10(spread[-1] * 1.3))
                ax.set_xticks([0, *(10.0**k for k in range(low, high + 1))])
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_title(c, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 45 * len(columns)), fontsize=10)
    if untimed:
        fig.text(0.5, 0.005, f"not on the CPU-minutes row (resumed: minutes not pro rata): {', '.join(untimed)}",
                 ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.03 if untimed else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def merged_curves(records: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The curves of several results records as one mapping for :func:`plot_curves` (each run named
    ``ROW (B Mpx run)`` where the records' budgets differ, so two schedules of one recipe are two
    lines), and the baselines drawn as horizontal lines: each from the first record that scored it."""
    budgets = {float(r["config"]["budget_mpx"]) for r in records}
    found: dict[str, Any] = {}
    table: dict[str, dict[str, Any]] = {}
    for record in records:
        budget = float(record["config"]["budget_mpx"])
        for name, entry in (record.get("curves") or curves(record)).items():
            label = f"{name} ({budget:g} Mpx run)" if len(budgets) > 1 else name
            if label in found:
                raise ValueError(f"{record['results']}: a second curve named {label!r} (give each run once)")
            found[label] = entry
        for base in ("pixels", "copy"):
            if base in record["table"] and base not in table:
                table[base] = record["table"][base]
    return found, table


def pooled_rankings(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """How well each label-free score ranks every point of several curves at once (checkpoints and
    methods together, the question a user with several runs asks): Spearman's rho against the DAVIS
    column all points share, the point it prefers, the best, and the J&F lost. A point that appears
    in several curves (a shared initialisation) counts once."""
    target = _curve_column([p for e in found.values() for p in e["points"]])
    points, seen = [], set()
    for name, entry in found.items():
        for p in entry["points"]:
            key = (p["row"], *(p.get(c) for c in (target, *LABEL_FREE)))
            if key not in seen:
                seen.add(key)
                points.append({**p, "curve": name})
    out = {}
    for signal in LABEL_FREE:
        have = [p for p in points if p.get(signal) is not None and p.get(target) is not None]
        if target and len(have) >= 3:
            chosen, best, lost = _choice(have, target, signal)
            out[signal] = {"column": target, "points": len(have), "curves": len({p["curve"] for p in have}),
                           "spearman": _rho(have, target, signal),
                           "chosen": f"{chosen['curve']} at {chosen['mpx']:.0f} Mpx",
                           "best": f"{best['curve']} at {best['mpx']:.0f} Mpx", "lost": lost}
    return out


def images_floor(record: dict[str, Any]) -> str:
    """One sentence under the table when it has ``[images]`` columns: what they are, and what a
    constant guess scores there (the same for every row: it depends on the labels alone)."""
    done = next((r for s in record["scores"].values() for k, r in s.items() if k.endswith("~images")
                 and "majority" in r), None)
    if done is None:
        return ""
    return (f"`[images]`: mean per-class accuracy (balanced top-1) on `{done['data']}` ({done['num_val']} val images, "
            f"{done['num_classes']} classes); always naming train's largest class ({done['majority_class']!r}) "
            f"scores {done['majority_balanced']:.3f} balanced and {done['majority']:.3f} top-1, and val's largest "
            f"class holds {done['largest_val_share']:.3f} of it. Plain top-1 is in each score's results.")


def section(record: dict[str, Any], *, level: int = 2) -> str:
    """The Markdown of one results record: heading, provenance, tables, training commands."""
    cfg = record["config"]
    title = cfg.get("title") or (f"{', '.join(row_name(r) for r in cfg['recipes'])}: {cfg['budget_mpx']:g} million "
                                 "encoder input pixels each")
    ends = {n: v for n, v in record["table"].items() if "@" not in n}
    lines = [f"{'#' * level} {title}", "",
             f"Made by `{record['command']}` on {record['machine']}, {record['date']} "
             f"(results file `{record['results']}`, plot `{record['plot'] or 'none: nothing scored'}`).", "",
             markdown_table(ends)]
    floor = images_floor(record)
    if floor:
        lines += ["", floor]
    stats = seed_markdown(record.get("seeds", {}))
    if stats:
        lines += ["", "Over seeds (mean ± standard deviation of the end rows; `random`: its initialisations):", "",
                  stats]
    wins = comparison_markdown(record.get("comparisons", []))
    if wins:
        lines += ["", "Each recipe against the baselines, DAVIS J&F (a win: the difference of seed means is beyond "
                      "the spread, the two rows' seed standard deviations added, and a one-sided Wilcoxon "
                      "signed-rank test over sequences of the per-sequence J&F gives p < 0.05; with one seed the "
                      "spread is 0, and fewer than 5 sequences that differ can never reach p < 0.05):", "", wins]
    curve_text = curve_markdown(record.get("curves", {}))
    if curve_text:
        lines += ["", f"Learning curves (plot `{record.get('curve_plot') or 'none'}`): each run scored at "
                      "snapshots along its one schedule; budget 0 is its initialisation.", "", curve_text]
    main_davis = next((k for s in record["scores"].values() for k in s if k == "davis"), None)
    for which, caption in ((main_davis, "DAVIS J&F per sequence"), ("synth", "held-out synthetic J&F per video")):
        table = per_sequence_table({n: s for n, s in record["scores"].items() if n in ends}, which) if which else ""
        if table:
            lines += ["", f"{caption}:", "", table]
    if record["training"]:
        lines += ["", "Each trained row re-created by (the shared initialisation first: `OUT/init.safetensors`):", ""]
        lines += [f"- {name}: `{t['command']}` ({t['steps']} steps of {t['pixels_per_step']:,} pixels; load average "
                  f"{t['load_average']} when it ended, so wall minutes are upper bounds on a shared machine)"
                  for name, t in record["training"].items()]
    return "\n".join(lines)


def report(paths: list[str] | tuple[str, ...], *, command: str = "", curves_png: str = "") -> str:
    """A results page: one :func:`section` per results file, and the command that made the page;
    with ``curves_png``, every file's learning curves in one picture there (:func:`merged_curves`)."""
    if not paths:
        raise ConfigError("bench report needs results files: vidssl bench report RESULTS.json ... [out=PAGE]")
    records = []
    for path in paths:
        try:
            records.append(upgrade(json.loads(Path(path).read_text())))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such results file (written by vidssl bench)") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a results file of vidssl bench ({err})") from err
        except KeyError as err:
            raise ValueError(f"{path}: not a results file of vidssl bench (no {err})") from None
    command = command or shlex.join(["vidssl", "bench", "report", *map(str, paths)])
    head = ["# Results", "",
            f"<!-- generated by `{command}`; edit the results files or rerun the commands, not this page -->", "",
            f"Generated from {len(records)} results file(s) of `vidssl bench` by `{command}`. Each section names "
            "the command that computed it, the machine and the date; rerunning that command in its folder "
            "recomputes nothing and rewrites the results file, and this command rewrites the page.", ""]
    if curves_png:
        found, table = merged_curves(records)
        drawn = plot_curves(found, table, Path(curves_png), title="learning curves: " + "; ".join(
            r["config"].get("title") or r["results"] for r in records if r.get("curves")))
        if drawn is None:
            raise ValueError(f"curves={curves_png}: none of the results files has a learning curve (bench curve=)")
        head += [f"All learning curves in one picture: `{curves_png}`.", ""]
        for signal, k in pooled_rankings(found).items():
            rho = "n/a" if k["spearman"] is None else f"{k['spearman']:+.2f}"
            head += [f"Over all {k['points']} points of the {k['curves']} curves at once, {signal} ranks them against "
                     f"{k['column']} with Spearman's rho {rho}; it prefers {k['chosen']}, the best is {k['best']}: "
                     f"{k['lost']:.3f} J&F lost by its choice.", ""]
    return "\n".join(head + ["\n\n".join(section(r) for r in records), ""])


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A results record of an earlier release in today's shape (``rows``; ``preset`` a tuple)."""
    for key in ("command", "table", "config"):
        record[key]  # KeyError: not a results file
    cfg = record["config"]
    if isinstance(cfg.get("preset"), str):
        cfg["preset"] = [cfg["preset"]]
    cfg.setdefault("seeds", [])
    if "rows" not in record:
        record["rows"] = [{"name": n, "base": n, "seed": cfg.get("seed", 0),
                           "recipe": next((r for r in cfg["recipes"] if row_name(r) == n), ""), "fraction": 1.0}
                          for n in record["table"]]
    return record
