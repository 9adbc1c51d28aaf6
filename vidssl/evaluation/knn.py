"""Weighted k-nearest-neighbour classification of frozen encoder features (the DINO protocol).

    vidssl eval knn encoder=runs/fti data=~/imagenet-100 image_size=224

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO, ICCV 2021,
arXiv:2104.14294), following Wu et al. 2018 (arXiv:1805.01978): features are L2-normalized, every
val image retrieves its ``k`` most cosine-similar training images, neighbour ``j`` votes for its
class with weight ``exp(sim_j / T)`` (T = 0.07), and the class with the largest summed vote wins.
k = 20 and 200 as in DINO. No parameter is fitted, so it measures the feature space itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from vidssl.config import option, to_dict
from vidssl.device import resolve_device
from vidssl.evaluation.image_features import (
    FeatureEvalConfig,
    balanced_accuracy,
    majority_baseline,
    majority_line,
    per_class_recall,
    split_features,
)
from vidssl.evaluation.results import save_results


def knn_scores(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    *,
    k: int,
    temperature: float = 0.07,
    num_classes: int,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Class votes (M, num_classes) of the DINO weighted kNN for every test row.

    Args:
        train_feats: (N, D) features of the labeled set (any scale: rows are L2-normalized here).
        train_labels: (N,) int64 class indices.
        test_feats: (M, D) features to classify.
        k: neighbours per test row; more than N counts as N.
        temperature: T in the vote weight ``exp(cosine / T)``.
        num_classes: C, the width of the result.
        chunk_size: test rows per similarity block; memory is ``chunk_size x N`` similarities, so
            any number of test rows fits (DINO chunks the same way).

    Returns:
        (M, C) float32 summed vote weights, on ``train_feats``' device.
    """
    device = train_feats.device
    train = F.normalize(train_feats.float(), dim=1)
    labels = train_labels.to(device)
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, test_feats.shape[0], chunk_size):
        query = F.normalize(test_feats[start : start + chunk_size].to(device).float(), dim=1)
        similarity, neighbours = (query @ train.T).topk(k, dim=1)  # (m, k) each, most similar first
        votes = torch.zeros(query.shape[0], num_classes, device=device)
        votes.scatter_add_(1, labels[neighbours], (similarity / temperature).exp())
        scores.append(votes)
    return torch.cat(scores) if scores else torch.zeros(0, num_classes, device=device)


