"""Deterministic synthetic videos with ground truth: the default dataset for demos and tests.

Each video shows textured shapes ("disc", "square", "triangle", "star", "cross") moving, rotating
and occluding each other in front of a colourful background seen through a panning, slightly
shaking camera. Every object's texture (stripes and spots) makes it trackable by appearance, and
every object after the first is steered to cross another one mid-video, so occlusion always
happens. The same :class:`SynthConfig` always produces the same frames, masks and JSON.

    result = generate(Path("data/synth"), SynthConfig())

Layout under ``out/``::

    videos/<seq>.mp4                              H.264, a keyframe every ``cfg.keyint`` frames
    davis/JPEGImages/480p/<seq>/00000.jpg ...     the same frames as JPEG
    davis/Annotations/480p/<seq>/00000.png ...    visible-object label maps, palette ("P") PNGs
    davis/ImageSets/2017/val.txt                  sequence names, one a line
    annotations/<seq>.json                        boxes, keypoints, classes (schema below)
    synth.json                                    {"config": <SynthConfig fields>, "sequences": [...]}

``<seq>`` is ``synth_000``, ``synth_001``, ... The folder is called ``480p`` for DAVIS-2017 layout
compatibility whatever the configured size. ``synth.json`` is written last: its presence means the
dataset is complete. Label maps hold 0 for background and the object id ``k`` (1-based, fixed per
object whatever its depth) where object ``k`` is visible after occlusion.

``annotations/<seq>.json``::

    {"sequence": "synth_000", "num_frames": 48, "fps": 24.0, "height": 240, "width": 320,
     "objects": [{"id": 1, "class": "star", "class_id": 3}, ...],
     "frames": [{"index": 0,
                 "boxes": [{"id": 1, "class_id": 3, "box": [x1, y1, x2, y2]}, ...],
                 "keypoints": {"1": [[x, y, visible], ...], ...}}, ...]}

``class_id`` indexes :data:`CLASSES`. A box is the bounding box of the object's visible pixels in
pixel-edge coordinates (``x2 - x1`` is its width in pixels); an object with no visible pixel has no
box in that frame. Every object has 5 keypoints in every frame: its centre, then 4 points inside the
shape near its extremities, moving with the object. Pixel centres lie at integer coordinates, so a
keypoint ``(x, y)`` falls on pixel ``(row, col) = (floor(y + 0.5), floor(x + 0.5))``; ``visible`` is
1 exactly when that pixel is inside the frame and carries the object's label, 0 when the keypoint
is occluded or outside the frame.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from vidssl.config import option
from vidssl.data.video_writer import write_frame_folder, write_video
from vidssl.files import atomic_write_text

CLASSES = ("disc", "square", "triangle", "star", "cross")
"""Object classes; an object's ``class_id`` is the index into this tuple."""

NUM_KEYPOINTS = 5


@dataclass(frozen=True)
class SynthConfig:
    """How to make a synthetic dataset; ``synth.json`` records it next to the data."""

    out: str = option("runs/synth", "output folder (videos/, davis/, annotations/, synth.json)")
    num_videos: int = option(8, "number of videos")
    num_frames: int = option(48, "frames per video")
    height: int = option(240, "frame height (even, as H.264 yuv420p needs)")
    width: int = option(320, "frame width (even)")
    fps: float = option(24.0, "frame rate")
    num_objects: int = option(3, "at most this many objects per video; each video draws 2..num_objects")
    seed: int = option(0, "video i is drawn from a generator seeded with (seed, i)")
    keyint: int = option(8, "mp4 keyframe interval (frames): short GOPs make random access fast")
    jpeg_quality: int = option(95, "quality of the DAVIS-layout JPEG frames")
    lighting: float = option(0.0, "strength of a slowly changing illumination (brightness, colour cast and a "
                             "sweeping light gradient over the whole scene); 0 = constant light")

    def __post_init__(self) -> None:
        if self.height % 2 or self.width % 2 or self.height < 16 or self.width < 16:
            raise ValueError(f"height and width must be even and >= 16, got {self.height}x{self.width}")
        if not 1 <= self.num_objects <= 255:  # labels are stored as uint8
            raise ValueError(f"num_objects must be in 1..255, got {self.num_objects}")
        if not 0 <= self.lighting < 1:
            raise ValueError(f"lighting must be in [0, 1), got {self.lighting}")
        if min(self.num_videos, self.num_frames, self.keyint, self.fps) <= 0 or self.seed < 0:
            raise ValueError(f"num_videos, num_frames, keyint, fps must be positive and seed >= 0: {self}")


