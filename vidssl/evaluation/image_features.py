"""Frozen-encoder features of an ``ImageFolder`` image set, extracted once and cached.

    features, labels, classes = extract_features(encoder, Path("data/val"), image_size=224, cache_dir=cache)

Images are read by ``torchvision.datasets.ImageFolder`` (``root/<class>/<image>``), resized so the
short side is ``image_size`` and centre-cropped (or, for an augmented *view*, randomly resized,
cropped and flipped), and go through the one feature source, :func:`vidssl.features.pooled_extractor`:
normalized with ImageNet statistics on the device, the encoder in eval mode, on CUDA when present
and under bf16 autocast there; with ``gray`` the Lab lightness a colorization encoder reads. The
pooled output is returned, or the global average of an intermediate module's output (``layer="layer3"``).

Extraction is the expensive part of every image evaluation, so its result is saved as a ``.pt``
file keyed by everything that changes it: the encoder's weights and configuration, the folder, its
file list with sizes and modification times, ``image_size``, ``layer``, the view, the numeric
precision and (when gray) the input. A second run with the same inputs loads the file and never runs the encoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from vidssl.config import option
from vidssl.data.transforms import center_crop, random_crop
from vidssl.device import resolve_device
from vidssl.features import Input, input_option, pooled_extractor, resolve_input
from vidssl.files import atomic_path
from vidssl.models.encoders import Encoder

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when extraction changes in a way the key does not capture


class ImageFolderImages(Dataset):
    """``ImageFolder`` images as uint8 tensors (3, image_size, image_size) with their class index.

    ``view=None`` gives the evaluation transform (short side to ``image_size``, centre crop).
    ``view=v`` gives augmented view ``v``: a random resized crop (area 0.2-1, as
    :func:`vidssl.data.transforms.random_crop`) and a horizontal flip, whose randomness is drawn
    from ``(seed, v, index)`` alone, so a view is the same whatever the number of workers and the
    order of reading, and can be cached like the plain features.
    """

    def __init__(self, folder: Path, *, image_size: int, view: int | None = None, seed: int = 0) -> None:
        self.images = torchvision.datasets.ImageFolder(str(folder))
        self.view = view
        self.seed = seed
        self.transform = center_crop(image_size) if view is None else random_crop(image_size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.images[index]
        pixels = TF.pil_to_tensor(image)  # (3, H, W) uint8
        if self.view is None:
            return self.transform(pixels), label
        # v2 transforms draw from the global RNG: seed a private copy of it for this image only.
        state = int(np.random.SeedSequence([self.seed, self.view, index]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(state)
            return self.transform(pixels), label


def weights_digest(encoder: Encoder) -> str:
    """SHA-256 of an encoder's class, configuration and every state_dict tensor (names, dtypes,
    shapes, bytes): equal digests mean equal features. The configuration counts because the same
    weights make a different network at another stride (dilated ResNets)."""
    digest = hashlib.sha256()
    digest.update(type(encoder).__qualname__.encode())
    digest.update(json.dumps(getattr(encoder, "config", None), sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _files_digest(folder: Path, samples: Sequence[tuple[str, int]]) -> str:
    """SHA-256 of the image list: relative path, class index, size and mtime of every file."""
    digest = hashlib.sha256()
    for path, label in samples:
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, folder)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def extract_features(
    encoder: Encoder,
    folder: Path,
    *,
    image_size: int = 64,
    batch_size: int = 256,
    device: str = "auto",
    layer: str | None = None,
    cache_dir: Path | None = None,
    view: int | None = None,
    seed: int = 0,
    workers: int = 4,
    progress: bool = True,
    gray: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Features of every image of an ImageFolder ``folder``, from a frozen ``encoder``.

    Args:
        encoder: maps normalized images (B, 3, S, S) to (B, D); it is put in eval mode for the
            extraction (its mode is restored afterwards) and moved to ``device`` (it stays there)
            (:func:`vidssl.features.pooled_extractor`).
        folder: ``folder/<class>/<image>``, read by ``torchvision.datasets.ImageFolder``.
        image_size: S; the short side is resized to S and the centre S x S kept.
        batch_size: images per forward pass.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, ...
        layer: name of a module of ``encoder`` (``"layer3"``; see ``encoder.named_modules()``)
            whose output is globally averaged instead of the encoder's own output.

    Raises:
        ValueError: ``layer`` names no module of the encoder.
        cache_dir: where the cache file goes; None disables the cache.
        view: None for the evaluation transform, else the index of a seeded augmented view
            (see :class:`ImageFolderImages`).
        seed: seed of the augmented views.
        workers: DataLoader worker processes (0 reads in this process).
        progress: show a progress bar.
        gray: feed the Lab-lightness input of a colorization encoder instead of RGB.

    Returns:
        ``features`` float32 (N, D) on the CPU, ``labels`` int64 (N,) indexing ``class_names``
        (ImageFolder's sorted class folder names), ``class_names``.
    """
    folder = Path(folder).resolve()
    dev = resolve_device(device)
    data = ImageFolderImages(folder, image_size=image_size, view=view, seed=seed)
    precision = "bf16" if dev.type == "cuda" else "fp32"  # bf16 features differ from fp32 ones
    cache_file = None
    if cache_dir is not None:
        key = json.dumps(
            {
                "version": CACHE_VERSION, "encoder": weights_digest(encoder), "folder": str(folder),
                "files": _files_digest(folder, data.images.samples), "image_size": image_size, "layer": layer,
                "view": view, "seed": seed if view is not None else None, "precision": precision,
                **({"input": "gray"} if gray else {}),  # RGB keys stay as before: old caches still hit
            },
            sort_keys=True,
        )
        cache_file = Path(cache_dir) / f"{folder.name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
        if cache_file.exists():
            cached = torch.load(cache_file, weights_only=True)
            log.info("features of %s from the cache %s", folder, cache_file)
            return cached["features"], cached["labels"], list(cached["class_names"])

    loader = DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=dev.type == "cuda"
    )
    features, labels = [], []
    with pooled_extractor(encoder, device=dev, layer=layer, gray=gray) as embed:
        desc = f"features {folder.name}" + (f" view {view}" if view is not None else "")
        for images, targets in tqdm(loader, desc=desc, unit="batch", disable=not progress):
            features.append(embed(images))
            labels.append(targets)
    result = (torch.cat(features), torch.cat(labels).long(), list(data.images.classes))
    if cache_file is not None:
        with atomic_path(cache_file) as tmp:  # a killed run leaves no torn cache
            torch.save({"features": result[0], "labels": result[1], "class_names": result[2]}, tmp)
    return result


