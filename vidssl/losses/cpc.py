"""Contrastive predictive coding's InfoNCE as a pure function.

CPC (van den Oord et al., 2018, arXiv:1807.03748) scores a prediction ``W_k c_t`` of the future
encoding ``z_{t+k}`` by a dot product and asks it to pick the true future among candidates: every
encoding of every sequence of the (global) batch at every time step. Dense predictive coding (Han
et al., 2019, arXiv:1909.04656) does the same per position of a feature grid, every (sequence,
time, position) being a candidate.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from vidssl.distributed import all_gather_with_grad, rank, world_size


class CPCLoss(NamedTuple):
    """``loss``: scalar mean cross-entropy; ``accuracy``: scalar (no gradient), the share of
    predictions whose highest score is their true future (the positive)."""

    loss: torch.Tensor
    accuracy: torch.Tensor


def cpc_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float = 1.0,
    gather: bool = True,
    max_scores: int = 2**26,
) -> CPCLoss:
    """InfoNCE of future predictions against every encoding of the batch (CPC / DPC).

    Args:
        pred: (B, P, K, D) predictions of P start times for offsets k = 1..K, or dense
            (B, P, K, D, H, W). Start time p (0-based) is ``t_p = T - K - P + p``: the last P
            times that leave K steps to predict, so ``P = T - K`` predicts from every context
            (CPC) and ``P = 1`` from the last one only (DPC). ``pred[:, p, k - 1]`` predicts
            ``target[:, t_p + k]``.
        target: (B, T, D) encodings z_1..z_T, or dense (B, T, D, H, W).
        temperature: scores are ``<pred, z> / temperature``; neither vector is normalized
            (CPC's log-bilinear score ``exp(z^T W_k c_t)`` is temperature 1).
        gather: take the candidates from every DDP rank (every rank must pass the same shapes),
            with gradients flowing back to each rank's own slice (as :func:`info_nce` does), so
            the number of negatives grows with the number of processes.
        max_scores: the score matrix is built this many entries at a time (rows of predictions
            against all candidates), each block recomputed in the backward pass instead of kept:
            dense mode at 224 px would otherwise hold B*P*K*H*W x world*B*T*H*W floats.

    Returns:
        :class:`CPCLoss`: the mean over all B*P*K(*H*W) predictions of
        ``-log softmax(scores)[positive]`` over the world*B*T(*H*W) candidates (same sequence's
        other steps and positions, other sequences' every step and position), and the top-1
        accuracy of picking the positive.
    """
    dense = pred.ndim == 6
    if pred.ndim not in (4, 6) or target.ndim != pred.ndim - 1:
        raise ValueError(f"expected pred (B, P, K, D[, H, W]) and target (B, T, D[, H, W]), got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if dense:  # channels last, then every (b, ..., h, w) is a row of D
        pred = pred.permute(0, 1, 2, 4, 5, 3)
        target = target.permute(0, 1, 3, 4, 2)
    batch, starts, steps, dim = pred.shape[0], pred.shape[1], pred.shape[2], pred.shape[-1]
    length = target.shape[1]
    cells = target.shape[2:-1].numel()  # H*W, 1 when pooled
    if target.shape[0] != batch or target.shape[-1] != dim or pred.shape[3:-1] != target.shape[2:-1]:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} do not match")
    if starts + steps > length:
        raise ValueError(f"P + K = {starts} + {steps} start times and offsets do not fit in T = {length} steps")

    # Index of each prediction's positive among this rank's B*T*H*W candidates.
    b = torch.arange(batch, device=pred.device).view(-1, 1, 1, 1)
    t = (length - steps - starts + torch.arange(starts, device=pred.device)).view(1, -1, 1, 1)
    k = torch.arange(1, steps + 1, device=pred.device).view(1, 1, -1, 1)
    cell = torch.arange(cells, device=pred.device).view(1, 1, 1, -1)
    positive = ((b * length + t + k) * cells + cell).reshape(-1)

    rows = pred.reshape(-1, dim).float()
    candidates = target.reshape(-1, dim).float()
    if gather and world_size() > 1:
        positive = positive + rank() * len(candidates)
        candidates = all_gather_with_grad(candidates)

    chunk = max(1, max_scores // len(candidates))
    if chunk >= len(rows):
        loss_sum, correct = _block(rows, candidates, positive, temperature)
    else:  # recompute each block's scores in backward: memory O(chunk x candidates)
        total, hits = [], []
        for start in range(0, len(rows), chunk):
            part = slice(start, start + chunk)
            s, c = checkpoint(_block, rows[part], candidates, positive[part], temperature, use_reentrant=False)
            total.append(s)
            hits.append(c)
        loss_sum, correct = torch.stack(total).sum(), torch.stack(hits).sum()
    return CPCLoss(loss_sum / len(rows), correct.float() / len(rows))


def _block(rows: torch.Tensor, candidates: torch.Tensor, positive: torch.Tensor,
           temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and number of correct top-1 picks of (N, D) rows against (M, D).

    In float32 even under autocast: unnormalized scores reach the hundreds, where bf16 keeps
    less than one unit of precision."""
    with torch.autocast(rows.device.type, enabled=False):
        scores = rows.float() @ candidates.float().T / temperature
        correct = (scores.detach().argmax(dim=1) == positive).sum()
        return F.cross_entropy(scores, positive, reduction="sum"), correct
