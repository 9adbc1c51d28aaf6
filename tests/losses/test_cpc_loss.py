"""The CPC loss against a straightforward loop implementation, its limits, its chunked form,
and its candidates gathered across two gloo processes."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vidssl.losses.cpc import cpc_loss


def reference_cpc(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """Loop form. pred (B, P, K, D[, H, W]), target (B, T, D[, H, W]); prediction (b, p, k, h, w)
    is scored against every (b', t', h', w') and its positive is (b, T - K - P + p + k, h, w)."""
    if pred.ndim == 4:
        pred, target = pred[..., None, None], target[..., None, None]
    B, P, K, _, H, W = pred.shape
    T = target.shape[1]
    terms, correct = [], 0
    for b in range(B):
        for p in range(P):
            for k in range(1, K + 1):
                for h in range(H):
                    for w in range(W):
                        q = pred[b, p, k - 1, :, h, w]
                        scores, positive = [], None
                        for b2 in range(B):
                            for t2 in range(T):
                                for h2 in range(H):
                                    for w2 in range(W):
                                        if (b2, t2, h2, w2) == (b, T - K - P + p + k, h, w):
                                            positive = len(scores)
                                        scores.append(q @ target[b2, t2, :, h2, w2] / temperature)
                        scores = torch.stack(scores)
                        terms.append(torch.logsumexp(scores, 0) - scores[positive])
                        correct += int(scores.argmax() == positive)
    return torch.stack(terms).mean(), correct / len(terms)


@pytest.mark.parametrize("starts", [None, 1])  # every context (CPC) or the last one (DPC)
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_pooled_matches_loop_reference(starts: int | None, temperature: float) -> None:
    torch.manual_seed(0)
    B, T, K, D = 3, 6, 2, 5
    P = starts or T - K
    pred, target = torch.randn(B, P, K, D), torch.randn(B, T, D)
    out = cpc_loss(pred, target, temperature=temperature)
    loss, accuracy = reference_cpc(pred, target, temperature)
    torch.testing.assert_close(out.loss, loss, atol=1e-5, rtol=1e-5)
    assert out.accuracy.item() == pytest.approx(accuracy)


def test_dense_matches_loop_reference() -> None:
    torch.manual_seed(1)
    B, T, K, D, H, W = 2, 4, 2, 3, 2, 3
    pred, target = torch.randn(B, T - K, K, D, H, W), torch.randn(B, T, D, H, W)
    out = cpc_loss(pred, target, temperature=0.5)
    loss, accuracy = reference_cpc(pred, target, 0.5)
    torch.testing.assert_close(out.loss, loss, atol=1e-5, rtol=1e-5)
    assert out.accuracy.item() == pytest.approx(accuracy)


def perfect_predictions(target: torch.Tensor, K: int) -> torch.Tensor:
    """pred[:, p, k-1] = target[:, p + k]: (B, T, D[, H, W]) -> (B, T - K, K, D[, H, W])."""
    T = target.shape[1]
    return torch.stack([target[:, k : T - K + k] for k in range(1, K + 1)], dim=2)


@pytest.mark.parametrize("dense", [False, True])
def test_perfect_predictor_near_zero_and_uninformed_about_log_candidates(dense: bool) -> None:
    torch.manual_seed(2)
    B, T, K, D = 8, 8, 3, 64
    shape = (B, T, D, 3, 3) if dense else (B, T, D)
    candidates = B * T * (9 if dense else 1)
    target = F.normalize(torch.randn(shape), dim=2)
    perfect = cpc_loss(perfect_predictions(target, K), target, temperature=0.05)
    assert perfect.loss < 1e-3 and perfect.accuracy == 1
    # Futures scrambled: the predictions carry nothing about them (independent random directions).
    pred = F.normalize(torch.randn(perfect_predictions(target, K).shape), dim=3)
    scrambled = cpc_loss(pred, target, temperature=1.0)
    assert abs(scrambled.loss.item() - math.log(candidates)) < 0.05


def test_chunked_scores_give_the_same_loss_accuracy_and_gradients() -> None:
    torch.manual_seed(3)
    pred = torch.randn(4, 3, 2, 6, 2, 2, requires_grad=True)
    target = torch.randn(4, 5, 6, 2, 2, requires_grad=True)
    whole = cpc_loss(pred, target, temperature=0.7)
    grads = torch.autograd.grad(whole.loss, [pred, target])
    chunked = cpc_loss(pred, target, temperature=0.7, max_scores=5 * 80)  # 5 rows of 80 candidates a block
    chunked_grads = torch.autograd.grad(chunked.loss, [pred, target])
    torch.testing.assert_close(chunked.loss, whole.loss)
    assert chunked.accuracy == whole.accuracy
    for a, b in zip(grads, chunked_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() > 0 for g in grads)  # both the predictions and the targets learn


def test_scores_stay_float32_under_autocast() -> None:
    torch.manual_seed(4)
    pred, target = 10 * torch.randn(4, 3, 2, 32), 10 * torch.randn(4, 5, 32)  # scores in the hundreds
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = cpc_loss(pred, target)
    assert mixed.loss.dtype == torch.float32
    torch.testing.assert_close(mixed.loss, cpc_loss(pred, target).loss)


def test_mismatched_shapes_are_errors() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        cpc_loss(torch.randn(2, 4, 3, 5), torch.randn(2, 6, 5))
    with pytest.raises(ValueError, match="do not match"):
        cpc_loss(torch.randn(2, 3, 3, 5), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="expected pred"):
        cpc_loss(torch.randn(2, 3, 3, 5, 2), torch.randn(2, 6, 5))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_inputs(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10 + rank)
    return torch.randn(2, 3, 2, 4, generator=g), torch.randn(2, 5, 4, generator=g)


def _gathered_worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        pred, target = (x.requires_grad_() for x in _rank_inputs(rank))
        out = cpc_loss(pred, target, temperature=0.5)
        out.loss.backward()
        torch.save((out.loss.detach(), out.accuracy, pred.grad, target.grad), os.path.join(folder, f"{rank}.pt"))
    finally:
        dist.barrier()  # without it gloo aborts at exit now and then ("terminate called without an active exception")
        dist.destroy_process_group()


def test_two_ranks_see_each_others_candidates_with_gradients(tmp_path) -> None:
    """Each rank's loss uses the 2 x B x T candidates of both ranks; the sum of the two ranks'
    gradients is that of one process holding both batches (so DDP's average is exact)."""
    mp.start_processes(_gathered_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    results = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1)]
    (p0, t0), (p1, t1) = _rank_inputs(0), _rank_inputs(1)
    pred, target = torch.cat([p0, p1]).requires_grad_(), torch.cat([t0, t1]).requires_grad_()
    whole = cpc_loss(pred, target, temperature=0.5)
    whole.loss.backward()
    torch.testing.assert_close((results[0][0] + results[1][0]) / 2, whole.loss.detach())
    torch.testing.assert_close((results[0][1] + results[1][1]) / 2, whole.accuracy)
    # pred: rank r's own rows; target: both ranks' losses reach rank r's slice through the gather.
    torch.testing.assert_close(torch.cat([results[0][2], results[1][2]]) / 2, pred.grad)
    torch.testing.assert_close(torch.cat([results[0][3], results[1][3]]) / 2, target.grad)
