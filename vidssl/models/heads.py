"""Small heads that methods put on top of an encoder's pooled output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def projection_mlp(
    in_dim: int, hidden_dim: int, out_dim: int, *, num_layers: int = 2, last_bn: bool = False
) -> nn.Sequential:
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


class DINOHead(nn.Module):
    """DINO's projection head (DINO, 2021, arXiv:2104.14294, Sec. 3.1 and its code).

    An MLP ``in_dim -> hidden -> ... -> bottleneck`` with GELU and no BatchNorm, L2 normalization,
    then a weight-normalized linear layer ``bottleneck -> out_dim`` without bias:
    ``W = g * V / ||V||`` row-wise, with the scale ``g`` fixed to 1 when ``norm_last_layer``
    (the paper's default; it stabilises training). Linear weights are initialised with a
    truncated normal of std 0.02, biases with 0.

    Args:
        in_dim: encoder pooled dimension; hidden_dim, bottleneck_dim, out_dim: widths
            (2048, 256, 65536 in the paper); num_layers >= 1 layers of the MLP (3).
        norm_last_layer: fix the last layer's row norms to 1 instead of learning them.

    ``forward(x (N, in_dim)) -> (logits (N, out_dim), embedding (N, bottleneck_dim))``; the
    embedding is the L2-normalized bottleneck, the vector to watch for collapse.
    """

    def __init__(self, in_dim: int, *, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3, norm_last_layer: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim), nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        # The direction V of every output row; its norm never matters (W = g * V / ||V||).
        self.last_direction = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_direction, std=0.02)
        self.last_scale = None if norm_last_layer else nn.Parameter(torch.ones(out_dim))

    def forward(self, x: torch.Tensor, *, freeze_last_layer: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, in_dim) -> logits (N, out_dim), normalized bottleneck (N, bottleneck_dim).

        ``freeze_last_layer`` gives the last layer a zero gradient (DINO freezes it during the first
        epoch); zero rather than none, so DDP still sees every parameter take part."""
        embedding = F.normalize(self.mlp(x), dim=-1)
        direction = self.last_direction
        if freeze_last_layer:
            direction = direction.detach() + 0 * direction
        weight = F.normalize(direction, dim=1)
        if self.last_scale is not None:
            weight = weight * self.last_scale[:, None]
        return F.linear(embedding, weight), embedding
