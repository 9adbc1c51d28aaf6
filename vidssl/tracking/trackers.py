"""Tracker recipes (ultralytics YAML) and the ultralytics trackers they build.

The recipes live in the repository's ``trackers/`` folder (YAML only, see DESIGN.md); a wheel ships
them as ``vidssl/_recipes/trackers/``. :func:`find_tracker_recipe` looks in both, so a recipe name
works from an installed package and from a checkout alike.

Only ByteTrack (Zhang et al., 2022, arXiv:2110.06864) and BoT-SORT (Aharon et al., 2022,
arXiv:2206.14651) without ReID are accepted: both run from boxes and the frame alone. BoT-SORT's
ReID needs either detector features that a box-only feed does not carry or a separate ReID model
that would have to be downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_TRACKERS = ("bytetrack", "botsort")


def recipe_dirs() -> list[Path]:
    """Folders searched for tracker recipes: the installed copy, then the checkout's ``trackers/``."""
    package = Path(__file__).resolve().parents[1]  # .../vidssl
    return [package / "_recipes" / "trackers", package.parent / "trackers"]


def find_tracker_recipe(spec: str) -> Path:
    """The recipe file for ``spec``: a recipe name (``bytetrack``, ``botsort``) or a YAML path.

    Raises:
        FileNotFoundError: a path that does not exist, or a name found in no recipe folder (the
            message lists the names that exist).
    """
    if spec.lower().endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"tracker recipe {path}: no such file")
        return path
    known = []
    for folder in recipe_dirs():
        candidate = folder / f"{spec}.yaml"
        if candidate.is_file():
            return candidate
        known += [p.stem for p in folder.glob("*.yaml")] if folder.is_dir() else []
    names = ", ".join(sorted(set(known))) or "none found"
    raise FileNotFoundError(f"tracker '{spec}': no recipe {spec}.yaml (known: {names}; or give a path to a YAML)")


@dataclass(frozen=True)
class TrackerRecipe:
    """A parsed tracker recipe: its file and every setting in it (``tracker_type`` included)."""

    path: Path
    settings: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.settings["tracker_type"])


def load_tracker_recipe(spec: str) -> TrackerRecipe:
    """Find and check the recipe for ``spec`` (see :func:`find_tracker_recipe`).

    Raises:
        FileNotFoundError: no such recipe.
        ValueError: the YAML is not a mapping, names another tracker type, or enables ReID.
    """
    path = find_tracker_recipe(spec)
    try:
        settings = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"tracker recipe {path}: not valid YAML ({err})") from err
    if not isinstance(settings, dict) or "tracker_type" not in settings:
        raise ValueError(f"tracker recipe {path}: expected a mapping with a 'tracker_type' key")
    if settings["tracker_type"] not in SUPPORTED_TRACKERS:
        raise ValueError(
            f"tracker recipe {path}: tracker_type '{settings['tracker_type']}' is not supported"
            f" (choose {' or '.join(SUPPORTED_TRACKERS)})"
        )
    if settings.get("with_reid"):
        raise ValueError(f"tracker recipe {path}: with_reid=True is not supported (it needs a ReID model)")
    return TrackerRecipe(path, settings)


def new_tracker(recipe: TrackerRecipe) -> Any:
    """A fresh ultralytics ``BYTETracker`` or ``BOTSORT`` for one video (track ids start at 1).

    Feed it with ``tracker.update(boxes, frame_bgr)`` per frame, ``boxes`` an ultralytics ``Boxes``
    of ``(N, 6)`` rows ``x1, y1, x2, y2, score, class``; it returns ``(M, 8)`` rows
    ``x1, y1, x2, y2, track_id, score, class, detection_index`` for the tracks confirmed this frame.
    """
    from vidssl.tracking.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.trackers import BOTSORT, BYTETracker
    from ultralytics.utils import IterableSimpleNamespace

    cls = {"bytetrack": BYTETracker, "botsort": BOTSORT}[recipe.name]
    return cls(args=IterableSimpleNamespace(**recipe.settings))