@dataclass(frozen=True)
class SynthResult:
    """What :func:`generate` wrote."""

    root: Path
    sequences: tuple[str, ...]  # synth_000, synth_001, ...
    videos: tuple[Path, ...]  # root/videos/<seq>.mp4, in the order of ``sequences``


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC palette: 256 RGB colours flattened to 768 ints.

    Colour ``k`` spreads the bits of ``k`` over the channels from the most significant bit down
    (1 -> dark red, 2 -> dark green, 3 -> olive, ...), so neighbouring labels look different.
    """
    palette: list[int] = []
    for label in range(256):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((label >> (3 * bit + channel)) & 1) << (7 - bit)
        palette += rgb
    return palette


def read_palette_mask(path: Path) -> np.ndarray:
    """Label map (H, W) uint8 from a palette ("P") or grayscale PNG such as a DAVIS annotation."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette or grayscale label image, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def load_annotations(path: Path) -> dict:
    """Read ``annotations/<seq>.json`` (schema in the module docstring)."""
    return json.loads(Path(path).read_text())


# Shapes in unit coordinates (radius 1 around the object's centre, y down) and their keypoints.
def _star(tips: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * tips) * math.pi / tips
    radii = np.where(np.arange(2 * tips) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_ANGLES = np.linspace(0, 2 * math.pi, 48, endpoint=False)
_TRIANGLE = _star(tips=3, inner=0.5)[::2]  # apexes up, lower right, lower left
_SHAPES = {
    "disc": np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1),
    "square": np.array([[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7]]),
    "triangle": _TRIANGLE,
    "star": _star(),
    "cross": np.array(
        [[0.3, -0.95], [0.3, -0.3], [0.95, -0.3], [0.95, 0.3], [0.3, 0.3], [0.3, 0.95],
         [-0.3, 0.95], [-0.3, 0.3], [-0.95, 0.3], [-0.95, -0.3], [-0.3, -0.3], [-0.3, -0.95]]
    ),
}
_PLUS = np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
# Centre first, then 4 points well inside the shape (so rasterisation keeps them on the object).
_KEYPOINTS = {
    "disc": np.vstack([[0, 0], 0.7 * _PLUS]),
    "square": np.vstack([[0, 0], 0.5 * _SHAPES["square"] / 0.7]),
    "triangle": np.vstack([[0, 0], 0.55 * _TRIANGLE, [0, 0.35]]),
    "star": np.vstack([[0, 0], 0.65 * _star()[0:8:2]]),
    "cross": np.vstack([[0, 0], 0.65 * _PLUS]),
}


@dataclass(frozen=True)
class _Object:
    """One object's appearance and its whole trajectory, precomputed for every frame."""

    id: int  # 1-based label
    class_name: str
    texture: np.ndarray  # (S, S, 3) uint8, centred on the object
    radius: float  # pixels at scale 1
    centre: np.ndarray  # (T, 2) x, y in frame pixels
    angle: np.ndarray  # (T,) radians
    scale: np.ndarray  # (T,)

    def affine(self, t: int) -> np.ndarray:
        """(2, 3) map from unit shape coordinates to frame pixels at frame ``t``."""
        c, s = math.cos(self.angle[t]), math.sin(self.angle[t])
        linear = self.radius * self.scale[t] * np.array([[c, -s], [s, c]])
        return np.hstack([linear, self.centre[t][:, None]])

    def texture_affine(self, t: int) -> np.ndarray:
        """(2, 3) map from texture pixels to frame pixels: texture pixel c (its centre) is unit 0."""
        c, k = (self.texture.shape[0] - 1) / 2, 1 / self.radius
        return self.affine(t) @ np.array([[k, 0, -c * k], [0, k, -c * k], [0, 0, 1]])