def align_labels(labels: torch.Tensor, names: Sequence[str], reference: Sequence[str]) -> torch.Tensor:
    """Re-index ``labels`` (indices into ``names``) into ``reference``'s class order.

    ImageFolder numbers the class folders it finds, so a val folder lacking one class of train
    numbers the others differently; matching by name keeps the labels comparable.

    Raises:
        ValueError: a class of ``names`` that ``reference`` lacks (a classifier cannot name it).
    """
    missing = sorted(set(names) - set(reference))
    if missing:
        raise ValueError(f"classes absent from the training folder: {', '.join(missing)}")
    index = {name: i for i, name in enumerate(reference)}
    mapping = torch.tensor([index[name] for name in names], dtype=torch.long)
    return mapping[labels]


def per_class_recall(hits: torch.Tensor, y: torch.Tensor, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{class: {"val": n, "top1": recall}}`` of every class with a val image (the class order of
    ``classes``): the fraction of that class's rows that are hits.

    Args:
        hits: (M,) bool, whether each val row's prediction is right (top-1).
        y: (M,) true class indices into ``classes``.
        classes: the class names (train's order).
    """
    hits, y = hits.cpu().bool(), y.cpu().long()
    out = {}
    for c, name in enumerate(classes):
        mine = y == c
        if mine.any():
            out[name] = {"val": int(mine.sum()), "top1": hits[mine].float().mean().item()}
    return out


def balanced_accuracy(hits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-class accuracy (balanced accuracy): the mean over the classes present in ``y`` of
    each class's top-1 recall, so every class weighs the same however many val images it has.

    Args:
        hits: (M,) bool, whether each row's prediction is right.
        y: (M,) true class indices.
    """
    if y.numel() == 0:
        raise ValueError("accuracy of an empty set")
    hits, y = hits.cpu().bool(), y.cpu().long()
    recalls = [hits[y == c].float().mean().item() for c in y.unique()]
    return sum(recalls) / len(recalls)


def majority_baseline(y_train: torch.Tensor, y_val: torch.Tensor, classes: Sequence[str]) -> dict[str, float | str]:
    """What a probe scores without looking at the images, the floor to read any figure against.

    Keys: ``majority`` (top-1 of always naming train's most frequent class: that class's share of
    val; among classes tied in train, as a per-class cap makes them, the one val holds most of, then
    the first in ``classes``: the floor is never flattered by a tie), ``majority_class``, ``majority_balanced``
    (its mean per-class accuracy: 1 / the number of val classes when val has that class, else 0),
    ``largest_val_class`` and ``largest_val_share`` (the best any constant guess can score, the
    val share of val's most frequent class).
    """
    y_train, y_val = y_train.cpu().long(), y_val.cpu().long()
    k = len(classes)
    train_counts = torch.bincount(y_train, minlength=k)
    val_counts = torch.bincount(y_val, minlength=k)
    n = max(len(y_val), 1)
    tied = (train_counts == train_counts.max()).nonzero().flatten()
    top = int(tied[val_counts[tied].argmax()])  # argmax: the first of equal ones
    largest = int(val_counts.argmax())
    present = int((val_counts > 0).sum())
    return {"majority": val_counts[top].item() / n, "majority_class": classes[top],
            "majority_balanced": (1 / present) if val_counts[top] > 0 else 0.0,
            "largest_val_class": classes[largest], "largest_val_share": val_counts[largest].item() / n}


def majority_line(floor: dict[str, float | str]) -> str:
    """The printed words of :func:`majority_baseline`'s figures."""
    return (f"majority baseline (always {floor['majority_class']!r}) top-1 {100 * floor['majority']:.1f}%, balanced "
            f"{100 * floor['majority_balanced']:.1f}%; largest val class {floor['largest_val_class']!r} "
            f"{100 * floor['largest_val_share']:.1f}%")


DEFAULT_IMAGE_ROOT = Path("runs/eval/synth_images")
"""Where ``data=""`` puts the synthetic image set (:func:`vidssl.data.synth_images.make_image_folder`)."""


def resolve_image_root(data: str, *, progress: bool = True) -> Path:
    """The image set an evaluation runs on: ``data`` (a folder holding ``train/`` and ``val/`` in
    ImageFolder layout), or, when ``data`` is empty, the synthetic set at :data:`DEFAULT_IMAGE_ROOT`
    (made on first use, reused afterwards).

    Raises:
        FileNotFoundError: ``data`` lacks ``train/`` or ``val/``.
    """
    if not data:
        from vidssl.data.synth_images import make_image_folder

        return make_image_folder(DEFAULT_IMAGE_ROOT, progress=progress)
    root = Path(data).expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"{root / split}: expected {root}/train/<class>/<image>, same for val/")
    return root


@dataclass(frozen=True)
class FeatureEvalConfig:
    """Settings every image-task evaluation shares: which encoder, which images, how features are
    extracted. ``vidssl eval linear`` and ``vidssl eval knn`` add their own on top."""

    encoder: str = option("random:resnet18", "run folder, exported .safetensors, or random:NAME (a baseline)")
    data: str = option("", "folder with train/<class>/* and val/<class>/* ('' = synthetic, runs/eval/synth_images)")
    image_size: int = option(64, "resize short side and centre-crop to this (224 for ImageNet-like images)")
    batch_size: int = option(256, "images per forward pass when extracting features")
    layer: str = option("", "module whose output is average-pooled, e.g. layer3 ('' = the encoder's output)")
    device: str = option("auto", "auto (CUDA when available) | cpu | cuda:N")
    workers: int = option(4, "image-reading worker processes")
    cache_dir: str = option("", "feature cache (default $VIDSSL_CACHE_DIR/features or ~/.cache/vidssl/features)")
    seed: int = option(0, "seed of a random:NAME encoder (and of sgd's augmented views and steps)")
    input: Input = input_option()

    def __post_init__(self) -> None:  # resolved here, so results.json records what the encoder was given
        object.__setattr__(self, "input", resolve_input(self.input, self.encoder))


def feature_cache_dir(cache_dir: str) -> Path:
    """``cache_dir``, or ``features/`` under the index's cache folder (``$VIDSSL_CACHE_DIR``, ...)."""
    from vidssl.data.index import default_cache_dir

    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir() / "features"


@dataclass
class SplitFeatures:
    """Train and val features of one encoder on one ImageFolder root (val labels aligned to train's)."""

    encoder: Encoder
    root: Path
    x_train: torch.Tensor  # (N, D) float32
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor  # (M, D) float32
    y_val: torch.Tensor  # (M,) int64, in train's class indexing
    classes: list[str]
    extract_kwargs: dict  # what extract_features was called with, for further views


def split_features(cfg: FeatureEvalConfig) -> SplitFeatures:
    """Resolve ``cfg.encoder`` and ``cfg.data`` and extract (or load cached) train and val features."""
    from vidssl.features import resolve_encoder

    root = resolve_image_root(cfg.data)
    encoder = resolve_encoder(cfg.encoder, seed=cfg.seed)
    kwargs = dict(
        image_size=cfg.image_size, batch_size=cfg.batch_size, device=cfg.device, layer=cfg.layer or None,
        cache_dir=feature_cache_dir(cfg.cache_dir), workers=cfg.workers,
        gray=cfg.input == "gray",
    )
    x_train, y_train, classes = extract_features(encoder, root / "train", **kwargs)
    x_val, y_val, val_classes = extract_features(encoder, root / "val", **kwargs)
    return SplitFeatures(encoder, root, x_train, y_train, x_val, align_labels(y_val, val_classes, classes),
                         list(classes), kwargs)
