"""Detector adapters: frames in, per-frame boxes out, whatever produced them.

Two adapters share one small protocol (:class:`Detector`):

* :class:`UltralyticsDetector`: a YOLO detector from a local file, a ``.pt`` checkpoint or an
  exported model folder (OpenVINO, ...; ultralytics reads its ``metadata.yaml``). Nothing is
  downloaded: the path must exist, and ultralytics is imported through
  :func:`vidssl.tracking.offline.import_ultralytics`.
* :class:`GroundTruthDetector`: the boxes of a synthetic video's ``annotations/<seq>.json`` (see
  :mod:`vidssl.data.synth`) with score 1.0, so the whole tracking pipeline runs and is tested
  without any weights.

Boxes are ``x1, y1, x2, y2`` in pixels of the video's native resolution, pixel-edge coordinates:
``(x1, y1)`` is the top-left corner of the first pixel inside, ``(x2, y2)`` the bottom-right edge
(exclusive), so ``x2 - x1`` is the width. Both YOLO's continuous boxes and the synthetic
annotations already use this convention.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class AnnotationError(ValueError):
    """A ground-truth annotation file is missing or does not fit its video."""


@dataclass(frozen=True)
class Detections:
    """The detections of one frame.

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in pixels (x2, y2 exclusive).
        scores: (N,) float32 confidences in [0, 1].
        classes: (N,) int64 class ids of the detector's ``names``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    @classmethod
    def from_arrays(cls, boxes: Any, scores: Any, classes: Any) -> Detections:
        return cls(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32).reshape(-1),
            np.asarray(classes, np.int64).reshape(-1),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> Detections:
        """The detections where the boolean (N,) ``keep`` is true."""
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])


def filter_detections(
    detections: Detections, *, classes: frozenset[int] | None, min_score: float, min_box: float
) -> Detections:
    """Keep detections of ``classes`` (None: all) with score >= ``min_score`` whose shorter box side
    is at least ``min_box`` pixels."""
    sides = np.minimum(detections.boxes[:, 2] - detections.boxes[:, 0], detections.boxes[:, 3] - detections.boxes[:, 1])
    keep = (detections.scores >= min_score) & (sides >= min_box)
    if classes is not None:
        keep &= np.isin(detections.classes, sorted(classes))
    return detections.select(keep)


class Detector(Protocol):
    """What the tracking run needs from a detector."""

    names: dict[int, str]  # class id -> class name

    def describe(self) -> dict[str, Any]:
        """JSON-safe facts recorded in ``tracks.json`` (what ran, with which input size)."""
        ...

    def detect(self, video: Path, indices: Sequence[int], frames: np.ndarray) -> list[Detections]:
        """Detections for each of ``frames`` (T, H, W, 3) uint8 RGB, frames ``indices`` of ``video``."""
        ...


# --------------------------------------------------------------------------------------------
# Ground truth (synthetic videos)


def _sequence_name(video: Path) -> str:
    return video.name if video.is_dir() else video.stem


def find_annotation(video: Path, annotations: Path | None = None) -> Path:
    """The annotation JSON of ``video``: ``annotations/<seq>.json`` where ``<seq>`` is the file's
    stem (or a frame folder's name), looked up in ``annotations`` if given, else in the nearest
    ``annotations/`` folder above the video (``<synth>/videos/<seq>.mp4`` ->
    ``<synth>/annotations/<seq>.json``; the DAVIS-layout frame folders find the same file).

    Raises:
        AnnotationError: no such file.
    """
    name = f"{_sequence_name(video)}.json"
    if annotations is not None:
        candidate = annotations / name
        if candidate.is_file():
            return candidate
        raise AnnotationError(f"{video}: no annotation {candidate}")
    for folder in Path(video).resolve().parents:
        candidate = folder / "annotations" / name
        if candidate.is_file():
            return candidate
    raise AnnotationError(f"{video}: no annotations/{name} in any folder above it (set annotations=DIR)")


