"""Colorization by copying colours from reference frames (Vondrick et al. 2018, arXiv:1806.09594).

Each target position points at reference positions with a softmax over embedding dot products
and receives the pointed-at colours; the loss is the cross-entropy of the copied colour
distribution against the target's true colour cluster. Two pure functions:

    probs = copy_colors(target, refs, ref_labels, num_classes=16, temperature=1.0)  # (B, N, C)
    loss = colorization_loss(probs, target_labels)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def copy_colors(
    target: torch.Tensor,
    refs: torch.Tensor,
    ref_labels: torch.Tensor,
    *,
    num_classes: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The colour distribution each target position copies from the references.

    ``A = softmax_j(<t_i, r_j> / temperature)`` over all reference positions j, then
    ``p_i = sum_j A_ij onehot(ref_labels_j)`` (the paper's Eq. 1-2, with quantized colours).

    Args:
        target: (B, N, D) embeddings of the N target positions.
        refs: (B, M, D) embeddings of the M positions of all reference frames together.
        ref_labels: int (B, M) colour cluster of every reference position, in [0, num_classes).
        num_classes: C, the number of colour clusters.
        temperature: softmax temperature (1 in the paper's training).

    Returns:
        float32 (B, N, C): a probability distribution over colour clusters per target position.
        Computed in float32 with autocast off: the logits of unnormalized embeddings are large.
    """
    with torch.autocast(target.device.type, enabled=False):
        logits = torch.bmm(target.float(), refs.float().transpose(1, 2)) / temperature  # (B, N, M)
        onehot = F.one_hot(ref_labels, num_classes).float()  # (B, M, C)
        return torch.bmm(logits.softmax(dim=-1), onehot)


def colorization_loss(probs: torch.Tensor, target_labels: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """Cross-entropy of copied colour distributions against the true colour clusters.

    Args:
        probs: (B, N, C) from :func:`copy_colors`.
        target_labels: int (B, N) the target's true clusters.
        eps: probabilities are clamped to at least this before the log (a colour that no
            reference shows has probability 0), so the loss is at most ``-log(eps)`` per position.

    Returns:
        Scalar mean over positions of ``-log p[label]``.
    """
    picked = probs.float().gather(-1, target_labels.unsqueeze(-1)).squeeze(-1)
    return -picked.clamp_min(eps).log().mean()
