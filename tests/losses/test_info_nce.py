"""InfoNCE losses against straightforward loop implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidssl.losses.info_nce import info_nce, moco_loss


def reference_nt_xent(z: torch.Tensor, ids: torch.Tensor, t: float) -> torch.Tensor:
    """Loop form: for each anchor and each positive, -log softmax over all other rows."""
    z = F.normalize(z, dim=1)
    terms = []
    for i in range(len(z)):
        others = [j for j in range(len(z)) if j != i]
        denom = torch.logsumexp(torch.stack([z[i] @ z[j] / t for j in others]), 0)
        pos = [j for j in others if ids[j] == ids[i]]
        terms.append(torch.stack([-(z[i] @ z[j] / t - denom) for j in pos]).mean())
    return torch.stack(terms).mean()


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_pairs_match_reference(t: float) -> None:
    torch.manual_seed(0)
    z = torch.randn(12, 8)
    ids = torch.arange(6).repeat(2)
    assert torch.allclose(info_nce(z, ids, temperature=t), reference_nt_xent(z, ids, t), atol=1e-5)


def test_multi_positive_matches_reference() -> None:
    torch.manual_seed(1)
    z = torch.randn(12, 8)
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 1])
    assert torch.allclose(info_nce(z, ids, temperature=0.2), reference_nt_xent(z, ids, 0.2), atol=1e-5)


def test_aligned_pairs_give_low_loss_and_random_about_log_n() -> None:
    torch.manual_seed(2)
    base = F.normalize(torch.randn(64, 128), dim=1)
    ids = torch.arange(64).repeat(2)
    aligned = info_nce(torch.cat([base, base]), ids, temperature=0.05)
    random = info_nce(torch.randn(128, 128), ids, temperature=1.0)
    assert aligned < 0.05
    assert abs(random.item() - math.log(127)) < 0.3


def test_row_without_positive_is_an_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        info_nce(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))


def test_gradients_flow() -> None:
    z = torch.randn(8, 4, requires_grad=True)
    info_nce(z, torch.arange(4).repeat(2)).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_moco_matches_reference() -> None:
    torch.manual_seed(3)
    q, k, queue = torch.randn(5, 6), torch.randn(5, 6), torch.randn(20, 6)
    qn, kn, Qn = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    ref = torch.stack([
        -torch.log_softmax(torch.cat([(qn[i] @ kn[i]).view(1), Qn @ qn[i]]) / 0.2, 0)[0] for i in range(5)
    ]).mean()
    assert torch.allclose(moco_loss(q, k, queue, temperature=0.2), ref, atol=1e-5)
