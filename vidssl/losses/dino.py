"""DINO's self-distillation loss (DINO, 2021, arXiv:2104.14294) as pure functions.

The teacher's outputs are centred (the centre is state kept by the method) and sharpened with a
low temperature; every student view is trained to predict the teacher's distribution of every
*other* global view. ``H(P_t, P_s) = h(P_t) + KL(P_t || P_s)``: the entropy term tells how peaked
the teacher is and the KL term how far the student is from it. Collapse to one dimension drives
h(P_t) to 0, collapse to the uniform distribution drives it to log(K); either way KL goes to 0
(DINO, Fig. 7), so a run that learns keeps KL above zero with the entropy strictly inside (0, log K).
"""

from __future__ import annotations

import torch


def teacher_probabilities(teacher: torch.Tensor, center: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """``softmax((teacher - center) / temperature)`` over the last dim, in float32, no gradient.

    Args:
        teacher: (..., K) teacher logits; center: (K,) or broadcastable running mean of them.
    """
    return ((teacher.detach().float() - center.float()) / temperature).softmax(dim=-1)


def dino_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """Cross-entropy between centred, sharpened teacher outputs and student outputs.

    Args:
        student: (V, N, K) student logits of V views of N images; views ``0..G-1`` are the global
            crops the teacher also saw (in the same order), the rest local crops.
        teacher: (G, N, K) teacher logits of the G global crops (detached here).
        center: (K,) running mean of teacher logits (DINO Eq. 4).
        student_temp: tau_s (0.1 in the paper); teacher_temp: tau_t (0.04 -> 0.07 warm-up).

    Returns:
        Scalar mean over the pairs (teacher view g, student view v != g) of
        ``mean_n sum_k -P_t[g, n, k] log P_s[v, n, k]``.
    """
    views, globals_ = student.shape[0], teacher.shape[0]
    if views < 2 or globals_ > views:
        raise ValueError(f"need 2+ student views including the {globals_} teacher views, got {views}")
    targets = teacher_probabilities(teacher, center, temperature=teacher_temp)  # (G, N, K)
    log_p = (student.float() / student_temp).log_softmax(dim=-1)  # (V, N, K)
    cross = -torch.einsum("gnk,vnk->gv", targets, log_p) / student.shape[1]  # (G, V) mean over n
    same = torch.eye(globals_, views, dtype=torch.bool, device=cross.device)
    return cross.masked_fill(same, 0).sum() / (globals_ * views - globals_)


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the distributions on the last dim: (..., K) -> scalar."""
    p = probabilities.float()
    return -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
