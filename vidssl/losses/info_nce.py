"""InfoNCE losses as pure functions.

One function serves frame pairs, track pairs and multi-crop: positives are given by ids (rows
with the same id are positives of each other), so the caller decides what a positive is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidssl.distributed import all_gather_no_grad, all_gather_with_grad, rank, world_size


def info_nce(z: torch.Tensor, ids: torch.Tensor, *, temperature: float = 0.1, gather: bool = True) -> torch.Tensor:
    """NT-Xent (SimCLR, 2020, arXiv:2002.05709) with positives given by ids.

    Args:
        z: (N, D) embeddings of this rank (normalized here).
        ids: (N,) int in [0, N); rows sharing an id are positives, every other row is a
            negative. A frame pair is ``ids = [0, 1, ..., B-1, 0, 1, ..., B-1]``.
        temperature: softmax temperature.
        gather: take negatives from every DDP rank (every rank must pass the same N).

    Returns:
        Scalar mean over anchors of ``-mean_pos log(exp(s_pos) / sum_{all but self} exp(s))``;
        with one positive per row this is exactly NT-Xent (the multi-positive form is
        Khosla et al. 2020's SupCon-out).
    """
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    distributed = gather and world_size() > 1
    start = rank() * n if distributed else 0
    ids = ids.to(z.device) + start  # ids of different ranks never collide
    z_all = all_gather_with_grad(z) if distributed else z
    ids_all = all_gather_no_grad(ids) if distributed else ids
    logits = z @ z_all.T / temperature  # (N, N_all)
    rows = torch.arange(n, device=z.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, start + rows] = True
    positive = (ids[:, None] == ids_all[None, :]) & ~self_mask
    if not positive.any(dim=1).all():
        raise ValueError("every row needs at least one positive (another row with the same id)")
    log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    return -(log_prob.masked_fill(~positive, 0).sum(1) / positive.sum(1)).mean()


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, *, temperature: float = 0.2) -> torch.Tensor:
    """MoCo InfoNCE (He et al. 2020, arXiv:1911.05722; v2: arXiv:2003.04297).

    Args:
        q: (N, D) queries from the online encoder.
        k: (N, D) keys from the momentum encoder (no gradient), positives of ``q`` row by row.
        queue: (K, D) negatives: keys of earlier batches.

    Returns:
        Scalar cross-entropy of picking the positive key among it and the queue.
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1).detach()
    positive = (q * k).sum(1, keepdim=True)
    negative = q @ F.normalize(queue.float(), dim=1).T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