class GroundTruthDetector:
    """Boxes from synthetic-video annotations, score 1.0 (see :mod:`vidssl.data.synth`).

    ``jitter`` > 0 moves each box edge by Gaussian noise of ``jitter`` times the box's width (x) or
    height (y), drawn from a generator seeded by (``seed``, frame index), so results do not depend
    on how frames are chunked. The annotations' object ids are never passed on: the tracker has to
    find the identities itself.
    """

    def __init__(self, *, annotations: Path | None = None, jitter: float = 0.0, seed: int = 0) -> None:
        from vidssl.data.synth import CLASSES

        if annotations is not None and not Path(annotations).is_dir():
            raise FileNotFoundError(f"annotations={annotations}: no such folder")
        self.annotations = Path(annotations) if annotations is not None else None
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.names = dict(enumerate(CLASSES))
        self._loaded: tuple[Path, dict[int, list[dict]], dict] | None = None  # the current video's boxes

    def describe(self) -> dict[str, Any]:
        return {
            "type": "groundtruth",
            "annotations": str(self.annotations) if self.annotations else "nearest annotations/ folder",
            "jitter": self.jitter,
        }

    def _boxes_of(self, video: Path) -> tuple[dict[int, list[dict]], dict]:
        if self._loaded is None or self._loaded[0] != video:
            file = find_annotation(video, self.annotations)
            try:
                doc = json.loads(file.read_text())
                by_frame = {int(f["index"]): f["boxes"] for f in doc["frames"]}
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise AnnotationError(f"{file}: not a synthetic-video annotation ({err})") from err
            self._loaded = (video, by_frame, doc)
        return self._loaded[1], self._loaded[2]

    def detect(self, video: Path, indices: Sequence[int], frames: np.ndarray) -> list[Detections]:
        by_frame, doc = self._boxes_of(video)
        height, width = frames.shape[1:3]
        if (doc.get("height"), doc.get("width")) != (height, width):
            raise AnnotationError(
                f"{video}: annotation is {doc.get('width')}x{doc.get('height')} but frames are {width}x{height}"
            )
        out = []
        for index in indices:
            boxes = by_frame.get(int(index), [])
            xyxy = np.array([b["box"] for b in boxes], np.float32).reshape(-1, 4)
            if self.jitter > 0 and len(xyxy):
                rng = np.random.default_rng([self.seed, int(index)])
                size = np.tile(xyxy[:, 2:] - xyxy[:, :2], 2)  # w, h, w, h
                xyxy = xyxy + rng.normal(0.0, self.jitter, xyxy.shape).astype(np.float32) * size
                xyxy = np.clip(xyxy, 0, [width, height, width, height]).astype(np.float32)
            out.append(Detections.from_arrays(xyxy, np.ones(len(xyxy)), [b["class_id"] for b in boxes]))
        return out


# --------------------------------------------------------------------------------------------
# Ultralytics YOLO


class UltralyticsDetector:
    """A YOLO detector run by ultralytics from a local ``.pt`` file or exported model folder.

    Build it with :func:`load_detector`, which checks the model before anything else runs.
    ``imgsz`` applies to ``.pt`` models; exports with static shapes (such as the OpenVINO INT8
    exports) run at their export size whatever ``imgsz`` says, and :meth:`describe` records it.
    """

    def __init__(self, model: Any, path: Path, names: dict[int, str], *, imgsz: int, device: str, conf: float,
                 export_imgsz: Any = None) -> None:
        self.model = model
        self.path = path
        self.names = names
        self.imgsz = imgsz
        self.device = device
        self.conf = conf
        self.export_imgsz = export_imgsz

    def describe(self) -> dict[str, Any]:
        return {
            "type": "ultralytics",
            "path": str(self.path),
            "imgsz": self.imgsz,
            "export_imgsz": self.export_imgsz,  # set for exports: the size they really run at
            "num_classes": len(self.names),
        }

    def detect(self, video: Path, indices: Sequence[int], frames: np.ndarray) -> list[Detections]:
        bgr = [np.ascontiguousarray(frame[..., ::-1]) for frame in frames]  # ultralytics reads arrays as BGR
        kwargs: dict[str, Any] = {"imgsz": self.imgsz, "conf": self.conf, "verbose": False}
        if self.device:
            kwargs["device"] = self.device
        results = self.model.predict(bgr, **kwargs)
        out = []
        for result in results:
            boxes = result.boxes.cpu().numpy()
            out.append(Detections.from_arrays(boxes.xyxy, boxes.conf, boxes.cls))
        return out


