"""``preset=crw`` and ``preset=dino`` give, pixel for pixel, the masks of their released protocols.

Each protocol is re-stated here step by step from the released code's description (videowalk's
data/vos.py, test.py, utils/test_utils.py and eval/convert_davis.py; DINO's
eval_video_segmentation.py), on the same random features and a random first mask, at frame sizes
that are not multiples of the stride; vidssl's masks must equal the re-statement's exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidssl.features import dense_autocast, resolve_features
from vidssl.propagation.affinity import propagate_labels_local, propagate_labels_naive, top_k
from vidssl.propagation.masks import davis_palette, read_mask
from vidssl.propagation.propagate import PRESETS, PropagationConfig, extractor_for, processing_size, propagate_masks


class _Sequential:
    """A feature extractor handing out fixed maps in order, whatever the frames hold."""

    device, dtype, name = torch.device("cpu"), torch.float32, "fixed maps"

    def __init__(self, maps: torch.Tensor, stride: int) -> None:
        self.maps, self.stride, self.next = maps, stride, 0

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        out = self.maps[self.next : self.next + len(frames)]
        self.next += len(frames)
        return out


def _video(tmp: Path, count: int, height: int, width: int, ids: tuple[int, ...], seed: int) -> np.ndarray:
    """A frame folder of ``count`` noise JPEG frames and a random first mask of ``ids`` (blobs, so it
    has boundaries of every length) saved as a palette PNG; returns the mask."""
    rng = np.random.default_rng(seed)
    (tmp / "frames").mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(tmp / "frames" / f"{i:05d}.jpg")
    mask = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for label in ids[1:]:
        for _ in range(3):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.1, 0.3) * min(height, width)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = label
    image = Image.fromarray(mask)
    image.putpalette(davis_palette())
    image.save(tmp / "first.png")
    return mask


def _random_maps(count: int, height: int, width: int, channels: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(count, height, width, channels, generator=g), dim=-1)


def _vidssl_masks(tmp: Path, maps: torch.Tensor, stride: int, settings: PropagationConfig) -> list[np.ndarray]:
    run = propagate_masks(tmp / "frames", tmp / "first.png", tmp / "out", _Sequential(maps, stride),
                          settings=settings, name="v", backend="frames", progress=False)
    return [read_mask(tmp / "out" / "v" / f"{i:05d}.png") for i in range(run.frames)]


# ------------------------------------------------------------------------------------------------
# CRW (videowalk), re-stated


def _crw_masks(maps: torch.Tensor, mask: np.ndarray, *, context: int = 20, topk: int = 10, temperature: float = 0.05,
               radius: float = 12.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """videowalk's test.py --cropSize -1, step by step, on (T, h, w, C) maps of (H, W) frames:
    the masks, and each pixel's margin between its best two labels (float ties where tiny)."""
    frames, h, w, _ = maps.shape
    height, width = mask.shape
    # vos.py: one label per colour of the first annotation (in colour order: ids here, few objects),
    # the one-hot resized to ceil(H / 8) x ceil(W / 8) by cv2.resize's default (bilinear)
    ids = np.unique(mask)
    onehot = np.stack([mask == i for i in ids], axis=-1).astype(np.float32)
    first = cv2.resize(onehot, (w, h))  # (h, w, L)
    # the video padded with `context` copies of frame 0; labels of the copies are frame 0's
    padded = [0] * context + list(range(frames))
    feats = maps[padded].permute(3, 0, 1, 2).reshape(maps.shape[-1], len(padded), h * w)  # (C, N, hw)
    labels = [torch.from_numpy(first)] * context + [torch.zeros_like(torch.from_numpy(first))] * frames
    # utils.MaskedAttention: distance < radius; -1e10 on every key frame but long_mem (the first)
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    dist = np.sqrt((gy.ravel()[:, None] - gy.ravel()[None]) ** 2 + (gx.ravel()[:, None] - gx.ravel()[None]) ** 2)
    penalty = torch.from_numpy(np.where(dist < radius, 0.0, -1e10).astype(np.float32))  # (key, query)
    out, margins = [], []
    for t in range(frames):
        if t == 0:  # test.py: pred = lbls[0] for the first target
            pred = labels[0]
        else:
            keys = [0] + list(range(t, t + context))  # context_index_bank: long_mem 0, then t .. t + context - 1
            affinity = torch.einsum("cnk,cq->nkq", feats[:, keys], feats[:, context + t])  # (keys, hw, hw)
            affinity[1:] += penalty
            affinity = affinity.reshape(-1, h * w) / temperature
            weights, index = torch.topk(affinity, topk, dim=0)
            weights = torch.softmax(weights, dim=0)
            ctx = torch.stack([labels[k] for k in keys]).reshape(-1, len(ids))  # (keys * hw, L)
            pred = (ctx[index] * weights[..., None]).sum(0).reshape(h, w, -1)
        labels[context + t] = pred
        # dump_predictions: cv2.resize of the soft labels to the frame, argmax; convert_davis maps the
        # label colours back to ids and resizes nearest to the annotation's size (the same here)
        soft = cv2.resize(pred.numpy(), (width, height))
        out.append(ids[np.argmax(soft, axis=-1)].astype(np.uint8))
        best = np.sort(soft, axis=-1)
        margins.append(best[..., -1] - best[..., -2])
    return out, margins


