"""Losses between predictions and stop-gradient targets (BYOL, SimSiam), and the collapse monitor.

Both losses compare L2-normalized vectors row by row and never send a gradient into the target:
the stop-gradient is part of the loss, so a caller cannot forget it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's ``D(p, stopgrad(z))`` (SimSiam, 2021, arXiv:2011.10566, Eq. 1 and 3).

    Args:
        p: (N, D) predictions (gradient flows).
        z: (N, D) targets of the same rows (detached here).

    Returns:
        Scalar mean over rows of ``-cos(p_i, z_i)``, in [-1, 1]; -1 when every prediction points
        at its target.
    """
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()


def normalized_mse(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's ``|| p/|p| - sg(z)/|z| ||^2 = 2 - 2 cos(p, z)`` (BYOL, 2020, arXiv:2006.07733, Eq. 2).

    Args:
        p: (N, D) online predictions (gradient flows).
        z: (N, D) target projections of the same rows (detached here).

    Returns:
        Scalar mean over rows, in [0, 4].
    """
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Collapse monitor: the per-dimension standard deviation over the batch of the L2-normalized
    embeddings, averaged over dimensions (SimSiam, 2021, arXiv:2011.10566, Fig. 2).

    Args:
        z: (N, D) embeddings, N >= 2.

    Returns:
        About ``1 / sqrt(D)`` for embeddings spread over the sphere (e.g. isotropic Gaussian
        vectors), 0 when every row is the same vector (complete collapse). Multiply by
        ``sqrt(D)`` for a size-free ratio near 1.
    """
    return float(F.normalize(z.float(), dim=1).std(dim=0).mean())