def _not_a_detector(path: Path, task: str) -> ValueError:
    return ValueError(f"detector {path} is a '{task}' model, not a detector (task 'detect' is needed)")


def load_detector(
    spec: str,
    *,
    imgsz: int = 640,
    device: str = "",
    conf: float = 0.1,
    annotations: str | Path | None = None,
    jitter: float = 0.0,
) -> Detector:
    """The detector named by ``spec``: ``groundtruth``, a ``.pt`` file or an exported model folder.

    Everything is checked here, before any video is opened.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the path is not a loadable ultralytics model, is a model YAML (an untrained
            architecture), or is a model of another task (classify, segment, pose, ...).
    """
    if spec == "groundtruth":
        return GroundTruthDetector(annotations=Path(annotations) if annotations else None, jitter=jitter)
    if not spec:
        raise ValueError(
            "tracks needs a detector: detector=PATH (.pt or exported model folder) or detector=groundtruth"
        )
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"detector {path}: no such file or folder (nothing is downloaded: give a local path)")
    from vidssl.tracking.offline import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    if path.suffix.lower() in (".yaml", ".yml"):
        from ultralytics.nn.tasks import guess_model_task, yaml_model_load

        try:
            task = guess_model_task(yaml_model_load(path))
        except Exception as err:  # noqa: BLE001 - any parse failure means "not a model yaml"
            raise ValueError(f"detector {path}: not an ultralytics model YAML ({err})") from err
        if task != "detect":
            raise _not_a_detector(path, task)
        raise ValueError(
            f"detector {path} is a model architecture (YAML) with random weights, not a trained detector:"
            " give a .pt file or an exported model folder"
        )

    if path.is_file() and path.suffix.lower() == ".pt":
        from vidssl.tracking.offline import safe_load_supported

        if not safe_load_supported():  # never unpickle a weights file in full: it can run any code
            raise ValueError(f"detector {path}: this ultralytics / torch cannot load .pt files without running "
                             "code they contain (ultralytics >= 8.4 with torch >= 2.6 can); export it to a folder "
                             "(OpenVINO, ONNX) or upgrade")
        try:
            model = YOLO(str(path))
        except Exception as err:  # noqa: BLE001 - torch / pickle / ultralytics raise many types
            detail = " ".join(str(err).replace("ERROR ❌️", "").split())
            if "outside the supported Ultralytics checkpoint format" in detail:
                detail = ("it references objects other than model classes and weights; refused without loading "
                          "(a crafted .pt file can run code when unpickled)")
            raise ValueError(
                f"detector {path}: cannot load as an ultralytics checkpoint ({type(err).__name__}: {detail})"
            ) from err
        if model.task != "detect":
            raise _not_a_detector(path, model.task)
        names = dict(model.names)
        export_imgsz = None
    else:
        from ultralytics.nn.backends.base import BaseBackend

        metadata = BaseBackend.read_metadata(path)
        if not metadata:
            raise ValueError(
                f"detector {path}: no ultralytics model metadata found; expected a .pt checkpoint or a folder"
                " exported by ultralytics (with metadata.yaml)"
            )
        task = metadata.get("task", "detect")
        if task != "detect":
            raise _not_a_detector(path, task)
        if not metadata.get("names"):
            raise ValueError(f"detector {path}: its metadata lists no class names")
        try:
            model = YOLO(str(path), task="detect")
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"detector {path}: cannot load ({type(err).__name__}: {err})") from err
        raw = metadata["names"]
        names = {int(k): str(v) for k, v in (raw.items() if isinstance(raw, dict) else enumerate(raw))}
        export_imgsz = None if metadata.get("dynamic") else metadata.get("imgsz")
    detector = UltralyticsDetector(model, path.resolve(), names, imgsz=imgsz, device=device, conf=conf,
                                   export_imgsz=export_imgsz)
    try:  # exports load their runtime lazily: run once now so a broken model fails before any video
        detector.detect(path, [0], np.zeros((1, 64, 64, 3), np.uint8))
    except Exception as err:  # noqa: BLE001 - runtimes (openvino, onnxruntime, torch) raise many types
        raise ValueError(f"detector {path}: loads but cannot run ({type(err).__name__}: {err})") from err
    return detector