def _assert_same_masks(got: list[np.ndarray], want: list[np.ndarray], margins: list[np.ndarray]) -> None:
    """Pixel for pixel, except where the re-statement's best two labels are equal up to float
    rounding (1e-6): there the order of a sum decides, and no two implementations agree."""
    assert len(got) == len(want)
    flips = 0
    for t in range(1, len(want)):
        differ = got[t] != want[t]
        assert (margins[t][differ] < 1e-6).all(), f"frame {t}: {int(differ.sum())} pixels differ"
        flips += int(differ.sum())
    assert flips <= 2, f"{flips} pixels at float ties differ"


@pytest.mark.parametrize(("height", "width", "context"), [(120, 214, 20), (61, 93, 20), (61, 93, 3)])
def test_crw_preset_gives_videowalks_masks_pixel_for_pixel(tmp_path: Path, height: int, width: int,
                                                            context: int) -> None:
    """480x854 scaled by 1/4 and a size cut by the stride on both sides; the preset's context of
    20 (every frame's context is mostly copies of frame 0) and a short one (the ring wraps)."""
    mask = _video(tmp_path, 9, height, width, (0, 1, 2, 3), seed=height)
    h, w = math.ceil(height / 8), math.ceil(width / 8)
    maps = _random_maps(9, h, w, 32, seed=width)
    got = _vidssl_masks(tmp_path, maps, 8, PropagationConfig(preset="crw", context=context))
    want, margins = _crw_masks(maps, mask, context=context)
    assert len(got) == 9
    assert np.array_equal(got[0], mask)  # vidssl writes the annotation itself for frame 0 (CRW: its grid labels)
    _assert_same_masks(got, want, margins)
    # vidssl's own rules (cell averages, upsampling on the grid) give other masks on the same features
    own = _vidssl_masks_again(tmp_path, maps, PropagationConfig(preset="crw", context=context, first_mask="area",
                                                                upsample="grid"))
    assert any(not np.array_equal(a, b) for a, b in zip(own[1:], want[1:], strict=True))


def _vidssl_masks_again(tmp: Path, maps: torch.Tensor, settings: PropagationConfig) -> list[np.ndarray]:
    run = propagate_masks(tmp / "frames", tmp / "first.png", tmp / "out2", _Sequential(maps, 8), settings=settings,
                          name="v", backend="frames", progress=False)
    return [read_mask(tmp / "out2" / "v" / f"{i:05d}.png") for i in range(run.frames)]


# ------------------------------------------------------------------------------------------------
# DINO (eval_video_segmentation.py), re-stated


