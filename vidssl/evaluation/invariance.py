"""How invariant is a representation to viewpoint, illumination, occlusion and instance changes?

The measurement of Purushwalkam & Gupta, "Demystifying Contrastive Self-Supervised Learning:
Invariances, Augmentations and Dataset Biases" (NeurIPS 2020, arXiv:2007.13916, Sec. 3), which
follows Goodfellow et al., "Measuring Invariances in Deep Networks" (NeurIPS 2009):

* A transformation is represented by *sets*: images of one instance under that transformation
  (one object tracked over time; one crop under several illuminations; ...).
* Neuron ``i`` (one channel of the pooled representation) *fires* on image ``x`` when
  ``f_i(x) > t_i``. The threshold ``t_i`` is set over all images ``U`` of the transformation's
  sets so that the neuron fires on a fixed small fraction of them: its global firing rate
  ``G(i) = |{x in U: f_i(x) > t_i}| / |U|`` is ``rate`` (1% by default; more where responses
  tie, as equal responses always fire together: see :func:`firing_thresholds`).
* The local firing rate is Goodfellow's: over the images ``z`` on which the neuron fires, the
  mean fraction of the *other* images of ``z``'s set on which it fires too. With ``c_ij`` the
  number of images of set ``j`` (of ``n_j``) on which neuron ``i`` fires::

      L(i) = sum_j c_ij (c_ij - 1) / (n_j - 1)  /  sum_j c_ij

  which, when all sets have the same size, is the fraction of ordered pairs ``(x, x')`` of one
  set, ``x != x'``, with the neuron firing on both among those where it fires on ``x``. Neurons
  that fire on no image (of a set of two or more) have no ``L`` and are not ranked.
* Reported per transformation: ``top{k}`` = the mean ``L(i)`` of the ``k`` neurons with the
  largest ``L(i)`` (k = 10 and 25 by default), and ``ratio_top{k}`` = the mean ``L(i) / G(i)`` of the
  ``k`` neurons with the largest ratio: the paper's (and Goodfellow's) invariance score.

Why thresholds per transformation rather than over the union of every transformation's images:
the score of one transformation then does not depend on which others are measured alongside, and
sets that hold near-copies of one crop (illumination, occlusion) cannot take all of a neuron's
top responses away from the sets of the other transformations.

Why ``L`` is the headline number and ``L / G`` the secondary one: ``L / G`` goes up to ``1 / G``
(100 at a 1% firing rate), so "perfectly invariant" has no fixed value and runs at different
``rate`` cannot be compared. ``L`` lies in [0, 1]: it is exactly 1 when every neuron that fires on
one image of a set fires on all of them (an encoder whose features ignore the transformation
scores 1), and about ``G`` for a neuron that fires independently of the instance. Since the
thresholds hold ``G(i)`` at ``rate`` for every neuron (up to ties), both rankings agree.

Sets come from object tracks. :func:`tracks_from_synth` reads them from a ``vidssl synth`` folder
(ground-truth boxes and masks); any other source plugs in by producing the same :class:`Track`
list, e.g. the output of ``vidssl tracks`` (one :class:`Track` per track id of one video, with
its frame indices, boxes and detector class), and passing it to :func:`build_sets`::

    tracks = tracks_from_synth(Path("runs/synth"))
    sets = {name: build_sets(tracks, transformation=name, sets=64, images_per_set=8,
                             image_size=64, seed=0) for name in TRANSFORMATIONS}
    results = measure_invariance(encoder, sets, rate=0.01, topk=(10, 25))

From the command line: ``vidssl eval invariance ENCODER data=runs/synth out=runs/inv``, which
writes ``results.json`` and a bar chart ``invariance.png``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from vidssl.config import option, to_dict
from vidssl.data.transforms import normalize

log = logging.getLogger(__name__)

TRANSFORMATIONS = ("viewpoint", "illumination", "occlusion", "instance")
"""What a set varies: the object's pose / shape over time, the lighting of one crop, occluders
drawn over one crop, or the object itself (different objects of one class)."""


# ------------------------------------------------------------------------------------------------
# The measure, on features


def firing_thresholds(features: torch.Tensor, *, rate: float = 0.01, tolerance: float = 1e-6) -> torch.Tensor:
    """Per-neuron thresholds ``t`` such that each neuron fires (``f > t``) on a fraction ``rate``.

    Args:
        features: (N, D) responses of D neurons to N images.
        rate: the global firing rate G: ``k = max(1, round(rate * N))`` images fire per neuron.
        tolerance: responses closer than ``tolerance`` times the neuron's range (max - min) count
            as equal.

    Returns:
        (D,) float64 thresholds, just below each neuron's k-th largest response: it fires on its
        ``k`` largest responses, and on every response equal to the k-th one (within the
        tolerance). Equal responses are never split, so a neuron that gives a whole set one value
        fires on all of it or on none of it (a strict quantile would cut the set at an arbitrary
        image, and an encoder that ignores the transformation would not score 1), and the slack
        absorbs floating-point differences between recomputations of one response (another batch
        composition or device). Responses at the neuron's minimum never fire, so a constant
        neuron fires nowhere and a mostly silent one (a ReLU unit at 0 on more than ``N - k``
        images) fires only where it is active. The realised rate is therefore ``rate`` up to ties.

    Raises:
        ValueError: ``rate`` outside (0, 1), or fewer than ``k + 1`` images.
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    n = features.shape[0]
    k = max(1, round(rate * n))
    if n <= k:
        raise ValueError(f"{n} images are too few for a firing rate of {rate}: need more than {k}")
    values = features.double()
    kth = torch.topk(values, k, dim=0).values[-1]  # (D,)
    low, high = values.min(dim=0).values, values.max(dim=0).values
    slack = tolerance * (high - low)
    return torch.maximum(kth - slack, low + slack)


