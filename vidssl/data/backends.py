"""Video decoding backends behind one small protocol.

Every backend opens one video (a file, or a folder of frame images) and returns frames by index.
Random access is frame-accurate: ``get_frames([i])`` equals frame ``i`` of a full sequential decode
(frames counted in presentation order from 0). Backends are imported lazily, so a missing decoder
only matters when it is asked for.

    reader = open_video("clip.mp4", backend="auto", size=256)
    frames = reader.get_frames([3, 40])        # (2, H, W, 3) uint8 RGB, short side 256

``size`` resizes on decode where the backend can (decord scales inside its decoder, PyAV in the
colour conversion, JPEG folders through the JPEG draft mode); OpenCV resizes after decoding.

Frames come out as the video is meant to be shown: a rotation in the file's display matrix (phone
videos) is applied (PyAV rotates itself, OpenCV's own auto-rotation is kept on), so masks and boxes
drawn on the displayed video line up. decord ignores display matrices: it refuses a rotated file
with a message naming the backends that handle it.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

Size = int | tuple[int, int] | None
"""Output size: None keeps the video's size, an int sets the short side, (H, W) sets both."""


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded; the message names the file and the cause."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class VideoReader(Protocol):
    """What every backend provides."""

    path: Path
    num_frames: int
    fps: float
    height: int  # output height (after resize)
    width: int  # output width (after resize)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as (T, H, W, 3) uint8 RGB."""
        ...

    def close(self) -> None: ...


def output_size(height: int, width: int, size: Size) -> tuple[int, int]:
    """(H, W) after resizing a ``height`` x ``width`` frame to ``size`` (aspect kept for an int)."""
    if size is None:
        return height, width
    if isinstance(size, int):
        if height <= width:
            return size, max(1, round(width * size / height))
        return max(1, round(height * size / width)), size
    return int(size[0]), int(size[1])


def _check_indices(path: Path, indices: Sequence[int], num_frames: int) -> list[int]:
    out = [int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < num_frames]
    if bad:
        raise VideoReadError(path, f"frame index {bad[0]} out of range for {num_frames} frames")
    return out


def _gather(path: Path, indices: list[int], decoded: dict[int, np.ndarray]) -> np.ndarray:
    missing = [i for i in indices if i not in decoded]
    if missing:
        raise VideoReadError(path, f"frame {missing[0]} could not be decoded (truncated or corrupt file?)")
    return np.stack([decoded[i] for i in indices])


# --------------------------------------------------------------------------------------------
# PyAV


