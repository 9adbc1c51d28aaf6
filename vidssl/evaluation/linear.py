"""Linear evaluation: a multinomial logistic regression on frozen encoder features.

    vidssl eval linear encoder=runs/fti data=~/imagenet-100 image_size=224

The linear evaluation of Kolesnikov et al., "Revisiting Self-Supervised Visual Representation
Learning" (CVPR 2019, arXiv:1901.09005): features of the frozen encoder (pooled, or from an
intermediate layer), a multinomial logistic regression on them, its regularisation chosen on a
held-out part of the *training* set, top-1 / top-5 accuracy on the val folder. They show that SGD
needs hundreds of epochs to converge on this problem; ``solver=lbfgs`` instead solves it to
convergence with full-batch L-BFGS on cached features, as Kornblith et al. do
("Do Better ImageNet Models Transfer Better?", CVPR 2019, arXiv:1805.08974; SimCLR's transfer
evaluation follows them), and refits on the whole training set with the chosen L2 strength.
``solver=sgd`` is the usual protocol of MoCo, SimCLR and DINO (He et al. 2020, arXiv:1911.05722):
SGD with momentum on randomly cropped and flipped training images, here with a cosine schedule
(see :func:`fit_logistic_sgd` for how the augmentation is made affordable).

Both solvers minimise the same objective, so ``weight_decay`` means the same thing in both::

    mean_i cross_entropy(W z_i + b, y_i) + weight_decay / 2 * ||W||^2      (b is not penalised)

where ``z`` are the features standardized with the training mean and standard deviation. Without
standardization the best L2 strength would depend on each encoder's feature scale (a ResNet-50's
pooled features and its layer3 differ by orders of magnitude), and one sweep grid could not serve
both; standardizing also conditions L-BFGS. The returned ``(W, b)`` have the standardization
folded in, so ``logits = x @ W.T + b`` applies to raw features.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from vidssl.config import option, to_dict
from vidssl.device import resolve_device
from vidssl.evaluation.image_features import (
    FeatureEvalConfig,
    balanced_accuracy,
    extract_features,
    majority_baseline,
    majority_line,
    per_class_recall,
    split_features,
)
from vidssl.evaluation.results import save_results


def _standardization(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) standard deviation over rows of (N, D); constant features get std 1,
    as scikit-learn's StandardScaler does, so they stay 0 instead of becoming NaN."""
    mean = x.mean(dim=0)
    std = x.std(dim=0, correction=0)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))


def _fold(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) acting on standardized features -> the same map on raw ones:
    W z + b = W (x - m) / s + b = (W / s) x + (b - (W / s) m)."""
    raw = weight / std
    return raw, bias - raw @ mean


def _num_classes(y: torch.Tensor, num_classes: int | None) -> int:
    return int(y.max()) + 1 if num_classes is None else num_classes


def fit_logistic_lbfgs(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    weight_decay: float,
    max_iter: int = 1000,
    num_classes: int | None = None,
    device: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression fitted full-batch with L-BFGS (strong Wolfe line search).

    Minimises the objective of the module docstring on standardized ``x_train``; the problem is
    strictly convex for ``weight_decay > 0``, so the result does not depend on the start (zeros).
    Computes in float64 when ``x_train`` is float64, else float32.

    Args:
        x_train: (N, D) features.
        y_train: (N,) int64 class indices.
        weight_decay: L2 strength lambda on W (bias unpenalised).
        max_iter: L-BFGS iterations at most (it stops earlier once the gradient vanishes).
        num_classes: K; default ``y_train.max() + 1``.
        device: where to fit (``"auto"``: CUDA when available); N x D must fit there.

    Returns:
        ``W`` (K, D) and ``b`` (K,) on the CPU, for raw features: ``logits = x @ W.T + b``.
        In scikit-learn's terms this is ``LogisticRegression(C=1 / (weight_decay * N))`` on
        ``StandardScaler``-ed features (its objective is ``C * sum_i CE_i + ||W||^2 / 2``).
    """
    dev = resolve_device(device)
    dtype = torch.float64 if x_train.dtype == torch.float64 else torch.float32
    x = x_train.to(dev, dtype)
    y = y_train.to(dev, torch.long)
    mean, std = _standardization(x)
    z = (x - mean) / std
    del x  # N x D may be most of the device's memory: keep one copy
    k = _num_classes(y_train, num_classes)
    weight = torch.zeros(k, z.shape[1], dtype=dtype, device=dev, requires_grad=True)
    bias = torch.zeros(k, dtype=dtype, device=dev, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)  # one step runs up to max_iter L-BFGS iterations
    raw_weight, raw_bias = _fold(weight.detach(), bias.detach(), mean, std)
    return raw_weight.cpu(), raw_bias.cpu()