@dataclass(frozen=True)
class InvarianceScores:
    """Per-neuron results of :func:`invariance_scores`; NaN marks neurons that never fired in a set."""

    local: torch.Tensor  # (D,) L(i) in [0, 1]
    ratio: torch.Tensor  # (D,) L(i) / G(i)


def invariance_scores(
    features_by_set: Sequence[torch.Tensor], thresholds: torch.Tensor, *, global_rate: float | torch.Tensor
) -> InvarianceScores:
    """Local firing rates ``L`` (and ``L / G``) of every neuron over sets of one transformation.

    Args:
        features_by_set: one (n_j, D) tensor per set (images of one instance under the
            transformation); sets of one image have no other image and are ignored.
        thresholds: (D,) from :func:`firing_thresholds`.
        global_rate: G, a float or (D,) per neuron (the realised rate over all images).

    Returns:
        ``local`` = sum_j c_j (c_j - 1) / (n_j - 1) / sum_j c_j, with c_j the number of images of
        set j on which the neuron fires: over the images that fire, the mean fraction of the other
        images of their set that fire too (Goodfellow et al. 2009). ``ratio`` = local / G. Both
        NaN for neurons that fire on no image of a set of two or more.
    """
    both = torch.zeros(thresholds.shape[0], dtype=torch.float64)
    fired = torch.zeros_like(both)
    for features in features_by_set:
        n = features.shape[0]
        if n < 2:
            continue
        count = (features > thresholds).sum(dim=0).double()  # (D,) c_j
        both += count * (count - 1) / (n - 1)
        fired += count
    local = torch.where(fired > 0, both / fired.clamp(min=1), torch.full_like(both, math.nan))
    return InvarianceScores(local=local, ratio=local / torch.as_tensor(global_rate, dtype=torch.float64))


def top_k_mean(scores: torch.Tensor, *, k: int) -> float:
    """Mean of the ``k`` largest finite entries of ``scores`` (D,); over all of them when fewer
    than ``k`` are finite, NaN when none is (NaN marks neurons that never fired)."""
    valid = scores[torch.isfinite(scores)]
    if valid.numel() == 0:
        return math.nan
    return float(torch.topk(valid, min(k, valid.numel())).values.mean())


