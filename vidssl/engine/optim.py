"""Optimizers (SGD, LARS, AdamW) and per-step schedules."""

from __future__ import annotations

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017, arXiv:1708.03888), as
    used by SimCLR / BYOL: parameters without weight decay (biases, norms) skip the adaptation."""

    def __init__(self, params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch's Optimizer contract
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"] > 0:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where((p_norm > 0) & (g_norm > 0), group["eta"] * p_norm / g_norm,
                                        torch.ones_like(p_norm))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"].mul_(group["momentum"]).add_(grad)
                p.add_(mu, alpha=-group["lr"])


def param_groups(model: nn.Module, weight_decay: float, *, decay_all: bool = False) -> list[dict]:
    """Weight decay on weights of linear / conv layers only; not on biases and norm parameters,
    unless ``decay_all`` (mmcv's default optimizer, e.g. the released VFS: every parameter decays).
    The two groups are kept either way, so checkpoints have one layout."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": weight_decay if decay_all else 0.0}]


def build_optimizer(
    name: str, model: nn.Module, *, lr: float, weight_decay: float, momentum: float = 0.9, decay_all: bool = False
) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, decay_all=decay_all)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: sgd, lars or adamw")