def _dino_size(height: int, width: int, short: int = 480) -> tuple[int, int]:
    """read_frame: the short side to 480, the long side's exact value floored to a multiple of 64
    (a square frame: its width)."""
    if height > width:
        return int((short * height / width) // 64 * 64), short
    return short, int((short * width / height) // 64 * 64)


def _dino_masks(maps: torch.Tensor, first_png: Path, *, patch: int, context: int = 7, topk: int = 5,
                size: int = 12) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """eval_video_tracking_davis, step by step, on (T, h, w, C) maps; frame 0 is the annotation.
    Also each pixel's margin between its best two labels."""
    frames, h, w, _ = maps.shape
    seg = Image.open(first_png)
    width, height = seg.size
    # read_seg: the annotation as it is, nearest-resized to the patch grid; one channel per id 0..max
    small = np.array(seg.resize((w, h), 0)).astype(np.int64)
    first = F.one_hot(torch.from_numpy(small), int(small.max()) + 1).permute(2, 0, 1).float()  # (L, h, w)
    # restrict_neighborhood: |di|, |dj| <= size, as a (query, key) 0/1 matrix
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    near = (np.abs(gy.ravel()[:, None] - gy.ravel()[None]) <= size) & (np.abs(gx.ravel()[:, None] - gx.ravel()[None])
                                                                      <= size)
    near_t = torch.from_numpy(near.astype(np.float32))
    feats = maps.reshape(frames, h * w, -1)
    queue: list[tuple[torch.Tensor, torch.Tensor]] = []
    out, margins = [np.asarray(seg)], [np.zeros((height, width))]
    for t in range(1, frames):
        used = [(feats[0], first)] + queue
        aff = torch.stack([torch.exp(feats[t] @ f.T / 0.1) * near_t for f, _ in used])  # (n, query, key)
        aff = aff.transpose(2, 1).reshape(-1, h * w)  # (n * key, query)
        kth = torch.topk(aff, topk, dim=0).values.min(dim=0).values
        aff[aff < kth] = 0  # every value tied with the k-th stays
        aff = aff / aff.sum(dim=0, keepdim=True)
        segs = torch.cat([s.reshape(s.shape[0], -1) for _, s in used], dim=1)  # (L, n * key)
        soft = (segs @ aff).reshape(1, -1, h, w)
        queue = (queue + [(feats[t], soft[0])])[-context:]
        up = F.interpolate(soft, scale_factor=patch, mode="bilinear", align_corners=False,
                           recompute_scale_factor=False)[0]
        for c in range(up.shape[0]):  # norm_mask
            if up[c].max() > 0:
                up[c] = up[c] - up[c].min()
                up[c] = up[c] / up[c].max()
        label = up.max(dim=0).indices.numpy().astype(np.uint8)
        out.append(np.array(Image.fromarray(label).resize((width, height), 0)))
        best = up.topk(2, dim=0).values
        margin = (best[0] - best[1]).numpy()
        margins.append(np.array(Image.fromarray(margin).resize((width, height), 0)))  # mode F, nearest alike
    return out, margins


@pytest.mark.parametrize(("height", "width", "patch", "short", "count"), [
    pytest.param(480, 854, 16, 480, 4, marks=pytest.mark.slow),
    (363, 500, 8, 160, 10),
    (250, 167, 16, 224, 10),
])
def test_dino_preset_gives_dinos_masks_pixel_for_pixel(tmp_path: Path, height: int, width: int, patch: int,
                                                       short: int, count: int) -> None:
    """DAVIS's 480x854 (the encoder sees 480x832); then, at a smaller short side (read_frame's
    scale_size, so the test stays small), a landscape and a portrait size whose long sides are
    floored to a multiple of 64, ViT patches of 8 and 16, over 10 frames, so the queue of 7 fills
    and drops its oldest."""
    mask = _video(tmp_path, count, height, width, (0, 1, 3), seed=width)
    seen = _dino_size(height, width, short)
    settings = PropagationConfig(preset="dino", size=short)
    assert processing_size(height, width, settings.size, settings.size_multiple) == seen
    maps = _random_maps(count, seen[0] // patch, seen[1] // patch, 32, seed=height)
    got = _vidssl_masks(tmp_path, maps, patch, settings)
    want, margins = _dino_masks(maps, tmp_path / "first.png", patch=patch)
    assert np.array_equal(got[0], mask)
    _assert_same_masks(got, want, margins)


def test_dino_ties_keep_every_neighbour_tied_with_the_kth() -> None:
    """Features of four distinct unit vectors (entries +-0.5: every affinity exact, most of them
    tied): the soft labels equal DINO's, which keeps all values >= the k-th; exactly k do not."""
    g = torch.Generator().manual_seed(0)
    corners = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5], [-0.5, 0.5, 0.5, -0.5],
                            [0.5, 0.5, -0.5, -0.5]])
    maps = corners[torch.randint(0, 4, (4, 9, 11), generator=g)]  # (T, h, w, C)
    labels = torch.rand(3, 2, 9, 11, generator=g)
    query, keys = maps[3].permute(2, 0, 1), maps[:3].permute(0, 3, 1, 2)
    # DINO: exp(aff / 0.1) on the square, zero below the k-th of each query, normalized
    near = torch.from_numpy(_square(9, 11, 2).astype(np.float32))
    aff = torch.cat([torch.exp(keys[i].flatten(1).T @ query.flatten(1) / 0.1) * near for i in range(3)])
    kth = torch.topk(aff, 5, dim=0).values.min(dim=0).values
    aff[aff < kth] = 0
    want = (labels.permute(1, 0, 2, 3).reshape(2, -1) @ (aff / aff.sum(0))).reshape(2, 9, 11)
    kw = dict(radius=2.0, topk=5, temperature=0.1, shape="square")
    for impl in ("naive", "local", "dense"):
        got = (propagate_labels_naive(query, keys, labels, ties=True, **kw) if impl == "naive" else
               propagate_labels_local(query, keys, labels, ties=True, impl=impl, tile=4, **kw))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=impl)
    exact_k = propagate_labels_naive(query, keys, labels, **kw)
    assert (exact_k - want).abs().max() > 1e-2  # the test sees the rule


