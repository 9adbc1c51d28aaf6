"""Import ultralytics so that it never touches the network or the user's ``~/.config``.

Out of the box ultralytics checks DNS at import, writes a settings file into ``~/.config``, sends
usage events when ``sync`` is on, downloads fonts for plots and weights for bare model names, and
pip-installs missing requirements. :func:`import_ultralytics` is the single entry point every vidssl
module uses: it sets the environment switches *before* the first import and turns the remaining
settings off afterwards. Call it instead of ``import ultralytics``.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from vidssl.data.index import default_cache_dir

# Settings keys that make ultralytics talk to a server or an experiment tracker. Keys that a given
# ultralytics version lacks are skipped (checked against SETTINGS at run time).
_SETTINGS_OFF = (
    "sync",  # anonymous usage events
    "hub",
    "clearml",
    "comet",
    "dvc",
    "mlflow",
    "neptune",
    "raytune",
    "tensorboard",
    "wandb",
    "vscode_msg",
    "openvino_msg",
)


def ultralytics_config_dir() -> Path:
    """Where ultralytics keeps its settings: ``$YOLO_CONFIG_DIR`` if the user set one, else
    ``<vidssl cache>/ultralytics`` (see :func:`vidssl.data.index.default_cache_dir`)."""
    if os.environ.get("YOLO_CONFIG_DIR"):
        return Path(os.environ["YOLO_CONFIG_DIR"])
    return default_cache_dir() / "ultralytics"


def import_ultralytics() -> ModuleType:
    """The ``ultralytics`` module, imported offline and with integrations switched off.

    Sets ``YOLO_OFFLINE=1`` (no DNS check), ``YOLO_AUTOINSTALL=false`` (no pip), ``YOLO_CONFIG_DIR``
    (settings outside ``~/.config``) and, unless already set, ``YOLO_VERBOSE=false``; then sets
    every :data:`_SETTINGS_OFF` key that exists to False. Safe to call repeatedly. If ultralytics
    was already imported by someone else, the environment switches come too late for the import
    itself, but the settings are still switched off.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    config_dir = ultralytics_config_dir()
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)

    try:
        import ultralytics
        from ultralytics.utils import SETTINGS
    except ImportError as err:
        raise ImportError(
            "vidssl tracks needs ultralytics, lap and (for OpenVINO models) openvino: pip install 'vidssl[track]'"
        ) from err
    changes = {key: False for key in _SETTINGS_OFF if key in SETTINGS and SETTINGS[key] is not False}
    if changes:
        SETTINGS.update(changes)  # writes the settings file once; later calls find nothing to change
    return ultralytics
