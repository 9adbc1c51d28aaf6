"""Video decoding backends behind one small protocol.

Every backend opens one video (a file, or a folder of frame images) and returns frames by index.
Random access is frame-accurate: ``get_frames([i])`` equals frame ``i`` of a full sequential decode
(frames counted in presentation order from 0). Backends are imported lazily, so a missing decoder
only matters when it is asked for.

A backend is one class (a :class:`Backend`) and one line in :data:`BACKENDS`. The class declares
everything else: the package it needs, the files it reads, its place in ``auto``'s order and how
it probes a file (frames, fps, size) for the index. The index (:mod:`vidssl.data.index`), ``auto``
(:func:`resolve_backend`) and the ``backend=`` help (:func:`backend_choices`) follow from it.

    reader = open_video("clip.mp4", backend="auto", size=256)
    frames = reader.get_frames([3, 40])        # (2, H, W, 3) uint8 RGB, short side 256

``size`` resizes on decode where the backend can (decord scales inside its decoder, PyAV in the
colour conversion, TorchCodec in FFmpeg's filter graph, JPEG folders through the JPEG draft mode);
OpenCV resizes after decoding.

``device`` picks where a backend decodes: every backend decodes on the CPU; TorchCodec also decodes
on a CUDA GPU (NVDEC) with ``device="cuda"``. Frames still come back as host arrays from
``get_frames``; TorchCodec's ``get_tensor`` keeps them on the decoding device.

Frames come out as the video is meant to be shown: a rotation in the file's display matrix (phone
videos) is applied (PyAV and TorchCodec rotate themselves, OpenCV's own auto-rotation is kept on), so
masks and boxes drawn on the displayed video line up. decord ignores display matrices: it refuses a
rotated file with a message naming the backends that handle it.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

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
    """What every open video provides (a :class:`Backend` instance)."""

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


def check_indices(path: Path, indices: Sequence[int], num_frames: int) -> list[int]:
    """``indices`` as ints, or VideoReadError naming the first one outside ``[0, num_frames)``."""
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


class Probe(NamedTuple):
    """What the index stores about a video: its frame count, rate and shown size (before any resize)."""

    num_frames: int
    fps: float
    height: int
    width: int


class Backend:
    """One way of reading videos: subclass it, set the class attributes, add one line to :data:`BACKENDS`.

    Attributes:
        module: the package it imports; the backend is available when it is installed.
        package: what to install for ``module`` (pip's name), when that differs.
        extensions: the file suffixes it reads (lower case, with the dot).
        folders: it reads a folder as one video (frame folders).
        priority: its place in ``auto``'s order among the backends that read a path, lower first
            (fastest first); None: used only when asked for by name.
        devices: the device types it decodes on (``open_video(device=...)``); a backend that takes
            more than ``cpu`` accepts a ``device`` keyword.

    An instance is an open video (:class:`VideoReader`): ``num_frames``, ``fps``, ``height`` /
    ``width`` after resizing to ``size``, ``get_frames``, ``close``. It raises VideoReadError,
    naming the file, for a file it cannot open.
    """

    module: ClassVar[str]
    package: ClassVar[str] = ""
    extensions: ClassVar[tuple[str, ...]] = ()
    folders: ClassVar[bool] = False
    priority: ClassVar[int | None] = None
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    path: Path
    num_frames: int
    fps: float
    height: int
    width: int

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1) -> None:
        raise NotImplementedError

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as (T, H, W, 3) uint8 RGB."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    @classmethod
    def missing(cls) -> str | None:
        """Why this backend cannot run on this machine, worded to follow "backend 'NAME' " (None: it
        can). This default checks that ``module`` is installed; a backend that also needs something
        outside Python (system libraries) overrides it."""
        if not _installed(cls.module):
            return f"needs the '{cls.package or cls.module}' package, which is not installed"
        return None

    @classmethod
    def probe(cls, path: Path) -> Probe:
        """Frames, fps and shown size of ``path``, after checking that its first frame decodes.
        This default opens the video and decodes frame 0; override it where a header says more
        cheaply (or more truly, as PyAV does for damaged files).

        Raises:
            VideoReadError: naming the file and what is wrong with it.
        """
        reader = cls(path)
        try:
            reader.get_frames([0])
            return Probe(reader.num_frames, reader.fps, reader.height, reader.width)
        finally:
            reader.close()


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


class PyAVReader(Backend):
    """PyAV (FFmpeg) decoding with keyframe-aware seeking.

    Frame ``i`` is identified by the i-th smallest packet timestamp. To reach it the reader keeps
    decoding forward when ``i`` lies in the GOP it is already in (or just ahead); otherwise it seeks
    to the keyframe at or before ``i`` and decodes forward until the timestamp matches.
    """

    module = "av"
    extensions = VIDEO_EXTENSIONS
    priority = 10  # auto's first: the fastest in tools/bench_loader.py (BENCHMARKS.md)

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

        wanted = check_indices(self.path, indices, self.num_frames)
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

    @classmethod
    def probe(cls, path: Path) -> Probe:
        """From the container's header, without building the frame table; a file shorter than its
        index promises (a truncated mp4 with its index at the front) is counted by the frames that
        really decode."""
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise VideoReadError(path, "no video stream")
                stream = container.streams.video[0]
                promised = stream.frames
                num_frames = promised or sum(1 for p in container.demux(stream) if p.pts is not None)
                rate = stream.average_rate or stream.guessed_rate
                if num_frames:
                    container.seek(0)
                    next(container.decode(stream))  # the first frame must decode
                if promised and Path(path).stat().st_size < _bytes_promised(stream):
                    num_frames = _decodable_frames(container, stream)  # truncated: count what is there
        except (av.FFmpegError, StopIteration, UnicodeDecodeError) as err:
            raise VideoReadError(path, f"unreadable ({type(err).__name__}: {err})".replace("\n", " ")) from err
        if not num_frames:
            raise VideoReadError(path, "no frames")
        height, width = stream.height, stream.width
        if display_rotation(path) in (90, 270):  # the size it is shown at, which every backend returns
            height, width = width, height
        return Probe(int(num_frames), float(rate or 0.0), height, width)


def _bytes_promised(stream: object) -> int:
    """Where the last packet's data ends according to the container's index (0 if unknown): a file
    shorter than this was cut off."""
    end = 0
    with contextlib.suppress(AttributeError, TypeError):  # PyAV < 17 has no index_entries: no check
        entries = stream.index_entries  # the demuxer's sample table (mp4: from the moov box); nothing is read
        for i in range(len(entries)):
            if entries[i].pos >= 0:
                end = max(end, entries[i].pos + entries[i].size)
    return end


def _decodable_frames(container: object, stream: object) -> int:
    """Frames of a damaged file that decode (read to the first error): its honest length."""
    import av

    container.seek(0)
    count = 0
    with contextlib.suppress(av.FFmpegError):
        for _ in container.decode(stream):
            count += 1
    return count


# --------------------------------------------------------------------------------------------
# decord


class DecordReader(Backend):
    """decord, which builds a frame index on open and seeks to keyframes itself."""

    module = "decord"
    extensions = VIDEO_EXTENSIONS
    priority = 20

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

        wanted = check_indices(self.path, indices, self.num_frames)
        try:
            return self._vr.get_batch(wanted).asnumpy()
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoReadError(self.path, f"decoding failed ({err})") from err

    def close(self) -> None:
        del self._vr


# --------------------------------------------------------------------------------------------
# TorchCodec


FFMPEG_HINT = ("install FFmpeg's shared libraries, major version 4 to 9 (Debian/Ubuntu: apt-get install ffmpeg; "
               "conda: conda install ffmpeg)")


def _first_line(err: BaseException) -> str:
    """The first line of ``err``'s text, without the C++ source location TorchCodec puts in front."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return re.sub(r"^[\w:]+, \S+\.(?:cpp|cu|h):\d+, ", "", line)


@functools.cache
def _torchcodec_problem() -> str | None:
    """Why TorchCodec cannot decode video here (None: it can). Its wheel carries no FFmpeg: it loads
    the system's libavcodec & co. when imported, and without them imports fine but cannot decode."""
    try:
        import torchcodec
    except Exception as err:  # noqa: BLE001 - e.g. built for another torch, or a missing CUDA runtime
        return f"cannot import torchcodec ({type(err).__name__}: {_first_line(err)})"
    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:  # None: it found no FFmpeg it can load
        return f"needs FFmpeg's shared libraries, which torchcodec did not find: {FFMPEG_HINT}"
    return None


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames resized to ``size`` (H, W) on their own device: bilinear with
    antialiasing, as torchvision's ``Resize`` and TorchCodec's decoder-side resize."""
    import torch

    nchw = frames.permute(0, 3, 1, 2).float()
    out = torch.nn.functional.interpolate(nchw, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class TorchCodecReader(Backend):
    """TorchCodec (PyTorch's decoder on FFmpeg) in exact seek mode: opening scans the file's packets,
    so index ``i`` is the i-th frame in presentation order, whatever the GOP structure. Decodes on the
    CPU, or on a CUDA GPU (NVDEC) with ``device="cuda"``; ``size`` resizes inside FFmpeg's filter
    graph on the CPU and after decoding on CUDA (bilinear with antialiasing both, as torchvision's
    ``Resize``); rotation from the display matrix is applied by TorchCodec.
    """

    module = "torchcodec"
    extensions = VIDEO_EXTENSIONS
    # Between PyAV and decord: on a shared 2-core CPU it is about as fast as PyAV, not faster, and
    # faster than decord (issue 28, TorchCodec 0.17 on FFmpeg 5.1; tools/bench_loader.py, 2 workers,
    # synthetic 240x320, two runs: pyav 56.4 / 46.3, torchcodec 55.6 / 39.3, decord 13.7 / 15.1 pairs/s;
    # the same 60 random pairs of 5 real 854x480 clips at size=256, one process: pyav 5.1, torchcodec
    # 5.1-5.3, decord 3.1-3.2 pairs/s). So auto keeps PyAV first.
    priority = 15
    devices = ("cpu", "cuda")

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1, device: str = "cpu") -> None:
        from torchcodec.decoders import VideoDecoder

        self.path = Path(path)
        self.device = device
        on_cpu = _device_type(device) == "cpu"
        self._resize_after: tuple[int, int] | None = None  # (H, W) to resize to after decoding (CUDA)
        try:
            transforms = None
            if size is not None:
                # The shown size, from the header alone (no scan): the resize target depends on it.
                shown = VideoDecoder(str(self.path), seek_mode="approximate").metadata
                out = output_size(shown.height, shown.width, size)
                if out != (shown.height, shown.width):
                    from torchcodec.transforms import Resize

                    # TorchCodec's decoder transforms run on the CPU only; on CUDA the same resize
                    # (bilinear, antialiased) runs on the decoded frames.
                    transforms = [Resize(size=out)] if on_cpu else None
                    self._resize_after = None if on_cpu else out
            self._decoder = VideoDecoder(str(self.path), device=device, seek_mode="exact", dimension_order="NHWC",
                                         num_ffmpeg_threads=threads, transforms=transforms)
            meta = self._decoder.metadata
        except (RuntimeError, ValueError, OSError) as err:
            raise VideoReadError(self.path, f"cannot open as video ({_first_line(err)})") from err
        self.num_frames = int(meta.num_frames or 0)
        if self.num_frames == 0:
            raise VideoReadError(self.path, "no video frames")
        self.fps = float(meta.average_fps or 0.0)
        self.height, self.width = out if transforms or self._resize_after else (meta.height, meta.width)

    def get_tensor(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices`` as a (T, H, W, 3) uint8 RGB tensor on the decoding device."""
        wanted = check_indices(self.path, indices, self.num_frames)
        try:
            frames = self._decoder.get_frames_at(indices=wanted).data
        except (RuntimeError, ValueError, IndexError) as err:
            raise VideoReadError(self.path, f"decoding failed ({_first_line(err)})") from err
        return resize_frames(frames, self._resize_after) if self._resize_after else frames

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        return self.get_tensor(indices).cpu().numpy()

    def close(self) -> None:
        self._decoder = None

    @classmethod
    def missing(cls) -> str | None:
        """Not installed, or installed without the FFmpeg libraries it loads (the message says which)."""
        return super().missing() or _torchcodec_problem()


# --------------------------------------------------------------------------------------------
# OpenCV


class OpenCVReader(Backend):
    """OpenCV's VideoCapture; seeks with CAP_PROP_POS_FRAMES, reads forward for short jumps."""

    module = "cv2"
    package = "opencv-python"
    extensions = VIDEO_EXTENSIONS
    priority = 30

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

        wanted = check_indices(self.path, indices, self.num_frames)
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
FRAME_FOLDER_FPS = 30.0  # frame folders and images carry no rate; DAVIS and JHMDB are 24 / 30 fps


def list_frame_files(folder: Path) -> list[Path]:
    """Image files of a frame folder in frame order (sorted by name)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _image_size(file: Path) -> tuple[int, int]:
    """(height, width) from an image's header (nothing decoded)."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            return im.height, im.width
    except IMAGE_ERRORS as err:
        raise VideoReadError(file, f"unreadable image ({err})") from err


class FrameFolderReader(Backend):
    """A folder of images, one per frame; JPEGs are decoded at reduced size when that suffices."""

    module = "PIL"
    package = "pillow"
    folders = True
    priority = 40

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1,
                 fps: float = FRAME_FOLDER_FPS) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise VideoReadError(self.path, "not a frame folder")
        self._files = list_frame_files(self.path)
        self.num_frames = len(self._files)
        if self.num_frames == 0:
            raise VideoReadError(self.path, "frame folder holds no images")
        self.fps = fps
        self.height, self.width = output_size(*_image_size(self._files[0]), size)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = check_indices(self.path, indices, self.num_frames)
        decoded = {i: _load_image(self._files[i], self.height, self.width) for i in set(wanted)}
        return np.stack([decoded[i] for i in wanted])

    @classmethod
    def probe(cls, path: Path) -> Probe:
        """The image count and the first image's header (the others are not opened)."""
        files = list_frame_files(Path(path))
        if not files:
            raise VideoReadError(path, "no images")
        return Probe(len(files), FRAME_FOLDER_FPS, *_image_size(files[0]))


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


class ImageReader(Backend):
    """One image file as a one-frame video: image folders (``data_kind=images``) train through
    the same loader, every sampler reading frame 0. In a video folder images are the frames of
    frame folders instead (:func:`vidssl.data.index.find_videos`)."""

    module = "PIL"
    package = "pillow"
    extensions = IMAGE_EXTENSIONS
    priority = 50

    def __init__(self, path: str | Path, *, size: Size = None, threads: int = 1,
                 fps: float = FRAME_FOLDER_FPS) -> None:
        self.path = Path(path)
        self.num_frames, self.fps = 1, fps
        self.height, self.width = output_size(*_image_size(self.path), size)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = check_indices(self.path, indices, 1)
        return np.stack([_load_image(self.path, self.height, self.width)] * len(wanted))

    @classmethod
    def probe(cls, path: Path) -> Probe:
        """The image's header (nothing decoded)."""
        return Probe(1, FRAME_FOLDER_FPS, *_image_size(Path(path)))


BACKENDS: dict[str, type[Backend]] = {
    "pyav": PyAVReader,
    "decord": DecordReader,
    "torchcodec": TorchCodecReader,
    "opencv": OpenCVReader,
    "frames": FrameFolderReader,
    "image": ImageReader,
}
"""Every backend by name: a new backend is one :class:`Backend` subclass and one line here."""


@functools.cache
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _install_hint(names: Sequence[str]) -> str:
    packages = dict.fromkeys(BACKENDS[n].package or BACKENDS[n].module for n in names)
    return " or ".join(packages)


def _device_type(device: str) -> str:
    return str(device).split(":")[0]


def available_backends() -> list[str]:
    """Names of the backends that can run here (decoder library installed, and whatever else it
    needs: :meth:`Backend.missing`)."""
    return [name for name, backend in BACKENDS.items() if backend.missing() is None]


def backend_choices() -> str:
    """``auto | pyav | ...``: the values of a ``backend=`` key, in ``auto``'s order (by ``priority``)."""
    order = sorted(BACKENDS, key=lambda n: (BACKENDS[n].priority is None, BACKENDS[n].priority or 0))
    return " | ".join(["auto", *order])


def backend_help() -> str:
    """The help text of every ``backend=`` key, generated from :data:`BACKENDS`."""
    return f"video backend: {backend_choices()} (auto: per file, the first installed one that reads it)"


def reads(name: str, path: str | Path) -> bool:
    """Whether backend ``name`` claims ``path``: a folder it reads, or a file with one of its suffixes."""
    backend = BACKENDS[name]
    return backend.folders if Path(path).is_dir() else Path(path).suffix.lower() in backend.extensions


def resolve_backend(path: str | Path, backend: str = "auto", *, device: str = "cpu") -> str:
    """The backend that will open ``path``. ``auto``: the backend that can run here
    (:meth:`Backend.missing`), claims it (:func:`reads`) and decodes on ``device``'s type, with the
    lowest ``priority``: frame folders for directories, the image reader for image files, the fastest
    installed decoder for video files. A file no backend claims is tried with the first installed
    backend that reads video files.

    Raises:
        ValueError: an unknown backend, one that cannot run here (saying why) or does not decode on
            ``device``, or none that reads ``path`` (naming what to install).
    """
    kind = _device_type(device)
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend '{backend}'; choose from {backend_choices()}")
        problem = BACKENDS[backend].missing()
        if problem:
            raise ValueError(f"backend '{backend}' {problem}")
        if kind not in BACKENDS[backend].devices:
            raise ValueError(f"backend '{backend}' decodes on {' / '.join(BACKENDS[backend].devices)}, "
                             f"not device={device}")
        return backend
    ranked = sorted((n for n, b in BACKENDS.items() if b.priority is not None and kind in b.devices),
                    key=lambda n: BACKENDS[n].priority)
    claim = [n for n in ranked if reads(n, path)]
    if not claim and not Path(path).is_dir():
        claim = [n for n in ranked if set(BACKENDS[n].extensions) & set(VIDEO_EXTENSIONS)]
    for name in claim:
        if BACKENDS[name].missing() is None:
            return name
    what = "frame folders" if Path(path).is_dir() else f"{Path(path).suffix or 'these'} files"
    if kind != "cpu":
        what += f" on device={device}"
    if not claim:
        raise ValueError(f"no backend reads {what} ({backend_choices()})")
    blocked = [f"{n} {BACKENDS[n].missing()}" for n in claim if _installed(BACKENDS[n].module)]  # e.g. no FFmpeg
    raise ValueError(f"no backend for {what} is installed: install {_install_hint(claim)}"
                     + (f" ({'; '.join(blocked)})" if blocked else ""))


def open_video(path: str | Path, *, backend: str = "auto", size: Size = None, threads: int = 1,
               device: str = "cpu") -> VideoReader:
    """Open ``path`` (a video file or a frame folder) with ``backend``, decoding on ``device``
    (``cpu``, or ``cuda`` / ``cuda:N`` for a backend whose ``devices`` include it: TorchCodec).

    Raises:
        VideoReadError: the file cannot be opened or holds no frames (the message names it).
        ValueError: an unknown or uninstalled backend, or one that does not decode on ``device``.
    """
    if not Path(path).exists():
        raise VideoReadError(path, "no such file or folder")
    cls = BACKENDS[resolve_backend(path, backend, device=device)]
    if _device_type(device) == "cpu" and cls.devices == ("cpu",):  # CPU-only backends take no device keyword
        return cls(path, size=size, threads=threads)
    return cls(path, size=size, threads=threads, device=device)
