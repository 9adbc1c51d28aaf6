"""Write frames to disk: H.264 mp4 files (PyAV + libx264) and DAVIS-style frame folders.

Both writers are atomic (:func:`vidssl.files.atomic_path`, :func:`vidssl.files.atomic_folder`):
they write under a hidden temporary sibling and move it into place only when complete, so a
killed run never leaves a half-written file or folder under the final name.

    write_video(Path("clip.mp4"), frames, fps=24.0, keyint=8)   # frames: (H, W, 3) uint8 RGB
    write_frame_folder(Path("JPEGImages/480p/clip"), frames)   # 00000.jpg, 00001.jpg, ...
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from vidssl.files import atomic_folder, atomic_path

# 1001 * 1000 keeps NTSC rates such as 30000/1001 exact while rounding float noise away.
_MAX_FPS_DENOMINATOR = 1001 * 1000


def _check_frame(path: Path, index: int, frame: np.ndarray, shape: tuple[int, ...]) -> None:
    """All frames of one file share the first frame's shape; the encoders take uint8 only."""
    if frame.dtype != np.uint8 or frame.shape != shape:
        raise ValueError(f"{path}: frame {index} is {frame.dtype} {frame.shape}, expected uint8 {shape}")


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    keyint: int | None = None,
    bframes: int = 0,
    preset: str = "veryfast",
) -> int:
    """Encode ``frames`` ((H, W, 3) uint8 RGB, H and W even) as an H.264 yuv420p mp4 at ``path``.

    Frame ``i`` gets pts ``i`` in time base ``1 / fps``. ``keyint`` puts a keyframe exactly every
    ``keyint`` frames (scene-cut detection off), which bounds the decoding needed for random access;
    None leaves the GOP to x264. Returns the number of frames written.
    """
    import av  # lazy: only writers of mp4 files need PyAV

    path = Path(path)
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    if first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"{path}: frames must be (H, W, 3) RGB, got {first.shape}")
    height, width = first.shape[:2]
    if height % 2 or width % 2:
        # yuv420p stores chroma at half resolution in both directions.
        raise ValueError(f"{path}: width and height must be even for yuv420p, got {width}x{height}")

    rate = Fraction(fps).limit_denominator(_MAX_FPS_DENOMINATOR)
    x264_params = [f"bframes={bframes}"]
    if keyint is not None:
        x264_params += [f"keyint={keyint}", f"min-keyint={keyint}", "scenecut=0"]
    options = {"crf": str(crf), "preset": preset, "x264-params": ":".join(x264_params)}

    written = 0
    with atomic_path(path) as partial, av.open(str(partial), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        for array in itertools.chain([first], iterator):
            _check_frame(path, written, array, first.shape)
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            video_frame.pts = written
            video_frame.time_base = stream.codec_context.time_base
            container.mux(stream.encode(video_frame))
            written += 1
        container.mux(stream.encode(None))  # flush frames the encoder still holds
    return written


def write_frame_folder(
    folder: Path,
    frames: Iterable[np.ndarray],
    *,
    ext: str = ".jpg",
    quality: int = 95,
    palette: list[int] | None = None,
) -> int:
    """Write ``frames`` as ``folder/00000<ext>``, ``00001<ext>``, ... (DAVIS naming).

    Frames are (H, W, 3) uint8 RGB, or with ``palette`` (768 ints) (H, W) uint8 label maps saved
    as palette ("P" mode) images, as DAVIS stores masks. ``quality`` applies to JPEG only. The
    folder is filled under a hidden sibling and renamed into place, replacing any earlier folder.
    Returns the number of frames written.
    """
    options = {"quality": quality} if ext.lower() in (".jpg", ".jpeg") else {}
    written = 0
    with atomic_folder(folder) as partial:
        for index, array in enumerate(frames):
            image = Image.fromarray(array)
            if palette is not None:
                image.putpalette(palette)  # turns an "L" label map into a "P" image
            image.save(partial / f"{index:05d}{ext}", **options)
            written = index + 1
    return written
