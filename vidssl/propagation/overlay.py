"""Pictures of propagated labels for people to look at: masks and keypoints drawn over frames.

Both return (H, W, 3) uint8 RGB frames with even sides (H.264 yuv420p needs them; an odd last row
or column is repeated), ready for :func:`vidssl.data.video_writer.write_video`.
"""

from __future__ import annotations

import cv2
import numpy as np

# Distinct, saturated colours for joints (RGB), cycled when there are more joints.
_JOINT_COLOURS = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0),
)


def even_size(image: np.ndarray) -> np.ndarray:
    """Repeat the last row / column of an (H, W, 3) image where a side is odd."""
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return image


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] != size:
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return frame


def mask_overlay(frame: np.ndarray, mask: np.ndarray, palette: list[int], *, alpha: float = 0.5) -> np.ndarray:
    """Objects of the (H, W) uint8 ``mask`` in their ``palette`` colours, blended over ``frame``
    ((h, w, 3) uint8 RGB, resized to (H, W) if needed) with their outlines drawn solid; the
    background is left as it is."""
    frame = _fit(frame, mask.shape)
    colours = np.asarray(palette, dtype=np.float32).reshape(-1, 3)[mask]
    objects = mask > 0
    out = frame.astype(np.float32)
    out[objects] = (1 - alpha) * out[objects] + alpha * colours[objects]
    edges = objects & (cv2.dilate(mask, np.ones((3, 3), np.uint8)) != cv2.erode(mask, np.ones((3, 3), np.uint8)))
    out[edges] = colours[edges]
    return even_size(out.clip(0, 255).astype(np.uint8))


def keypoint_overlay(
    frame: np.ndarray,
    xy: np.ndarray,
    *,
    size: tuple[int, int] | None = None,
    skeleton: tuple[tuple[int, int], ...] = (),
    radius: int = 3,
) -> np.ndarray:
    """Joints (J, 2) (NaN: not drawn) as filled circles, and the ``skeleton``'s bones as lines,
    over ``frame`` ((h, w, 3) uint8 RGB, resized to ``size`` (H, W) first if given)."""
    out = np.ascontiguousarray(_fit(frame, size) if size is not None else frame).copy()
    ok = np.isfinite(xy).all(axis=1)
    point = [tuple(int(round(v)) for v in p) if good else None for p, good in zip(xy, ok, strict=True)]
    for a, b in skeleton:
        if point[a] is not None and point[b] is not None:
            cv2.line(out, point[a], point[b], _JOINT_COLOURS[b % len(_JOINT_COLOURS)], 2, cv2.LINE_AA)
    for j, p in enumerate(point):
        if p is not None:
            cv2.circle(out, p, radius, _JOINT_COLOURS[j % len(_JOINT_COLOURS)], -1, cv2.LINE_AA)
    return even_size(out)
