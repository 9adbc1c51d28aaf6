"""The invariance bar chart (``invariance.png``), drawn with PIL so no plotting library is needed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from vidssl.files import atomic_path


def plot_invariance(
    results: Mapping[str, Mapping[str, float | int]],
    path: Path,
    *,
    topk: Sequence[int],
    label: str = "",
    ymax: float = 1.0,
) -> None:
    """A grouped bar chart (PNG): transformations along x, one bar per k (the ``top{k}`` score,
    on a 0-``ymax`` axis: 1 for vidssl's mean L, 100 for the paper protocol's score); ``label``
    (e.g. the encoder) heads the subtitle. Drawn with PIL, so no plotting library is needed."""
    from PIL import Image, ImageDraw, ImageFont

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    width, height = 160 * len(results) + 120, 420
    left, right, top, bottom = 70, 20, 60, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    plot_h = height - top - bottom

    def y_of(value: float) -> float:
        return top + plot_h * (1 - min(value / ymax, 1.0))

    for tick in (0.0, 0.25 * ymax, 0.5 * ymax, 0.75 * ymax, ymax):
        draw.line([(left, y_of(tick)), (width - right, y_of(tick))], fill=(220, 220, 220))
        draw.text((left - 8, y_of(tick)), f"{tick:.2f}" if ymax <= 1 else f"{tick:.0f}", fill="black", font=small,
                  anchor="rm")
    draw.line([(left, top), (left, top + plot_h), (width - right, top + plot_h)], fill="black")
    draw.text((width / 2, 8), "Invariance (Purushwalkam & Gupta 2020)", fill="black", font=font, anchor="mt")
    what = "mean local firing rate L of the top-k neurons" if ymax <= 1 else "released code's score (about 100 L)"
    subtitle = what + (f" - {label}" if label else "")
    draw.text((width / 2, 28), subtitle, fill=(90, 90, 90), font=small, anchor="mt")
    group = (width - left - right) / len(results)
    bar = group * 0.7 / len(topk)
    for g, (name, row) in enumerate(results.items()):
        x0 = left + g * group + group * 0.15
        for b, k in enumerate(topk):
            value = row[f"top{k}"]
            xa = x0 + b * bar
            if isinstance(value, float) and not math.isnan(value):
                draw.rectangle([xa, y_of(value), xa + bar - 2, y_of(0)], fill=colours[b % len(colours)])
                text = f"{value:.2f}" if ymax <= 1 else f"{value:.1f}"
                draw.text((xa + bar / 2, y_of(value) - 3), text, fill="black", font=small, anchor="mb")
        draw.text((left + (g + 0.5) * group, top + plot_h + 8), name, fill="black", font=font, anchor="mt")
    for b, k in enumerate(topk):  # legend, top right
        x = width - right - 80 * (len(topk) - b)
        draw.rectangle([x, 44, x + 12, 54], fill=colours[b % len(colours)])
        draw.text((x + 16, 49), f"top-{k}", fill="black", font=small, anchor="lm")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def plot_comparison(
    scores: Mapping[str, Mapping[str, Mapping[str, float | int]]],
    path: Path,
    *,
    key: str,
    title: str,
    ymax: float = 1.0,
) -> None:
    """Several encoders side by side (PNG): transformations along x, one bar per encoder of
    ``scores[encoder][transformation][key]`` on a 0-``ymax`` axis (missing or NaN: no bar)."""
    from PIL import Image, ImageDraw, ImageFont

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (255, 215, 0)]
    encoders = list(scores)
    names = list(dict.fromkeys(t for rows in scores.values() for t in rows))
    width, height = max(150 * len(names) + 120, 620), 440
    left, right, top, bottom = 70, 20, 80, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=11)
    plot_h = height - top - bottom

    def y_of(value: float) -> float:
        return top + plot_h * (1 - min(max(value / ymax, 0.0), 1.0))

    for tick in (0.0, 0.25 * ymax, 0.5 * ymax, 0.75 * ymax, ymax):
        draw.line([(left, y_of(tick)), (width - right, y_of(tick))], fill=(220, 220, 220))
        draw.text((left - 8, y_of(tick)), f"{tick:.2f}" if ymax <= 1 else f"{tick:.0f}", fill="black", font=small,
                  anchor="rm")
    draw.line([(left, top), (left, top + plot_h), (width - right, top + plot_h)], fill="black")
    draw.text((width / 2, 8), title, fill="black", font=font, anchor="mt")
    group = (width - left - right) / len(names)
    bar = group * 0.8 / len(encoders)
    for g, name in enumerate(names):
        for b, encoder in enumerate(encoders):
            value = scores[encoder].get(name, {}).get(key)
            xa = left + g * group + group * 0.1 + b * bar
            if isinstance(value, (int, float)) and not math.isnan(value):
                draw.rectangle([xa, y_of(value), xa + bar - 2, y_of(0)], fill=colours[b % len(colours)])
        draw.text((left + (g + 0.5) * group, top + plot_h + 8), name, fill="black", font=font, anchor="mt")
    for b, encoder in enumerate(encoders):  # legend, two rows under the title
        x, y = left + (b % 4) * (width - left - right) / 4, 30 + 16 * (b // 4)
        draw.rectangle([x, y, x + 12, y + 10], fill=colours[b % len(colours)])
        draw.text((x + 16, y + 5), encoder, fill="black", font=small, anchor="lm")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