def knn_accuracy(votes: torch.Tensor, y: torch.Tensor, *, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose true class is among the ``k`` classes with the most votes, counting
    only classes that received a vote.

    With k neighbours at most k classes get a vote; the others tie at 0, and ranking them would
    make a zero-vote true class a "hit" by tie order (all 20 neighbours of one class would give
    top-5 credit to 4 classes nobody voted for). DINO's ``knn_classifier`` avoids the same
    artefact for k < 5 by counting top-``min(5, k)``; here a class needs a vote at any k.

    Args:
        votes: (M, C) summed vote weights from :func:`knn_scores` (0 = no neighbour of that class).
        y: (M,) true class indices.
        ks: the k values of top-k.

    Returns:
        ``{k: accuracy in [0, 1]}``; a true class tied with another counts at the lower rank.
    """
    if votes.shape[0] == 0:
        raise ValueError("accuracy of an empty set")
    return {k: knn_hits(votes, y, k=k).float().mean().item() for k in ks}


def knn_hits(votes: torch.Tensor, y: torch.Tensor, *, k: int = 1) -> torch.Tensor:
    """(M,) bool: whether each row's true class is among its ``k`` most voted classes, as
    :func:`knn_accuracy` counts it (a class needs a vote; a tie counts at the lower rank)."""
    y = y.to(votes.device).long()[:, None]
    true = votes.gather(1, y)  # (M, 1)
    # Rank of the true class counting every class with at least its votes, itself included: a
    # tie is never a hit (tie order would be arbitrary; exact ties of exp-weighted votes arise
    # only from degenerate features, where no credit is the honest answer).
    rank = (votes >= true).sum(dim=1)
    return (rank <= k) & (true[:, 0] > 0)


@dataclass(frozen=True)
class KnnEvalConfig(FeatureEvalConfig):
    """``vidssl eval knn``: every setting of the protocol, recorded in ``results.json``."""

    out: str = option("runs/eval/knn", "results folder (results.json)")
    ks: tuple[int, ...] = option((20, 200), "numbers of neighbours (DINO: 20, 200); each is clipped to the train size")
    temperature: float = option(0.07, "T in the vote weight exp(cosine / T)")


def run_knn(cfg: KnnEvalConfig) -> dict:
    """Classify ``cfg.data``/val by weighted kNN among ``cfg.data``/train, for every k in ``cfg.ks``.

    Writes ``cfg.out/results.json`` and prints one summary line. Keys: ``by_k`` (``{"20": {"top1",
    "top5", "top1_balanced", "k"}, ...}``, fractions in [0, 1], ``k`` the number of neighbours
    actually used), ``top1``, ``top5`` and ``top1_balanced`` of the first k (20 by default, DINO's
    headline figure), ``per_class`` (``{class: {"val": n, "top1": recall}}`` at the first k), the
    constant-guess floor of :func:`~vidssl.evaluation.image_features.majority_baseline`
    (``majority``, ``majority_class``, ``majority_balanced``, ``largest_val_class``,
    ``largest_val_share``), ``temperature``, ``num_train``, ``num_val``, ``num_classes``,
    ``feature_dim``, ``data``, ``seconds``, ``config``.

    ``top1_balanced`` is the mean per-class accuracy (each val class's top-1 recall, averaged over
    the val classes): on an unbalanced set, plain top-1 rewards naming the largest class, and
    ``majority`` is what that alone scores.
    """
    if not cfg.ks or min(cfg.ks) < 1:
        raise ValueError(f"ks must hold positive numbers of neighbours, got {cfg.ks}")
    started = time.perf_counter()
    split = split_features(cfg)
    x_train, y_train, x_val, y_val, classes = split.x_train, split.y_train, split.x_val, split.y_val, split.classes
    device = resolve_device(cfg.device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    by_k, per_class = {}, {}
    for k in cfg.ks:
        votes = knn_scores(x_train, y_train, x_val, k=k, temperature=cfg.temperature, num_classes=len(classes))
        accuracy = knn_accuracy(votes, y_val, ks=(1, 5))
        hits = knn_hits(votes, y_val)
        by_k[str(k)] = {"top1": accuracy[1], "top5": accuracy[5], "top1_balanced": balanced_accuracy(hits, y_val),
                        "k": min(k, len(y_train))}
        if k == cfg.ks[0]:
            per_class = per_class_recall(hits, y_val, classes)
    first = by_k[str(cfg.ks[0])]
    floor = majority_baseline(y_train, y_val, classes)
    results = {
        "top1": first["top1"],
        "top5": first["top5"],
        "top1_balanced": first["top1_balanced"],
        **floor,
        "per_class": per_class,
        "by_k": by_k,
        "temperature": cfg.temperature,
        "num_train": len(y_train),
        "num_val": len(y_val),
        "num_classes": len(classes),
        "feature_dim": x_train.shape[1],
        "data": str(split.root),
        "seconds": round(time.perf_counter() - started, 2),
        "config": to_dict(cfg),
    }
    path = save_results(Path(cfg.out), results)
    figures = ", ".join(f"k={k} top-1 {100 * r['top1']:.1f}% (balanced {100 * r['top1_balanced']:.1f}%)"
                        for k, r in by_k.items())
    print(f"knn (T={cfg.temperature:g}): {figures} on {len(y_val)} val images, {len(classes)} classes; "
          f"{majority_line(floor)} -> {path}")
    return results