def fit_logistic_sgd(
    x_views: torch.Tensor,
    y_train: torch.Tensor,
    *,
    weight_decay: float,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    batch_size: int = 256,
    seed: int = 0,
    num_classes: int | None = None,
    device: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same classifier trained by SGD with momentum and a cosine learning-rate schedule, on
    features of augmented training images.

    Design: the usual SGD protocol re-augments every training image every epoch, which means one
    encoder pass over the training set per epoch. Here ``V`` augmented views of every image (a
    random resized crop and flip each, seeded; see :class:`vidssl.evaluation.image_features.ImageFolderImages`)
    are extracted once and cached like the plain features, and every time an image is visited one
    of its ``V`` views is drawn at random. With V around 10 this keeps most of the augmentation's
    regularising effect at a tenth of the encoder passes or less.

    Args:
        x_views: (V, N, D) features of V views of the N training images (or (N, D): one view).
        y_train: (N,) int64 labels.
        weight_decay: L2 strength on W, as in :func:`fit_logistic_lbfgs`.
        epochs: passes over the N images; the learning rate follows a cosine from ``lr`` to 0.
        lr, momentum, batch_size: SGD settings.
        seed: seeds the order of images and the choice of views.
        num_classes: K; default ``y_train.max() + 1``.
        device: where to train.

    Returns:
        ``W`` (K, D), ``b`` (K,) on the CPU for raw features, standardized with statistics of all views.
    """
    dev = resolve_device(device)
    views = (x_views if x_views.ndim == 3 else x_views[None]).to(dev, torch.float32)
    num_views, n, dim = views.shape
    mean, std = _standardization(views.reshape(-1, dim))
    views = (views - mean) / std
    y = y_train.to(dev, torch.long)
    k = _num_classes(y_train, num_classes)
    weight = torch.zeros(k, dim, device=dev, requires_grad=True)
    bias = torch.zeros(k, device=dev, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr, momentum=momentum)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(dev)
        chosen = torch.randint(num_views, (n,), generator=generator).to(dev)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(views[chosen[index], index] @ weight.T + bias, y[index])
            loss = loss + 0.5 * weight_decay * weight.pow(2).sum()  # the L-BFGS objective, exactly
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    raw_weight, raw_bias = _fold(weight.detach(), bias.detach(), mean, std)
    return raw_weight.cpu(), raw_bias.cpu()


def accuracy_topk(logits: torch.Tensor, y: torch.Tensor, *, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose true class is among the ``k`` highest scores, for each ``k``.

    Args:
        logits: (N, K) class scores (any monotone scores: logits, probabilities, kNN votes).
        y: (N,) true class indices.
        ks: the k values; a k above K counts as K (then every row is right).

    Returns:
        ``{k: accuracy in [0, 1]}``. Ties between scores are broken by ``torch.topk``.
    """
    if logits.shape[0] == 0:
        raise ValueError("accuracy of an empty set")
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (N, kmax), best first
    hit = (top == y[:, None].to(top.device)).cumsum(dim=1).clamp(max=1)  # hit[:, j]: within top j+1
    return {k: hit[:, min(k, kmax) - 1].float().mean().item() for k in ks}


def holdout_split(labels: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, held-out indices): the last ``ceil(fraction * n_c)`` images of every class
    ``c`` (in ImageFolder's order, sorted by file name) are held out, one image at least, and
    classes with a single image are not held out.

    The *last* images rather than random ones: ImageFolder lists files sorted by name, and image
    sets cut from videos name files after their video, so the tail of a class comes from other
    videos than its head; random picks would hold out near-copies of training frames and favour
    the weakest regularisation. For ordinary image sets file order is as good as random.
    """
    held = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        if len(members) >= 2:
            count = min(len(members) - 1, max(1, math.ceil(fraction * len(members))))
            held.append(members[-count:])
    held_index = torch.cat(held) if held else torch.zeros(0, dtype=torch.long)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_index] = False
    return mask.nonzero().flatten(), held_index


@dataclass(frozen=True)
class LinearEvalConfig(FeatureEvalConfig):
    """``vidssl eval linear``: every setting of the protocol, recorded in ``results.json``."""

    out: str = option("runs/eval/linear", "results folder (results.json)")
    solver: Literal["lbfgs", "sgd"] = option(
        "lbfgs", "lbfgs (full batch, to convergence) | sgd (momentum, cosine, augmented views)"
    )
    weight_decay: float | None = option(None, "L2 strength; None = the best of weight_decays on held-out train images")
    weight_decays: tuple[float, ...] = option((1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), "the L2 sweep grid")
    holdout: float = option(0.2, "fraction of each train class held out to choose the L2 strength")
    max_iter: int = option(1000, "L-BFGS iterations at most")
    epochs: int = option(100, "sgd: epochs")
    lr: float = option(0.1, "sgd: initial learning rate (cosine to 0)")
    views: int = option(10, "sgd: augmented views of each train image, extracted once and cached")


def run_linear(cfg: LinearEvalConfig) -> dict:
    """Fit the linear classifier on ``cfg.data``/train features and score it on ``cfg.data``/val.

    Writes ``cfg.out/results.json`` and prints one summary line. Keys: ``top1``, ``top5``
    (fractions in [0, 1]; top-5 counts as top-K when there are K < 5 classes), ``top1_balanced``
    (mean per-class accuracy: each val class's top-1 recall, averaged over the val classes),
    ``per_class`` (``{class: {"val": n, "top1": recall}}``), the constant-guess floor of
    :func:`~vidssl.evaluation.image_features.majority_baseline` (``majority``, ``majority_class``,
    ``majority_balanced``, ``largest_val_class``, ``largest_val_share``), ``weight_decay`` (the one
    used), ``sweep`` (held-out top-1 for each candidate when it was chosen), ``solver``,
    ``num_train``, ``num_val``, ``num_classes``, ``feature_dim``, ``data``, ``seconds`` and
    ``config`` (every key of ``cfg``). The L2 strength is still chosen by held-out top-1.
    """
    started = time.perf_counter()
    split = split_features(cfg)
    encoder, root, common, classes = split.encoder, split.root, split.extract_kwargs, split.classes
    x_train, y_train, x_val, y_val = split.x_train, split.y_train, split.x_val, split.y_val
    k = len(classes)
    if cfg.solver == "sgd":
        x_views = torch.stack(
            [extract_features(encoder, root / "train", view=v, seed=cfg.seed, **common)[0] for v in range(cfg.views)]
        )

    def fit(index: torch.Tensor, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
        if cfg.solver == "lbfgs":
            return fit_logistic_lbfgs(
                x_train[index], y_train[index], weight_decay=weight_decay, max_iter=cfg.max_iter, num_classes=k,
                device=cfg.device,
            )
        return fit_logistic_sgd(
            x_views[:, index], y_train[index], weight_decay=weight_decay, epochs=cfg.epochs, lr=cfg.lr,
            seed=cfg.seed, num_classes=k, device=cfg.device,
        )

    sweep: list[dict[str, float]] = []
    weight_decay = cfg.weight_decay
    if weight_decay is None:
        fit_index, held_index = holdout_split(y_train, cfg.holdout)
        if len(held_index) == 0:
            raise ValueError("too few training images to hold any out: set weight_decay=VALUE")
        for candidate in cfg.weight_decays:
            weight, bias = fit(fit_index, candidate)
            score = accuracy_topk(x_train[held_index] @ weight.T + bias, y_train[held_index], ks=(1,))[1]
            sweep.append({"weight_decay": candidate, "holdout_top1": score})
        # The strongest regularisation among the best: held-out sets are small and ties common.
        best = max(s["holdout_top1"] for s in sweep)
        weight_decay = max(s["weight_decay"] for s in sweep if s["holdout_top1"] == best)
    weight, bias = fit(torch.arange(len(y_train)), weight_decay)
    logits = x_val @ weight.T + bias
    accuracy = accuracy_topk(logits, y_val, ks=(1, 5))
    hits = logits.topk(1, dim=1).indices[:, 0] == y_val.to(logits.device)  # as accuracy_topk counts top-1
    balanced = balanced_accuracy(hits, y_val)
    floor = majority_baseline(y_train, y_val, classes)
    results = {
        "top1": accuracy[1],
        "top5": accuracy[5],
        "top1_balanced": balanced,
        **floor,
        "per_class": per_class_recall(hits, y_val, classes),
        "solver": cfg.solver,
        "weight_decay": weight_decay,
        "sweep": sweep,
        "num_train": len(y_train),
        "num_val": len(y_val),
        "num_classes": k,
        "feature_dim": x_train.shape[1],
        "data": str(root),
        "seconds": round(time.perf_counter() - started, 2),
        "config": to_dict(cfg),
    }
    path = save_results(Path(cfg.out), results)
    print(
        f"linear {cfg.solver} (weight_decay={weight_decay:g}): top-1 {100 * accuracy[1]:.1f}% (balanced "
        f"{100 * balanced:.1f}%), top-5 {100 * accuracy[5]:.1f}% on {len(y_val)} val images, {k} classes; "
        f"{majority_line(floor)} -> {path}"
    )
    return results