def score_sets(
    features_by_transformation: Mapping[str, Sequence[torch.Tensor]],
    *,
    rate: float = 0.01,
    topk: Sequence[int] = (10, 25),
) -> dict[str, dict[str, float | int]]:
    """The whole measure from features. Per transformation: thresholds over the images of its
    sets, then ``top{k}`` (mean L), ``ratio_top{k}`` (mean L / G), ``sets``, ``images`` and
    ``neurons_scored`` (neurons that fired on some image, i.e. were ranked).

    Args:
        features_by_transformation: name -> list of (n_j, D) features, one per set.
    """
    results: dict[str, dict[str, float | int]] = {}
    for name, sets in features_by_transformation.items():
        everything = torch.cat(list(sets))
        if round(rate * everything.shape[0]) < 2:
            # A neuron that fires on one image has no partner firing: L would be 0 by construction.
            raise ValueError(
                f"{name}: {everything.shape[0]} images at rate={rate} let each neuron fire on fewer than 2;"
                f" measure at least {math.ceil(1.5 / rate)} images (more sets or data) or raise the rate"
            )
        thresholds = firing_thresholds(everything, rate=rate)
        # The realised G(i): equal to `rate` except for neurons whose top responses tie.
        global_rate = (everything > thresholds).double().mean(dim=0)
        scores = invariance_scores(sets, thresholds, global_rate=global_rate)
        row: dict[str, float | int] = {f"top{k}": top_k_mean(scores.local, k=k) for k in topk}
        row |= {f"ratio_top{k}": top_k_mean(scores.ratio, k=k) for k in topk}
        row |= {
            "sets": len(sets),
            "images": sum(f.shape[0] for f in sets),
            "neurons_scored": int(torch.isfinite(scores.local).sum()),
        }
        results[name] = row
    return results


# ------------------------------------------------------------------------------------------------
# Features


def _spatial_mean(output: torch.Tensor) -> torch.Tensor:
    """A hooked module's output as (B, C): maps (B, C, H, W) and tokens (B, L, C) are averaged."""
    if output.dim() == 4:
        return output.mean(dim=(2, 3))
    if output.dim() == 3:
        return output.mean(dim=1)
    return output


def extract_features(
    encoder: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    layer: str | None = None,
) -> torch.Tensor:
    """(N, 3, H, W) uint8 images -> (N, D) float32 features on the CPU.

    ``encoder(normalize(batch))`` gives (B, D); with ``layer`` (a name from
    ``encoder.named_modules()``, e.g. ``layer3``) that module's output is taken through a forward
    hook instead and averaged over its spatial positions ((B, C, H', W') -> (B, C); tokens
    (B, L, C) -> (B, C)). The encoder is put in eval mode and moved to ``device``.

    Raises:
        ValueError: ``layer`` names no module of the encoder.
    """
    encoder = encoder.eval().to(device)
    captured: list[torch.Tensor] = []
    hook = None
    if layer:
        modules = dict(encoder.named_modules())
        if layer not in modules:
            import difflib

            close = difflib.get_close_matches(layer, list(modules), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"layer '{layer}' is not a module of the encoder{hint}")
        hook = modules[layer].register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                batch = normalize(images[start : start + batch_size].to(device))
                output = encoder(batch)
                if layer:
                    output = _spatial_mean(captured.pop())
                chunks.append(output.float().flatten(1).cpu())
    finally:
        if hook is not None:
            hook.remove()
    return torch.cat(chunks)


def sets_features(
    encoder: nn.Module,
    sets: Mapping[str, Sequence[torch.Tensor]],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    layer: str | None = None,
) -> dict[str, list[torch.Tensor]]:
    """The features of image sets, in one pass over all of them: transformation name -> list of
    (n_j, 3, H, W) uint8 sets becomes name -> list of (n_j, D) float32 (see :func:`extract_features`)."""
    flat = [s for name in sets for s in sets[name]]
    features = extract_features(encoder, torch.cat(flat), batch_size=batch_size, device=device, layer=layer)
    parts = iter(torch.split(features, [s.shape[0] for s in flat]))
    return {name: [next(parts) for _ in sets[name]] for name in sets}


