"""Fixtures for the tracking tests: ultralytics settings in a temporary folder, untrained YOLOs
saved as checkpoints (built offline from their YAML), copies of the synthetic videos, and the
shared OpenVINO detectors.

Test modules name these fixtures as arguments and import nothing from here (plain helpers live
in ``tests/testdata.py``; see ``tests/conftest.py`` for why nothing is imported from a conftest).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testdata import SHARED


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


@pytest.fixture(scope="session")
def build_untrained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``build_untrained(yaml)``: an untrained ultralytics model from its YAML (no download), saved
    as a ``.pt`` in a temporary folder."""

    def build(yaml: str) -> Path:
        from vidssl.tracking.offline import import_ultralytics

        import_ultralytics()
        from ultralytics import YOLO

        path = tmp_path_factory.mktemp("models") / yaml.replace(".yaml", ".pt")
        YOLO(yaml).save(str(path))
        return path

    return build


@pytest.fixture(scope="session")
def untrained_yolo(build_untrained: Callable[[str], Path]) -> Path:
    """``yolov8n.yaml`` with random weights as ``yolov8n.pt`` (a detector that finds nothing)."""
    return build_untrained("yolov8n.yaml")


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
