"""Context encoders that summarize a sequence of frame encodings, causally.

:class:`GRUContext` runs a GRU over pooled encodings z_1..z_T (CPC, 2018, arXiv:1807.03748);
:class:`ConvGRUContext` runs a convolutional GRU over encoding grids, one hidden state per
position (DPC, 2019, arXiv:1909.04656). Output t depends on inputs 1..t only.
"""

from __future__ import annotations

import torch
from torch import nn


class GRUContext(nn.Module):
    """A single-layer GRU: (B, T, in_dim) encodings -> (B, T, hidden_dim) contexts c_1..c_T."""

    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden_dim, batch_first=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.gru(z)[0]


class ConvGRUCell(nn.Module):
    """One step of a convolutional GRU (Ballas et al., 2016, arXiv:1511.06432), DPC's form:

    r = sigmoid(W_r * [x, h]), u = sigmoid(W_u * [x, h]), n = tanh(W_n * [x, r h]),
    h' = (1 - u) h + u n, every W a ``kernel_size`` convolution.
    """

    def __init__(self, in_dim: int, hidden_dim: int, *, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (the grid keeps its size), got {kernel_size}")
        pad = kernel_size // 2
        self.hidden_dim = hidden_dim
        self.gates = nn.Conv2d(in_dim + hidden_dim, 2 * hidden_dim, kernel_size, padding=pad)
        self.candidate = nn.Conv2d(in_dim + hidden_dim, hidden_dim, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x: (B, in_dim, H, W), h: (B, hidden_dim, H, W) -> the next h."""
        reset, update = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        new = torch.tanh(self.candidate(torch.cat([x, reset * h], dim=1)))
        return (1 - update) * h + update * new


class ConvGRUContext(nn.Module):
    """A single-layer ConvGRU: (B, T, in_dim, H, W) grids -> (B, T, hidden_dim, H, W) contexts.

    ``kernel_size`` 1 (DPC's choice) makes every position its own GRU with shared weights; the
    encoder's receptive field already spans the frame at stride 32.
    """

    def __init__(self, in_dim: int, hidden_dim: int, *, kernel_size: int = 1) -> None:
        super().__init__()
        self.cell = ConvGRUCell(in_dim, hidden_dim, kernel_size=kernel_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, length, _, height, width = z.shape
        h = z.new_zeros(batch, self.cell.hidden_dim, height, width)
        out = []
        for t in range(length):
            h = self.cell(z[:, t], h)
            out.append(h)
        return torch.stack(out, dim=1)
