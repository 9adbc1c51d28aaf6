"""Small heads that methods put on top of an encoder's pooled output."""

from __future__ import annotations

from torch import nn


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int, *, num_layers: int = 2, last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a linear output (SimCLR / MoCo-v2 projection head).

    Args:
        in_dim: encoder pooled dimension; hidden_dim, out_dim: widths; num_layers >= 1 linear
        layers in all; last_bn: a BatchNorm without affine after the output (BYOL / SimSiam style).
    """
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)
