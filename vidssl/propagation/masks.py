"""Object masks as propagation labels: palette PNGs in, soft labels on the feature grid, PNGs out.

    first = read_first_mask(Path("Annotations/480p/bear/00000.png"))  # ids, palette, (H, W) uint8
    grid = to_grid(one_hot(first.mask, first.ids), (h, w), stride=8)  # (L, h, w) cell fractions
    mask = to_mask(soft, first.ids, (H, W), stride=8)                   # (H, W) uint8 object ids
    write_mask(Path("out/bear/00001.png"), mask, first.palette)

Geometry (vidssl's own rules, ``first_mask=area``, ``upsample=grid``): feature cell (i, j) covers
pixels ``[i * stride, (i + 1) * stride)`` x ``[j * stride, (j + 1) * stride)``. A one-hot mask
becomes each cell's fraction of every label (average pooling; cells cut by the frame's edge
average the pixels they have), and soft labels come back to pixels by bilinear upsampling on that
same grid (cell centres at ``(i + 0.5) * stride - 0.5``), followed by an argmax.

The released codebases use other rules, which :data:`FIRST_MASKS` and :data:`UPSAMPLES` name:

- ``first_mask=bilinear`` (CRW, data/vos.py): the one-hot mask resized to the grid by OpenCV's
  bilinear rule (at 1/8: the mean of the 2 x 2 pixels at each cell's centre, not of the cell);
- ``first_mask=nearest`` (DINO's read_seg, VFS's pil_nearest_interpolate): PIL's nearest resize
  of the label map to the grid;
- ``upsample=stretch`` (CRW's dump_predictions, VFS's tracker): the (h, w) grid of soft labels
  resized bilinearly straight to the frame's size (OpenCV's rule), so a grid of partial cells is
  stretched over the frame, then argmax;
- ``upsample=grid_nearest`` (DINO): bilinear by ``stride`` on the grid (at the size the encoder
  saw), argmax there, and the label map resized to the frame by PIL's nearest rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vidssl.files import atomic_path

VOID = 255  # DAVIS marks unlabelled pixels 255; they count as background here (as its evaluation does)

FIRST_MASKS = ("area", "nearest", "bilinear")
"""How the first mask becomes labels on the feature grid (module docstring)."""
UPSAMPLES = ("grid", "stretch", "grid_nearest")
"""How soft labels on the grid become a mask at the frame's size (module docstring)."""