@functools.lru_cache(maxsize=4096)
def _pyav_frame_table(path: str, mtime_ns: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Presentation timestamps of every frame (sorted) and the positions of keyframes.

    Demuxing reads packets without decoding them, so this is cheap; it is cached per process
    because the table is needed for every random access into the file.
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        pts, keys = [], []
        for packet in container.demux(stream):
            if packet.pts is None:  # flush packets carry no frame
                continue
            pts.append(packet.pts)
            keys.append(packet.is_keyframe)
    order = sorted(range(len(pts)), key=pts.__getitem__)
    pts_sorted = tuple(pts[i] for i in order)
    keyframes = tuple(pos for pos, i in enumerate(order) if keys[i])
    return pts_sorted, keyframes


def display_rotation(path: str | Path) -> int:
    """The counter-clockwise rotation (0, 90, 180, 270) a video's display matrix asks for; 0 when
    there is none or PyAV cannot tell."""
    try:
        import av

        with av.open(str(path)) as container:
            frame = next(container.decode(container.streams.video[0]))
            return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except Exception:  # noqa: BLE001 - no PyAV, no video stream, undecodable: the reader reports those
        return 0


def _rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    """``frame`` (H, W, C) turned ``degrees`` counter-clockwise, as a display matrix means it."""
    return np.ascontiguousarray(np.rot90(frame, (degrees // 90) % 4)) if degrees else frame


class PyAVReader:
    """PyAV (FFmpeg) decoding with keyframe-aware seeking.

    Frame ``i`` is identified by the i-th smallest packet timestamp. To reach it the reader keeps
    decoding forward when ``i`` lies in the GOP it is already in (or just ahead); otherwise it seeks
    to the keyframe at or before ``i`` and decodes forward until the timestamp matches.
    """

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1) -> None:
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError) as err:
            raise VideoReadError(self.path, f"cannot open as video ({err})") from err
        self._stream.thread_type = "AUTO" if threads != 1 else "SLICE"
        self._stream.thread_count = threads
        self._pts, self._keyframes = _pyav_frame_table(str(self.path), os.stat(self.path).st_mtime_ns)
        self.num_frames = len(self._pts)
        if self.num_frames == 0:
            raise VideoReadError(self.path, "no video frames")
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.rotation = display_rotation(self.path)
        turned = self.rotation in (90, 270)
        shown = (self._stream.width, self._stream.height) if turned else (self._stream.height, self._stream.width)
        self.height, self.width = output_size(*shown, size)
        self._decode_hw = (self.width, self.height) if turned else (self.height, self.width)  # before rotating
        self._resize = self._decode_hw != (self._stream.height, self._stream.width)
        self._frames = None  # decode iterator positioned after frame self._position
        self._position = -1

    def _to_array(self, frame: object) -> np.ndarray:
        if self._resize:
            height, width = self._decode_hw
            array = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
        else:
            array = frame.to_ndarray(format="rgb24")
        return _rotate(array, self.rotation)

    def _keyframe_before(self, index: int) -> int:
        return self._keyframes[max(0, bisect.bisect_right(self._keyframes, index) - 1)] if self._keyframes else 0

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        import av

        wanted = _check_indices(self.path, indices, self.num_frames)
        decoded: dict[int, np.ndarray] = {}
        try:
            for target in sorted(set(wanted)):
                # Decoding forward is cheaper than seeking while the target is in the current GOP.
                if self._frames is None or not self._keyframe_before(target) <= self._position < target:
                    self._container.seek(self._pts[target], backward=True, any_frame=False, stream=self._stream)
                    self._frames = self._container.decode(self._stream)
                    self._position = -1
                for frame in self._frames:
                    if frame.pts is None:
                        continue
                    self._position = bisect.bisect_left(self._pts, frame.pts)
                    if frame.pts >= self._pts[target]:
                        decoded[target] = self._to_array(frame)
                        break
                else:
                    self._frames = None
        except av.FFmpegError as err:
            self._frames = None
            raise VideoReadError(self.path, f"decoding failed ({err})") from err
        return _gather(self.path, wanted, decoded)

    def close(self) -> None:
        self._container.close()


# --------------------------------------------------------------------------------------------
# decord


class DecordReader:
    """decord, which builds a frame index on open and seeks to keyframes itself."""

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1) -> None:
        import decord

        self.path = Path(path)
        try:
            probe = decord.VideoReader(str(self.path), num_threads=1) if size is not None else None
            h0, w0 = probe[0].shape[:2] if probe is not None else (None, None)
            if probe is not None:
                del probe
            if size is None:
                self._vr = decord.VideoReader(str(self.path), num_threads=threads)
            else:
                oh, ow = output_size(h0, w0, size)
                self._vr = decord.VideoReader(str(self.path), num_threads=threads, width=ow, height=oh)
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoReadError(self.path, f"cannot open as video ({err})") from err
        rotation = display_rotation(self.path)
        if rotation:
            raise VideoReadError(self.path, f"its display matrix rotates it by {rotation} degrees, which decord "
                                            "ignores; use backend=pyav or backend=opencv")
        self.num_frames = len(self._vr)
        if self.num_frames == 0:
            raise VideoReadError(self.path, "no video frames")
        self.fps = float(self._vr.get_avg_fps())
        self.height, self.width = self._vr[0].shape[:2]
        self._vr.seek(0)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        import decord

        wanted = _check_indices(self.path, indices, self.num_frames)
        try:
            return self._vr.get_batch(wanted).asnumpy()
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoReadError(self.path, f"decoding failed ({err})") from err

    def close(self) -> None:
        del self._vr


# --------------------------------------------------------------------------------------------
# OpenCV


class OpenCVReader:
    """OpenCV's VideoCapture; seeks with CAP_PROP_POS_FRAMES, reads forward for short jumps."""

    SEEK_DISTANCE = 16  # jumps shorter than this are cheaper to decode through than to seek

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1) -> None:
        import cv2

        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
        if not self._cap.isOpened():
            raise VideoReadError(self.path, "cannot open as video (OpenCV)")
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # display matrix applied, as the other backends do
        self.num_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if self.num_frames <= 0:
            raise VideoReadError(self.path, "no video frames")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        h0 = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        w0 = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height, self.width = output_size(h0, w0, size)
        self._resize = (self.height, self.width) != (h0, w0)
        self._next = 0  # index of the frame the next read() returns

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        import cv2

        wanted = _check_indices(self.path, indices, self.num_frames)
        decoded: dict[int, np.ndarray] = {}
        for target in sorted(set(wanted)):
            if target < self._next or target - self._next > self.SEEK_DISTANCE:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                self._next = target
            while self._next < target:
                if not self._cap.grab():
                    break
                self._next += 1
            ok, bgr = self._cap.read()
            self._next += 1
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if self._resize:
                rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
            decoded[target] = rgb
        return _gather(self.path, wanted, decoded)

    def close(self) -> None:
        self._cap.release()


