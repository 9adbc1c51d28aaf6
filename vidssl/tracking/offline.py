"""Import ultralytics so that it never touches the network, the user's ``~/.config``, or code
inside a weights file.

Out of the box ultralytics checks DNS at import, writes a settings file into ``~/.config``, sends
usage events when ``sync`` is on, downloads fonts for plots and weights for bare model names, and
pip-installs missing requirements; it loads ``.pt`` detectors by full unpickling, which runs
whatever a crafted file asks for; and ``import openvino`` (its OpenVINO backend) sends a usage
event to Google Analytics from a forked process and writes ``~/intel/`` whenever ``$HOME`` exists.
:func:`import_ultralytics` is the single entry point every vidssl module uses: it sets the
environment switches *before* the first import (including ultralytics' restricted
``weights_only`` loading, ``ULTRALYTICS_SAFE_LOAD``), keeps ``openvino_telemetry`` from being
imported (OpenVINO then uses its own no-op stub), and turns the remaining settings off afterwards.
Call it instead of ``import ultralytics``.
"""

from __future__ import annotations

import os
import sys
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
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # .pt files: torch.load(weights_only=True) + known model classes
    block_openvino_telemetry()
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
    import ultralytics.nn.tasks as tasks
    import ultralytics.utils as utils

    # Imported before the switch was set (by the user's own code): the flag is read at call time.
    utils.SAFE_LOAD = tasks.SAFE_LOAD = True
    return ultralytics


def safe_load_supported() -> bool:
    """Whether this ultralytics (and torch) can load ``.pt`` checkpoints without full unpickling."""
    try:
        from ultralytics.nn.tasks import _SafeLoad
    except ImportError:
        return False
    return bool(getattr(_SafeLoad, "SUPPORTED", False))


def block_openvino_telemetry() -> None:
    """Make ``import openvino_telemetry`` fail, so ``import openvino`` falls back to its bundled
    no-op stub (``openvino.tools.ovc.telemetry_stub``) instead of sending a usage event. Has no
    effect on a process that already imported OpenVINO."""
    if "openvino_telemetry" not in sys.modules or sys.modules["openvino_telemetry"] is None:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import raises ImportError
