"""Fixtures for the tracking tests: ultralytics settings in a temporary folder, an untrained YOLO
saved as a checkpoint (built offline from its YAML), and copies of the synthetic videos.

Test modules import what they use (``from tracking_fixtures import ...``). This is deliberately not
a ``conftest.py``: a second conftest module without ``__init__.py`` replaces ``sys.modules["conftest"]``
and would break the ``from conftest import ...`` of test folders collected after this one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"  # as in tests/conftest.py


@pytest.fixture(scope="session", autouse=True)
def ultralytics_settings_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ultralytics' settings go to a temporary folder, never the user's cache or ~/.config."""
    path = tmp_path_factory.mktemp("ultralytics")
    old = os.environ.get("YOLO_CONFIG_DIR")
    os.environ["YOLO_CONFIG_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("YOLO_CONFIG_DIR", None)
    else:
        os.environ["YOLO_CONFIG_DIR"] = old


def build_untrained(tmp_path_factory: pytest.TempPathFactory, yaml: str) -> Path:
    """An untrained ultralytics model from its YAML (no download), saved as a ``.pt``."""
    from vidssl.tracking.offline import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("models") / yaml.replace(".yaml", ".pt")
    YOLO(yaml).save(str(path))
    return path


@pytest.fixture(scope="session")
def untrained_yolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``yolov8n.yaml`` with random weights as ``yolov8n.pt`` (a detector that finds nothing)."""
    return build_untrained(tmp_path_factory, "yolov8n.yaml")


@pytest.fixture()
def synth_copy(synth_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the synthetic videos: ``data/`` with the 3 videos, ``annotations/`` beside it."""
    shutil.copytree(synth_dir / "videos", tmp_path / "data")
    shutil.copytree(synth_dir / "annotations", tmp_path / "annotations")
    return tmp_path / "data"


@pytest.fixture()
def shared_openvino(request: pytest.FixtureRequest) -> Path:
    """The shared OpenVINO export named by the indirect parameter (``yolov8n``, ``yolo11n``);
    skips when ../shared/data or openvino is absent."""
    folder = SHARED / "detectors" / f"{request.param}_int8_openvino_model"
    if not folder.is_dir():
        pytest.skip("../shared/data/detectors is absent")
    pytest.importorskip("openvino")
    return folder