def measure_invariance(
    encoder: nn.Module,
    sets: Mapping[str, Sequence[torch.Tensor]],
    *,
    rate: float = 0.01,
    topk: Sequence[int] = (10, 25),
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    layer: str | None = None,
) -> dict[str, dict[str, float | int]]:
    """:func:`score_sets` on the features of image sets (transformation name -> list of
    (n_j, 3, H, W) uint8 sets, e.g. from :func:`build_sets`)."""
    features = sets_features(encoder, sets, batch_size=batch_size, device=device, layer=layer)
    return score_sets(features, rate=rate, topk=topk)


# ------------------------------------------------------------------------------------------------
# Sets of images from object tracks


Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixel-edge coordinates


@dataclass(frozen=True)
class Track:
    """One object followed through one video: the input of :func:`build_sets`.

    ``frames`` lists only frames where the object is usable (large and mostly visible), with
    ``boxes`` aligned to them. Any track source fits: synthetic ground truth
    (:func:`tracks_from_synth`) or a tracker's output (one Track per track id).
    """

    video: Path  # anything vidssl.data.backends.open_video reads: a video file or a frame folder
    track_id: int
    class_id: int
    frames: tuple[int, ...]
    boxes: tuple[Box, ...]


def tracks_from_synth(root: Path, *, min_size: int = 8, min_visible: float = 0.75) -> list[Track]:
    """The ground-truth tracks of a ``vidssl synth`` folder (see :mod:`vidssl.data.synth`).

    A frame is kept when the object's box is at least ``min_size`` pixels on both sides and its
    visible area (pixels of its label in the mask) is at least ``min_visible`` times its largest
    visible area in the video: viewpoint and instance sets should show whole objects, otherwise
    every transformation would also measure occlusion by the other objects.

    Raises:
        FileNotFoundError: ``root`` holds no ``synth.json`` (not a complete synthetic dataset).
    """
    from vidssl.data.backends import list_frame_files
    from vidssl.data.synth import load_annotations, read_palette_mask

    root = Path(root)
    if not (root / "synth.json").exists():
        raise FileNotFoundError(f"{root}: no synth.json; make a synthetic dataset with 'vidssl synth out={root}'")
    tracks = []
    for seq in json.loads((root / "synth.json").read_text())["sequences"]:
        annotation = load_annotations(root / "annotations" / f"{seq}.json")
        masks = list_frame_files(root / "davis" / "Annotations" / "480p" / seq)
        visible = np.stack([np.bincount(read_palette_mask(m).ravel(), minlength=256) for m in masks])  # (T, 256)
        frames = root / "davis" / "JPEGImages" / "480p" / seq
        video = frames if frames.is_dir() else root / "videos" / f"{seq}.mp4"
        for obj in annotation["objects"]:
            largest = visible[:, obj["id"]].max()
            kept = [
                (frame["index"], tuple(float(v) for v in box["box"]))
                for frame in annotation["frames"]
                for box in frame["boxes"]
                if box["id"] == obj["id"]
                and min(box["box"][2] - box["box"][0], box["box"][3] - box["box"][1]) >= min_size
                and visible[frame["index"], obj["id"]] >= min_visible * largest
            ]
            if kept:
                indices, boxes = zip(*kept, strict=True)
                tracks.append(Track(video, obj["id"], obj["class_id"], tuple(indices), tuple(boxes)))
    return tracks


def crop_object(frame: np.ndarray, box: Box, *, size: int) -> tuple[torch.Tensor, Box]:
    """A square crop around ``box``, resized to ``size`` x ``size``.

    The square's side is the box's longer side (aspect ratio kept) and it is shifted to stay
    inside the frame rather than padded, so no crop shows artificial borders.

    Args:
        frame: (H, W, 3) uint8 RGB.
        box: x1, y1, x2, y2 in pixels.

    Returns:
        (3, size, size) uint8 crop, and the box in the crop's pixel coordinates.
    """
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = box
    side = min(max(math.ceil(x2 - x1), math.ceil(y2 - y1), 1), height, width)
    left = min(max(round((x1 + x2 - side) / 2), 0), width - side)
    top = min(max(round((y1 + y2 - side) / 2), 0), height - side)
    patch = torch.from_numpy(np.ascontiguousarray(frame[top : top + side, left : left + side])).permute(2, 0, 1)
    crop = TF.resize(patch, [size, size], antialias=True)
    scale = size / side
    return crop, ((x1 - left) * scale, (y1 - top) * scale, (x2 - left) * scale, (y2 - top) * scale)