# --------------------------------------------------------------------------------------------
# Frame folders (DAVIS / JHMDB layout: one image per frame, sorted by name)


# What opening a bad image raises: PIL's UnidentifiedImageError (an OSError), and, once ultralytics
# is imported (it patches Image.open to try optional HEIF support), ImportError or ValueError.
IMAGE_ERRORS = (OSError, ValueError, ImportError)


def list_frame_files(folder: Path) -> list[Path]:
    """Image files of a frame folder in frame order (sorted by name)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class FrameFolderReader:
    """A folder of images, one per frame; JPEGs are decoded at reduced size when that suffices."""

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1, fps: float = 30.0) -> None:
        from PIL import Image

        self.path = Path(path)
        if not self.path.is_dir():
            raise VideoReadError(self.path, "not a frame folder")
        self._files = list_frame_files(self.path)
        self.num_frames = len(self._files)
        if self.num_frames == 0:
            raise VideoReadError(self.path, "frame folder holds no images")
        self.fps = fps
        try:
            with Image.open(self._files[0]) as im:
                w0, h0 = im.size
        except IMAGE_ERRORS as err:
            raise VideoReadError(self._files[0], f"unreadable image ({err})") from err
        self.height, self.width = output_size(h0, w0, size)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _check_indices(self.path, indices, self.num_frames)
        decoded = {i: _load_image(self._files[i], self.height, self.width) for i in set(wanted)}
        return np.stack([decoded[i] for i in wanted])

    def close(self) -> None:
        pass


def _load_image(file: Path, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB; JPEGs are decoded at reduced size when that suffices."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            if (im.height, im.width) != (height, width):
                im.draft("RGB", (width, height))  # JPEG DCT scaling: decode smaller
                im = im.convert("RGB").resize((width, height), Image.BILINEAR, reducing_gap=2.0)
            return np.asarray(im.convert("RGB"))
    except IMAGE_ERRORS as err:
        raise VideoReadError(file, f"unreadable image ({err})") from err


class ImageReader:
    """One image file as a one-frame video: image folders (``data_kind=images``) train through
    the same loader, every sampler reading frame 0."""

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1, fps: float = 30.0) -> None:
        from PIL import Image

        self.path = Path(path)
        self.num_frames, self.fps = 1, fps
        try:
            with Image.open(self.path) as im:
                w0, h0 = im.size
        except IMAGE_ERRORS as err:
            raise VideoReadError(self.path, f"unreadable image ({err})") from err
        self.height, self.width = output_size(h0, w0, size)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _check_indices(self.path, indices, 1)
        return np.stack([_load_image(self.path, self.height, self.width)] * len(wanted))

    def close(self) -> None:
        pass


BACKENDS: dict[str, type] = {
    "decord": DecordReader,
    "pyav": PyAVReader,
    "opencv": OpenCVReader,
    "frames": FrameFolderReader,
    "image": ImageReader,
}
_MODULES = {"decord": "decord", "pyav": "av", "opencv": "cv2", "frames": "PIL", "image": "PIL"}
# Fastest first, as measured by tools/bench_loader.py (see BENCHMARKS.md).
AUTO_ORDER = ("pyav", "decord", "opencv")


def available_backends() -> list[str]:
    """Names of the backends whose decoder library is installed."""
    return [name for name, module in _MODULES.items() if importlib.util.find_spec(module) is not None]


def resolve_backend(path: str | Path, backend: str = "auto") -> str:
    """The backend that will open ``path``: ``auto`` picks frame folders for directories, the
    image reader for image files, and the fastest installed decoder for video files."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend '{backend}'; choose from auto, {', '.join(BACKENDS)}")
        if backend not in available_backends():
            raise ValueError(f"backend '{backend}' needs the '{_MODULES[backend]}' package, which is not installed")
        return backend
    if Path(path).is_dir():
        return "frames"
    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        return "image"
    installed = available_backends()
    for name in AUTO_ORDER:
        if name in installed:
            return name
    raise ValueError("no video decoder installed: install av, decord or opencv-python")


def open_video(path: str | Path, *, backend: str = "auto", size: Size = None, threads: int = 1) -> VideoReader:
    """Open ``path`` (a video file or a frame folder) with ``backend``.

    Raises:
        VideoReadError: the file cannot be opened or holds no frames (the message names it).
        ValueError: an unknown or uninstalled backend.
    """
    if not Path(path).exists():
        raise VideoReadError(path, "no such file or folder")
    return BACKENDS[resolve_backend(path, backend)](path, size=size, threads=threads)