@dataclass(frozen=True)
class FirstMask:
    """A first-frame annotation: the label map, the label ids it holds and its palette."""

    mask: np.ndarray  # (H, W) uint8, VOID already turned into 0
    ids: tuple[int, ...]  # background 0 first, then the object ids present, ascending
    palette: list[int]  # 768 ints: the PNG's own palette (the DAVIS palette for grayscale PNGs)
    path: Path | None = None  # the file it was read from, for messages


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC palette (768 ints), for label PNGs that carry none."""
    from vidssl.data.synth import davis_palette as palette

    return palette()


def read_first_mask(path: Path) -> FirstMask:
    """Read a palette ("P") or grayscale label PNG; any number of objects.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a label image, or no object in it (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such first-frame annotation")
    mask, palette = _read_labels(path)
    ids = tuple(int(i) for i in np.unique(mask))
    if ids[-1] == 0:
        raise ValueError(f"{path}: the first-frame annotation holds no object (every pixel is 0)")
    if ids[0] != 0:
        ids = (0, *ids)
    palette = (palette or []) + [0] * (768 - len(palette or []))
    return FirstMask(mask=mask, ids=ids, palette=palette if any(palette) else davis_palette(), path=path)


def one_hot(mask: np.ndarray, ids: tuple[int, ...]) -> torch.Tensor:
    """(H, W) label map -> (L, H, W) float32, channel l = (mask == ids[l]); other values count as
    background (channel 0)."""
    labels = torch.from_numpy(mask.astype(np.int64))
    out = torch.stack([labels == i for i in ids]).float()
    out[0] += 1 - out.sum(0)  # pixels whose id is not in ids
    return out


def grid_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """Feature grid of a ``height`` x ``width`` frame at ``stride`` (partial cells included)."""
    return -(-height // stride), -(-width // stride)


def to_grid(
    labels: torch.Tensor, grid: tuple[int, int], *, stride: int, frame: tuple[int, int] | None = None
) -> torch.Tensor:
    """(L, H, W) per-pixel labels -> (L, h, w): each feature cell's mean.

    Args:
        labels: (L, H, W) one-hot (or soft) labels at the annotation's size.
        grid: (h, w) of the feature maps; ceil or floor of ``frame / stride`` (a ViT drops the
            partial cells, a ResNet keeps them).
        stride: pixels per cell of the frames the encoder sees.
        frame: (H', W') of those frames when they are resized from the annotation's size.
    """
    x = labels[None].float()
    if frame is not None and tuple(frame) != tuple(labels.shape[1:]):
        x = F.interpolate(x, size=frame, mode="area")
    x = F.avg_pool2d(x, stride, ceil_mode=True)
    return x[0, :, : grid[0], : grid[1]]


def nearest_grid(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 label map -> (h, w) by PIL's nearest resize, as DINO's read_seg and VFS's
    pil_nearest_interpolate put the first mask on the patch grid."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).resize(
        (grid[1], grid[0]), Image.Resampling.NEAREST))


def cv2_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, L) float32 -> (h, w, L) by OpenCV's bilinear rule (``cv2.resize``, ``INTER_LINEAR``:
    half-pixel centres, no averaging when shrinking), any number of channels."""
    import cv2

    out = [cv2.resize(np.ascontiguousarray(x[..., c : c + 256]), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
           for c in range(0, x.shape[-1], 256)]  # OpenCV takes at most 512 channels at a time
    return np.concatenate([o.reshape(*size, -1) for o in out], axis=-1)


def first_labels(mask: np.ndarray, ids: tuple[int, ...], grid: tuple[int, int], *, stride: int,
                 frame: tuple[int, int] | None = None, rule: str = "area") -> torch.Tensor:
    """(H, W) uint8 first mask -> (L, h, w) float32 labels on the feature grid by ``rule``
    (:data:`FIRST_MASKS`, module docstring); ``frame`` (H', W'): the size the encoder sees."""
    if rule == "area":
        return to_grid(one_hot(mask, ids), grid, stride=stride, frame=frame)
    if rule == "nearest":
        return one_hot(nearest_grid(mask, grid), ids)
    if rule == "bilinear":
        hot = one_hot(mask, ids).permute(1, 2, 0).numpy()
        return torch.from_numpy(cv2_resize(hot, grid)).permute(2, 0, 1).contiguous()
    raise ValueError(f"first_mask must be one of {', '.join(FIRST_MASKS)}, got {rule!r}")


def to_pixels(
    soft: torch.Tensor, size: tuple[int, int], *, stride: int, frame: tuple[int, int] | None = None
) -> torch.Tensor:
    """(L, h, w) soft labels on the feature grid -> (L, H, W) bilinear on the grid's geometry.

    ``frame`` (H', W') is the size the encoder saw when it differs from the output ``size``.
    """
    height, width = frame if frame is not None else size
    x = F.interpolate(soft[None].float(), size=(soft.shape[1] * stride, soft.shape[2] * stride), mode="bilinear",
                      align_corners=False)
    pad_h, pad_w = max(0, height - x.shape[2]), max(0, width - x.shape[3])
    if pad_h or pad_w:  # a floor-sized grid (ViT) leaves the last pixels uncovered: extend its edge
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    x = x[:, :, :height, :width]
    if (height, width) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x[0]


def min_max(labels: torch.Tensor) -> torch.Tensor:
    """(L, H, W) -> each label's map scaled to [0, 1] by its own min and max; maps whose max is not
    above 0 are left as they are (DINO's ``norm_mask``, VFS's normalization before argmax)."""
    flat = labels.flatten(1)
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    scaled = (labels - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]
    return torch.where((high > 0)[:, None, None], scaled, labels)


def to_mask(soft: torch.Tensor, ids: tuple[int, ...], size: tuple[int, int], *, stride: int,
            frame: tuple[int, int] | None = None, norm: bool = False, upsample: str = "grid") -> np.ndarray:
    """(L, h, w) soft labels -> (H, W) uint8 map of ``ids``: upsampled by ``upsample``
    (:data:`UPSAMPLES`, module docstring), with ``norm`` each label's map min-max normalized
    (:func:`min_max`), then argmax (the first label of tied maxima)."""
    if upsample == "stretch":
        pixels = torch.from_numpy(cv2_resize(soft.float().permute(1, 2, 0).cpu().numpy(), size)).permute(2, 0, 1)
    elif upsample == "grid":
        pixels = to_pixels(soft, size, stride=stride, frame=frame)
    elif upsample == "grid_nearest":
        pixels = to_pixels(soft, frame if frame is not None else size, stride=stride)
    else:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLES)}, got {upsample!r}")
    # max(dim=0).indices is argmax (the first of tied maxima too), 10x faster on CPU over the leading dim
    index = (min_max(pixels) if norm else pixels).max(dim=0).indices.cpu().numpy().astype(np.uint8)
    if index.shape != tuple(size):
        index = nearest_grid(index, size)
    return np.asarray(ids, dtype=np.uint8)[index]


def write_mask(path: Path, mask: np.ndarray, palette: list[int]) -> None:
    """Save a (H, W) uint8 label map as a palette PNG (DAVIS results layout), atomically."""
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))  # (H, W) uint8 -> "L"
    image.putpalette(palette)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def read_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 label map of a palette, grayscale or 1-bit PNG (:func:`_read_labels`)."""
    return _read_labels(path)[0]


def _read_labels(path: Path) -> tuple[np.ndarray, list[int] | None]:
    """(H, W) uint8 label map and palette (None without one) of a label PNG.

    A palette or grayscale PNG holds object ids, VOID (255) turned into 0 (DAVIS-2017). A grayscale
    PNG of 0 and 255 alone, or a 1-bit one, is DAVIS-2016's binary layout: 255 is the one object
    (id 1), as the DAVIS-2016 evaluation reads it, not void.
    """
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "1"):
            raise ValueError(f"{path}: expected a palette, grayscale or 1-bit label PNG, got mode {image.mode}")
        palette = image.getpalette() if image.mode == "P" else None
        binary = image.mode != "P"
        mask = np.array(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    if binary and mask.any() and not np.isin(mask, (0, VOID)).all():
        binary = False  # ids 1..K (maybe with void): the DAVIS-2017 layout saved as grayscale
    mask[mask == VOID] = 1 if binary else 0
    return mask, palette