@dataclass(frozen=True)
class Illumination:
    """One lighting change: brightness and contrast factors (torchvision's ``adjust_brightness`` /
    ``adjust_contrast``; 1 = unchanged), then per-channel RGB gains for colour temperature."""

    name: str
    brightness: float = 1.0
    contrast: float = 1.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) uint8 -> the same under this lighting, uint8."""
        out = TF.adjust_contrast(TF.adjust_brightness(image, self.brightness), self.contrast)
        gains = torch.tensor(self.gains).view(3, 1, 1)
        return (out.float() * gains).round().clamp(0, 255).to(torch.uint8)


ILLUMINATIONS = (
    Illumination("original"),
    Illumination("darker", brightness=0.6),
    Illumination("brighter", brightness=1.4),
    Illumination("low contrast", contrast=0.6),
    Illumination("high contrast", contrast=1.4),
    Illumination("warm", gains=(1.15, 1.0, 0.8)),  # tungsten-like: more red, less blue
    Illumination("cool", gains=(0.85, 1.0, 1.2)),  # overcast-like: more blue
    Illumination("dim and warm", brightness=0.75, contrast=0.8, gains=(1.1, 1.0, 0.85)),
)
"""An illumination set is one crop under each of these, in this order (deterministic)."""


def occlude(
    image: torch.Tensor, box: Box, *, rng: np.random.Generator, area: tuple[float, float] = (0.1, 0.4)
) -> torch.Tensor:
    """``image`` (3, H, W) uint8 with one synthetic occluder over the object in ``box``.

    The occluder is a rectangle covering a fraction of the box's area drawn uniformly from
    ``area``, with a log-uniform aspect ratio in [1/2, 2], placed uniformly inside the box and
    filled with a flat grey of random level or with uniform noise (an even chance each).
    """
    x1, y1, x2, y2 = box
    box_w, box_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    target = rng.uniform(*area) * box_w * box_h
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    w = min(max(round(math.sqrt(target * aspect)), 1), math.floor(box_w))
    h = min(max(round(target / max(w, 1)), 1), math.floor(box_h))
    left = round(x1 + rng.uniform(0, box_w - w))
    top = round(y1 + rng.uniform(0, box_h - h))
    out = image.clone()
    region = out[:, top : top + h, left : left + w]
    if rng.random() < 0.5:
        region[:] = int(rng.integers(0, 256))
    else:
        region[:] = torch.from_numpy(rng.integers(0, 256, region.shape, dtype=np.uint8))
    return out


def _draw_specs(
    tracks: Sequence[Track], *, transformation: str, sets: int, images_per_set: int, rng: np.random.Generator
) -> list[list[tuple[int, int]]]:
    """Which (track, position in ``track.frames``) each set is made of; at most ``sets`` sets.

    No frame of a track is used twice: the copies of a crop in two sets always fire together, so
    one strong crop would fill several of a neuron's few firing places and be counted twice.

    * viewpoint: each track's frames shuffled and cut into groups of ``images_per_set``.
    * illumination, occlusion: one (track, frame) each (transformed later).
    * instance: one frame each of up to ``images_per_set`` different tracks of one class, the
      classes with two tracks or more taking turns.
    """
    n = images_per_set
    if transformation == "viewpoint":
        groups = []
        for t, track in enumerate(tracks):
            order = rng.permutation(len(track.frames))
            groups += [[(t, int(p)) for p in sorted(order[g * n : (g + 1) * n])] for g in range(len(order) // n)]
        if not groups:
            raise ValueError(f"viewpoint sets need a track with {n} usable frames or more; none has")
        return [groups[i] for i in rng.permutation(len(groups))[:sets]]
    if transformation in ("illumination", "occlusion"):
        pairs = [(t, p) for t, track in enumerate(tracks) for p in range(len(track.frames))]
        if not pairs:
            raise ValueError(f"{transformation} sets need at least one track; there is none")
        return [[pairs[i]] for i in rng.permutation(len(pairs))[:sets]]
    # instance: shuffled unused frames per track, taken one per set
    unused = [[int(p) for p in rng.permutation(len(track.frames))] for track in tracks]
    by_class: dict[int, list[int]] = defaultdict(list)
    for t, track in enumerate(tracks):
        by_class[track.class_id].append(t)
    specs: list[list[tuple[int, int]]] = []
    while len(specs) < sets:
        made = len(specs)
        for c in rng.permutation(sorted(by_class)).tolist():
            members = [t for t in by_class[c] if unused[t]]
            if len(members) < 2 or len(specs) == sets:
                continue
            chosen = rng.choice(members, size=min(n, len(members)), replace=False)
            specs.append([(int(t), unused[t].pop()) for t in chosen])
        if len(specs) == made:  # no class has two tracks with frames left
            break
    if not specs:
        raise ValueError("instance sets need two tracks of one class or more; none has (use more videos)")
    return specs


def build_sets(
    tracks: Sequence[Track],
    *,
    transformation: str,
    sets: int = 64,
    images_per_set: int = 8,
    image_size: int = 64,
    seed: int = 0,
) -> list[torch.Tensor]:
    """Image sets of one transformation from object tracks, deterministic given ``seed``.

    * ``viewpoint``: crops of one track at ``images_per_set`` frames (pose, scale, deformation
      and background change; the object stays the same).
    * ``illumination``: one crop under each of :data:`ILLUMINATIONS` (sets of that size).
    * ``occlusion``: one crop, unoccluded and with ``images_per_set - 1`` different occluders.
    * ``instance``: crops of up to ``images_per_set`` different objects of one class.

    Returns:
        At most ``sets`` tensors (n_j, 3, image_size, image_size) uint8: fewer when the tracks
        run out of unused frames (no frame is used twice).

    Raises:
        ValueError: unknown transformation, or tracks that cannot make its sets.
    """
    from vidssl.data.backends import open_video

    if transformation not in TRANSFORMATIONS:
        raise ValueError(f"unknown transformation '{transformation}'; choose from {', '.join(TRANSFORMATIONS)}")
    # One stream per transformation, so adding one never changes another's sets.
    rng = np.random.default_rng([seed, TRANSFORMATIONS.index(transformation)])
    specs = _draw_specs(tracks, transformation=transformation, sets=sets, images_per_set=images_per_set, rng=rng)
    wanted: dict[Path, set[int]] = defaultdict(set)
    for spec in specs:
        for t, p in spec:
            wanted[tracks[t].video].add(tracks[t].frames[p])
    decoded: dict[tuple[Path, int], np.ndarray] = {}
    for video, indices in wanted.items():
        reader = open_video(video)
        try:
            ordered = sorted(indices)
            decoded |= {(video, i): frame for i, frame in zip(ordered, reader.get_frames(ordered), strict=True)}
        finally:
            reader.close()
    crops = [
        [crop_object(decoded[tracks[t].video, tracks[t].frames[p]], tracks[t].boxes[p], size=image_size) for t, p in s]
        for s in specs
    ]
    if transformation == "illumination":
        # Every lighting change on all crops at once: (L, S, 3, H, W) -> S sets of L images.
        lit = torch.stack([light(torch.stack([c[0][0] for c in crops])) for light in ILLUMINATIONS])
        return list(lit.transpose(0, 1).unbind())
    if transformation == "occlusion":
        return [
            torch.stack([crop] + [occlude(crop, box, rng=rng) for _ in range(images_per_set - 1)])
            for ((crop, box),) in crops
        ]
    return [torch.stack([crop for crop, _ in group]) for group in crops]


# ------------------------------------------------------------------------------------------------
# The command: vidssl eval invariance


@dataclass(frozen=True)
class InvarianceConfig:
    """``vidssl eval invariance``: the invariance measure of Purushwalkam & Gupta 2020."""

    encoder: str = option("", "encoder: exported .safetensors, run folder, or random:NAME (e.g. random:resnet18)")
    data: str = option("", "synthetic dataset from 'vidssl synth' ('' makes a small one in OUT/synth)")
    out: str = option("runs/invariance", "output folder: results.json and invariance.png")
    transformations: tuple[str, ...] = option(TRANSFORMATIONS, "which to measure, e.g. viewpoint,occlusion")
    image_size: int = option(64, "object crops are resized to this square size")
    rate: float = option(0.01, "global firing rate G: each neuron fires on this fraction of the images")
    topk: tuple[int, ...] = option((10, 25), "report the mean over the k most invariant neurons, for each k")
    sets: int = option(64, "at most this many sets per transformation (fewer if the tracks run out of frames)")
    images_per_set: int = option(8, "images per set (illumination sets have one per lighting change: 8)")
    seed: int = option(0, "seed of the sets, the occluders and a random:NAME encoder")
    batch_size: int = option(64, "images per forward pass")
    device: str = option("auto", "cuda, cpu, or auto (CUDA when available)")
    layer: str | None = option(None, "measure this module's output (e.g. layer3), averaged over space; None: pooled")


def _transformation_names(cfg: InvarianceConfig) -> list[str]:
    # A bare `transformations=viewpoint,occlusion` arrives as one string (it is not a Python
    # literal), so items are split on commas: the form people type should simply work.
    names = [n.strip(" '\"()[]") for item in cfg.transformations for n in item.split(",")]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in TRANSFORMATIONS]
    if unknown or not names:
        raise ValueError(f"unknown transformation {unknown}; choose from {', '.join(TRANSFORMATIONS)}")
    return names


def _synthetic_data(cfg: InvarianceConfig) -> Path:
    """``cfg.data``, or a small synthetic set made once in ``OUT/synth`` (reused when complete)."""
    if cfg.data:
        return Path(cfg.data)
    import dataclasses

    from vidssl.data.synth import SynthConfig, generate

    root = Path(cfg.out) / "synth"
    # 12 videos of 2-3 objects over 5 classes: every class almost surely has two objects.
    synth = SynthConfig(out=str(root), num_videos=12, num_frames=32, seed=cfg.seed)
    record = root / "synth.json"
    if not record.exists() or json.loads(record.read_text())["config"] != dataclasses.asdict(synth):
        generate(root, synth, progress=False)
    return root


def _cell(value: float | int) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def format_table(results: Mapping[str, Mapping[str, float | int]], *, topk: Sequence[int]) -> str:
    """The per-transformation numbers of :func:`run_invariance` as an aligned text table."""
    columns = [f"top{k}" for k in topk] + [f"ratio_top{k}" for k in topk] + ["sets", "images", "neurons_scored"]
    width = max(len(name) for name in results)
    lines = [f"{'transformation':<{max(width, 14)}}  " + "  ".join(f"{c:>{max(len(c), 7)}}" for c in columns)]
    for name, row in results.items():
        cells = [f"{_cell(row[c]):>{max(len(c), 7)}}" for c in columns]
        lines.append(f"{name:<{max(width, 14)}}  " + "  ".join(cells))
    return "\n".join(lines)


def plot_invariance(
    results: Mapping[str, Mapping[str, float | int]], path: Path, *, topk: Sequence[int], label: str = ""
) -> None:
    """A grouped bar chart (PNG): transformations along x, one bar per k (mean L of the top-k
    neurons, on a 0-1 axis); ``label`` (e.g. the encoder) heads the subtitle. Drawn with PIL, so
    no plotting library is needed."""
    from PIL import Image, ImageDraw, ImageFont

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    width, height = 160 * len(results) + 120, 420
    left, right, top, bottom = 70, 20, 60, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    plot_h = height - top - bottom

    def y_of(value: float) -> float:
        return top + plot_h * (1 - value)

    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        draw.line([(left, y_of(tick)), (width - right, y_of(tick))], fill=(220, 220, 220))
        draw.text((left - 8, y_of(tick)), f"{tick:.2f}", fill="black", font=small, anchor="rm")
    draw.line([(left, top), (left, top + plot_h), (width - right, top + plot_h)], fill="black")
    draw.text((width / 2, 8), "Invariance (Purushwalkam & Gupta 2020)", fill="black", font=font, anchor="mt")
    subtitle = "mean local firing rate L of the top-k neurons" + (f" - {label}" if label else "")
    draw.text((width / 2, 28), subtitle, fill=(90, 90, 90), font=small, anchor="mt")
    group = (width - left - right) / len(results)
    bar = group * 0.7 / len(topk)
    for g, (name, row) in enumerate(results.items()):
        x0 = left + g * group + group * 0.15
        for b, k in enumerate(topk):
            value = row[f"top{k}"]
            xa = x0 + b * bar
            if isinstance(value, float) and not math.isnan(value):
                draw.rectangle([xa, y_of(value), xa + bar - 2, y_of(0)], fill=colours[b % len(colours)])
                draw.text((xa + bar / 2, y_of(value) - 3), f"{value:.2f}", fill="black", font=small, anchor="mb")
        draw.text((left + (g + 0.5) * group, top + plot_h + 8), name, fill="black", font=font, anchor="mt")
    for b, k in enumerate(topk):  # legend, top right
        x = width - right - 80 * (len(topk) - b)
        draw.rectangle([x, 44, x + 12, 54], fill=colours[b % len(colours)])
        draw.text((x + 16, 49), f"top-{k}", fill="black", font=small, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def run_invariance(cfg: InvarianceConfig) -> dict:
    """Measure ``cfg.encoder`` on sets built from ``cfg.data``; write ``OUT/results.json`` and
    ``OUT/invariance.png``.

    Returns:
        ``{transformation: {"top10", "top25", "ratio_top10", "ratio_top25", "sets", "images",
        "neurons_scored"}, ..., "settings": {every config key, "data", "device", "neurons",
        "images"}}`` (keys follow ``cfg.topk``); NaN (``null`` in the JSON) where no neuron fired.

    Raises:
        ValueError: an empty ``encoder``, an unknown transformation or layer, or data that
            cannot make the requested sets.
    """
    from vidssl.evaluation.encoders import resolve_encoder

    if not cfg.encoder:
        raise ValueError("eval invariance needs an encoder: vidssl eval invariance ENCODER (e.g. random:resnet18)")
    names = _transformation_names(cfg)
    if not cfg.topk or min(cfg.topk) < 1:
        raise ValueError(f"topk must list positive integers, got {cfg.topk}")
    if cfg.images_per_set < 2:
        raise ValueError(f"images_per_set must be 2 or more (L compares images of one set), got {cfg.images_per_set}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    data = _synthetic_data(cfg)
    tracks = tracks_from_synth(data)
    log.info("%d object tracks in %s", len(tracks), data)
    sets = {
        name: build_sets(
            tracks,
            transformation=name,
            sets=cfg.sets,
            images_per_set=cfg.images_per_set,
            image_size=cfg.image_size,
            seed=cfg.seed,
        )
        for name in names
    }
    encoder = resolve_encoder(cfg.encoder, seed=cfg.seed)
    features = sets_features(encoder, sets, batch_size=cfg.batch_size, device=device, layer=cfg.layer)
    scores = score_sets(features, rate=cfg.rate, topk=cfg.topk)
    settings = {
        **to_dict(cfg),
        "transformations": names,
        "data": str(data),
        "device": device,
        "neurons": features[names[0]][0].shape[1],
        "images": sum(row["images"] for row in scores.values()),
    }
    results: dict = {**scores, "settings": settings}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # NaN is not JSON: neurons that never fired are reported as null.
    plain = json.loads(json.dumps(results), parse_constant=lambda _: None)
    (out / "results.json").write_text(json.dumps(plain, indent=1) + "\n")
    plot_invariance(scores, out / "invariance.png", topk=cfg.topk, label=cfg.encoder)
    return results