def _square(h: int, w: int, size: int) -> np.ndarray:
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return ((np.abs(gy.ravel()[:, None] - gy.ravel()[None]) <= size)
            & (np.abs(gx.ravel()[:, None] - gx.ravel()[None]) <= size))  # (key, query): symmetric


@pytest.mark.parametrize("shape", ["circle", "square"])
@pytest.mark.parametrize("first_unrestricted", [False, True])
def test_ties_in_the_local_step_equal_the_reference(shape: str, first_unrestricted: bool) -> None:
    """Tied affinities (discrete features) with the unrestricted first frame merged in, tiles cut
    by the map's edges (their zero targets past it tie everywhere and are left out)."""
    g = torch.Generator().manual_seed(2)
    corners = F.normalize(torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [-1, 1, 1, -1], [1, 1, -1, -1],
                                        [1, 1, 1, -1]]), dim=1)
    maps = corners[torch.randint(0, 5, (5, 13, 17), generator=g)]
    labels = torch.rand(4, 3, 13, 17, generator=g)
    kw = dict(radius=3.0, topk=6, temperature=0.1, shape=shape, first_unrestricted=first_unrestricted, ties=True)
    query, keys = maps[4].permute(2, 0, 1), maps[:4].permute(0, 3, 1, 2)
    naive = propagate_labels_naive(query, keys, labels, **kw)
    for impl, tile in (("local", 5), ("local", 12), ("dense", 5)):
        got = propagate_labels_local(query, keys, labels, impl=impl, tile=tile, **kw)
        torch.testing.assert_close(got, naive, rtol=1e-5, atol=1e-6, msg=f"{impl} tile {tile}")


def test_top_k_with_ties() -> None:
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, 2.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
                      [1.0, float("-inf"), float("-inf"), float("-inf"), float("-inf"), float("-inf")]])
    values, index = top_k(x, 2, ties=True)
    assert values.shape == (3, 4)
    assert values[0].tolist() == [3.0, 2.0, 2.0, 2.0] and sorted(index[0, 1:].tolist()) == [2, 3, 4]
    assert values[1, :2].tolist() == [5.0, 4.0] and values[1, 2:].isinf().all()  # no tie: k, then -inf
    assert top_k(x[2:], 2, ties=True)[0].shape == (1, 2)  # fewer than k allowed: nothing widened
    assert top_k(x, 2)[0].shape == (3, 2)
    # DINO compares the weights exp(a / 0.1) in float32: affinities a last bit apart can tie there
    a = torch.tensor([0.01], dtype=torch.float32) + torch.arange(6) * 1e-9
    assert len(set(a.tolist())) == 6 and len(set(torch.exp(a / 0.1).tolist())) < 6
    kth = torch.exp(a.max() / 0.1)
    values, _ = top_k(a, 1, ties=True, temperature=0.1)
    assert int(values.isfinite().sum()) == int((torch.exp(a / 0.1) >= kth).sum()) > 1


def test_processing_size_floors_the_exact_long_side_as_dino_does() -> None:
    # 480 * 693 / 400 = 831.6: rounded first it would be 832 (a multiple of 64); DINO floors 831.6 to 768
    for height, width in [(400, 693), (480, 854), (720, 1280), (363, 500), (250, 167), (300, 300), (1080, 1920)]:
        assert processing_size(height, width, 480, 64) == _dino_size(height, width), (height, width)
    assert processing_size(400, 693, 480, 1) == (480, 832)  # without a multiple: rounded, as mmcv (VFS) does


def test_presets_pin_float32_unless_precision_is_given() -> None:
    """precision=auto would store features in float16 (and run the encoder under bf16 autocast) on
    a GPU; the released protocols run float32, so every preset pins it; an explicit key wins."""
    assert PropagationConfig().precision == "auto"
    for preset in PRESETS:
        assert PropagationConfig(preset=preset).precision == "float32", preset
    assert PropagationConfig(preset="crw", precision="auto").precision == "auto"
    assert PropagationConfig(preset="dino", precision="float16").precision == "float16"
    extractor = extractor_for(PropagationConfig(preset="crw", encoder="random", device="cpu"))
    assert extractor.dtype == torch.float32 and extractor.autocast is False
    cuda = torch.device("cuda")
    assert not dense_autocast(cuda, torch.float32) and dense_autocast(cuda, torch.float16)
    assert not dense_autocast(torch.device("cpu"), torch.float16)
    assert resolve_features("pixels", device="cpu", precision="float16").dtype == torch.float16