def _colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A saturated RGB colour of ``hue`` (OpenCV units: 0..180 is a full turn), float32 in [0, 255]."""
    hsv = np.array([[[hue % 180, rng.uniform(150, 255), rng.uniform(130, 255)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _stripes(rng: np.random.Generator, height: int, width: int, cycles: float) -> np.ndarray:
    """(H, W) float32 in [0, 1]: a sinusoid of random orientation with ``cycles`` periods across."""
    angle, phase = rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    along = x * math.cos(angle) + y * math.sin(angle)
    return 0.5 + 0.5 * np.sin(2 * math.pi * cycles * along / max(height, width) + phase)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: colour noise on a ``cells``-wide grid, upsampled smoothly."""
    grid = rng.random((max(2, cells * height // width), cells, 3)).astype(np.float32)
    noise = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = noise.min(axis=(0, 1)), noise.max(axis=(0, 1))
    return (noise - low) / (high - low + 1e-6)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: large colour blobs, fine noise, stripes and a faint checkerboard."""
    colour = 0.7 * _smooth_noise(rng, height, width, 6) + 0.3 * _smooth_noise(rng, height, width, 40)
    shade = 0.7 + 0.3 * _stripes(rng, height, width, rng.uniform(8, 20))
    cell = int(rng.integers(12, 32))
    y, x = np.mgrid[0:height, 0:width]
    checker = ((y // cell + x // cell) % 2).astype(np.float32)
    image = 255 * colour * shade[..., None] * (0.85 + 0.15 * checker[..., None])
    return image.clip(0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: stripes between two colours with spots of a third."""
    # Hues a third of a turn apart keep stripes and spots distinct.
    hue = rng.uniform(0, 180)
    weight = _stripes(rng, size, size, rng.uniform(2, 5))[..., None]
    image = weight * _colour(rng, hue) + (1 - weight) * _colour(rng, hue + 60)
    spot = tuple(float(v) for v in _colour(rng, hue + 120))
    for _ in range(int(rng.integers(3, 8))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(image, centre, max(1, int(size * rng.uniform(0.05, 0.12))), spot, -1)
    return image.astype(np.uint8)


def _bounce(position: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Fold an unconstrained path (T, 2) into [low, high] (2,) as if it bounced off the walls."""
    span = high - low
    folded = np.mod(position - low, 2 * span)
    return low + np.where(folded <= span, folded, 2 * span - folded)


def _camera(rng: np.random.Generator, cfg: SynthConfig, pan: np.ndarray, shake: float) -> np.ndarray:
    """(T, 2) top-left x, y of the crop window: a smooth pan within ``pan`` pixels, plus shake."""
    t = np.arange(cfg.num_frames)[:, None]
    speed = rng.uniform(0.004, 0.012, 2) * np.array([cfg.width, cfg.height])  # pixels per frame
    # Peak speed of A * (1 + sin(w t)) / 2 is A * w / 2.
    omega = 2 * speed / pan
    smooth = pan * (0.5 + 0.5 * np.sin(omega * t + rng.uniform(0, 2 * math.pi, 2)))
    jitter = shake * 0.5 * (
        np.sin(rng.uniform(0.6, 1.2, 2) * t + rng.uniform(0, 2 * math.pi, 2))
        + np.sin(rng.uniform(1.5, 2.5, 2) * t + rng.uniform(0, 2 * math.pi, 2))
    )
    return shake + smooth + jitter


def _lighting(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """(T, H, W, 3) float32 gains around 1: brightness and colour cast drifting slowly over the video
    and a light gradient whose direction turns, each of amplitude up to ``cfg.lighting``."""
    t = np.arange(cfg.num_frames, dtype=np.float32)[:, None]
    period = rng.uniform(0.5, 1.5) * cfg.num_frames  # about one swing per video
    phase = rng.uniform(0, 2 * math.pi, 3)
    brightness = cfg.lighting * np.sin(2 * math.pi * t / period + phase[0])  # (T, 1)
    cast = 0.5 * cfg.lighting * np.sin(2 * math.pi * t / period + phase[1] + rng.uniform(0, 2 * math.pi, 3))
    turn = phase[2] + rng.choice([-1, 1]) * 2 * math.pi * t[:, 0] / period  # gradient direction (T,)
    y, x = np.mgrid[0:cfg.height, 0:cfg.width].astype(np.float32)
    u, v = (x / cfg.width - 0.5), (y / cfg.height - 0.5)  # in [-0.5, 0.5]
    gradient = cfg.lighting * (np.cos(turn)[:, None, None] * u + np.sin(turn)[:, None, None] * v)  # (T, H, W)
    gain = (1 + brightness[:, :, None, None] + gradient[..., None]) * (1 + cast[:, None, None, :])
    return gain.clip(0.2, 2.0).astype(np.float32)


def _objects(rng: np.random.Generator, cfg: SynthConfig) -> list[_Object]:
    """Random objects whose paths are bent so each one crosses an earlier one mid-video."""
    count = int(rng.integers(min(2, cfg.num_objects), cfg.num_objects + 1))
    size = np.array([cfg.width, cfg.height], dtype=np.float64)
    # Centres stay inside the central 80% of the frame; the largest objects still poke out of it.
    low, high = 0.1 * size, 0.9 * size
    t = np.arange(cfg.num_frames, dtype=np.float64)[:, None]
    short = min(cfg.height, cfg.width)
    objects: list[_Object] = []
    for index in range(count):
        radius = rng.uniform(0.12, 0.2) * short
        speed = rng.uniform(0.008, 0.02) * cfg.width  # pixels per frame
        wobble = rng.uniform(0, 0.04, 2) * size
        omega, phase = rng.uniform(0.05, 0.15, 2), rng.uniform(0, 2 * math.pi, 2)
        if index == 0:
            when, meet = 0, rng.uniform(low, high)
            heading = rng.uniform(0, 2 * math.pi)
        else:
            # Meet an earlier object at frame `when`: centres at most 0.1 radii apart, so the
            # front one covers the other's centre whatever the shapes (star core, cross arms).
            partner = objects[int(rng.integers(index))]
            when = int(rng.integers(cfg.num_frames // 4, 3 * cfg.num_frames // 4 + 1))
            direction = rng.uniform(0, 2 * math.pi)
            offset = rng.uniform(0, 0.1 * min(radius, partner.radius))
            meet = partner.centre[when] + offset * np.array([math.cos(direction), math.sin(direction)])
            meet = np.clip(meet, low, high)
            # Leave at 60 degrees or more from the partner's own direction there, so the two
            # cross rather than travel together.
            step = partner.centre[min(when + 1, cfg.num_frames - 1)] - partner.centre[max(when - 1, 0)]
            heading = math.atan2(step[1], step[0]) + rng.uniform(1, 5) * math.pi / 3
        drift = speed * np.array([math.cos(heading), math.sin(heading)]) * t
        drift += wobble * np.sin(omega * t + phase)  # (T, 2), before bouncing
        # Bouncing leaves positions inside [low, high] unchanged, so the path passes `meet` at `when`.
        centre = _bounce(meet + drift - drift[when], low, high)

        spin = rng.uniform(0.01, 0.05) * rng.choice([-1, 1])
        angle = rng.uniform(0, 2 * math.pi) + spin * t[:, 0]
        scale = 1 + 0.1 * np.sin(rng.uniform(0.05, 0.2) * t[:, 0] + rng.uniform(0, 2 * math.pi))
        class_name = CLASSES[int(rng.integers(len(CLASSES)))]
        # Covers the unit shape with a margin; odd, so its centre is a pixel.
        texture = _texture(rng, 2 * math.ceil(radius) + 5)
        objects.append(_Object(index + 1, class_name, texture, radius, centre, angle, scale))
    return objects


def _render_video(
    rng: np.random.Generator, cfg: SynthConfig
) -> tuple[list[np.ndarray], list[np.ndarray], list[_Object], np.ndarray]:
    """Frames (T of (H, W, 3) uint8), label maps (T of (H, W) uint8), objects, keypoints (T, N, 5, 3)."""
    pan = 0.5 * np.array([cfg.width, cfg.height], dtype=np.float64)
    shake = 0.005 * min(cfg.height, cfg.width)
    world = _background(rng, int(cfg.height + pan[1] + 2 * shake) + 2, int(cfg.width + pan[0] + 2 * shake) + 2)
    camera = _camera(rng, cfg, pan, shake)
    objects = _objects(rng, cfg)
    depth = rng.permutation(len(objects))  # drawing order, back to front
    size = (cfg.width, cfg.height)
    frames: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    keypoints = np.zeros((cfg.num_frames, len(objects), NUM_KEYPOINTS, 3))
    # Drawn last, so that any lighting shows the same scenes and motion as constant light.
    light = _lighting(rng, cfg) if cfg.lighting else None
    for t in range(cfg.num_frames):
        # Translating by a sub-pixel offset (bilinear) keeps the pan smooth instead of jumping.
        shift = np.array([[1, 0, -camera[t, 0]], [0, 1, -camera[t, 1]]])
        frame = cv2.warpAffine(world, shift, size, flags=cv2.INTER_LINEAR)
        label = np.zeros((cfg.height, cfg.width), np.uint8)
        for index in depth:
            obj = objects[index]
            unit_to_frame = obj.affine(t)
            polygon = _SHAPES[obj.class_name] @ unit_to_frame[:, :2].T + unit_to_frame[:, 2]
            # Work inside the polygon's bounding box only: objects cover a small part of the frame.
            x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
            x1, y1 = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 1, size)
            if x1 <= x0 or y1 <= y0:
                continue
            to_box = obj.texture_affine(t) - [[0, 0, x0], [0, 0, y0]]
            warped = cv2.warpAffine(obj.texture, to_box, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            # shift=4: vertices in 1/16 pixels, so the outline matches the texture sub-pixel.
            vertices = np.round((polygon - [x0, y0]) * 16).astype(np.int32)
            cv2.fillPoly(mask, [vertices], 1, cv2.LINE_8, shift=4)
            inside = mask.astype(bool)
            frame[y0:y1, x0:x1][inside] = warped[inside]
            label[y0:y1, x0:x1][inside] = obj.id
        if light is not None:
            frame = (frame * light[t]).clip(0, 255).astype(np.uint8)
        for index, obj in enumerate(objects):
            unit_to_frame = obj.affine(t)
            points = _KEYPOINTS[obj.class_name] @ unit_to_frame[:, :2].T + unit_to_frame[:, 2]
            keypoints[t, index, :, :2] = np.round(points, 2)  # as stored in the JSON
        keypoints[t, :, :, 2] = _visibility(label, keypoints[t, :, :, :2], [o.id for o in objects])
        frames.append(frame)
        labels.append(label)
    return frames, labels, objects, keypoints


def _visibility(label: np.ndarray, points: np.ndarray, ids: list[int]) -> np.ndarray:
    """(N, K) 1.0 where keypoint (N, K, 2) x, y falls on a pixel of its object's label, else 0.0."""
    cols, rows = np.floor(points[..., 0] + 0.5).astype(int), np.floor(points[..., 1] + 0.5).astype(int)
    inside = (rows >= 0) & (rows < label.shape[0]) & (cols >= 0) & (cols < label.shape[1])
    hit = label[rows.clip(0, label.shape[0] - 1), cols.clip(0, label.shape[1] - 1)]
    return (inside & (hit == np.array(ids)[:, None])).astype(np.float64)


def _annotation(
    name: str, cfg: SynthConfig, labels: list[np.ndarray], objects: list[_Object], keypoints: np.ndarray
) -> dict:
    """The ``annotations/<seq>.json`` document (schema in the module docstring)."""
    frames = []
    for t, label in enumerate(labels):
        boxes = []
        for obj in objects:
            hit = label == obj.id
            rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
            if rows.size:
                box = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]
                boxes.append({"id": obj.id, "class_id": CLASSES.index(obj.class_name), "box": box})
        points = {
            str(obj.id): [[float(x), float(y), int(v)] for x, y, v in keypoints[t, index]]
            for index, obj in enumerate(objects)
        }
        frames.append({"index": t, "boxes": boxes, "keypoints": points})
    return {
        "sequence": name,
        "num_frames": cfg.num_frames,
        "fps": cfg.fps,
        "height": cfg.height,
        "width": cfg.width,
        "objects": [
            {"id": o.id, "class": o.class_name, "class_id": CLASSES.index(o.class_name)} for o in objects
        ],
        "frames": frames,
    }


def generate(out: Path, cfg: SynthConfig, *, progress: bool = True) -> SynthResult:
    """Write ``cfg.num_videos`` synthetic videos with masks, boxes and keypoints under ``out``.

    Deterministic: video ``i`` depends only on ``cfg`` and ``i``. Every file is written atomically
    and ``synth.json`` last, so rerunning after an interruption simply rewrites everything.
    """
    out = Path(out)
    (out / "synth.json").unlink(missing_ok=True)  # its presence must keep meaning "complete"
    davis = out / "davis"
    for folder in (out / "videos", out / "annotations", davis / "ImageSets" / "2017"):
        folder.mkdir(parents=True, exist_ok=True)
    palette = davis_palette()
    names = tuple(f"synth_{i:03d}" for i in range(cfg.num_videos))
    videos = tuple(out / "videos" / f"{name}.mp4" for name in names)
    for i in tqdm(range(cfg.num_videos), desc="synth", unit="video", disable=not progress):
        rng = np.random.default_rng([cfg.seed, i])
        frames, labels, objects, keypoints = _render_video(rng, cfg)
        write_video(videos[i], frames, cfg.fps, keyint=cfg.keyint)
        write_frame_folder(davis / "JPEGImages" / "480p" / names[i], frames, quality=cfg.jpeg_quality)
        write_frame_folder(davis / "Annotations" / "480p" / names[i], labels, ext=".png", palette=palette)
        annotation = _annotation(names[i], cfg, labels, objects, keypoints)
        atomic_write_text(out / "annotations" / f"{names[i]}.json", json.dumps(annotation) + "\n")
    atomic_write_text(davis / "ImageSets" / "2017" / "val.txt", "".join(f"{name}\n" for name in names))
    record = {"config": dataclasses.asdict(cfg), "sequences": list(names)}
    atomic_write_text(out / "synth.json", json.dumps(record, indent=1) + "\n")
    return SynthResult(root=out, sequences=names, videos=videos)
