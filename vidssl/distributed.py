"""Distributed training from torchrun's environment (PyTorch DDP; no home-made distribution).

``torchrun --nproc_per_node=N -m vidssl train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; without
them everything runs as a single process. NCCL on CUDA, gloo on CPU. Under ``torchrun
--max-restarts=N`` each attempt's process group keeps its keys apart (:func:`_attempt_store`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op when absent)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        store = _attempt_store(info)
        if store is None:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, store=store, rank=info.rank, world_size=info.world_size)
    return info


def _attempt_store(info: DistInfo) -> dist.Store | None:
    """torchrun's own store, its keys under a prefix of this attempt (None: not under torchrun's agent store).

    The agent's store outlives a restart (``--max-restarts``) with every key the failed attempt wrote,
    and torch's default ``env://`` setup reuses the same names: a restarted rank could read its dead
    peer's gloo address before the new peer overwrote it and fail with "connectFullMesh failed ...
    Connection refused" (pytorch/pytorch#167288; about one restart in four here)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    from torch.distributed.constants import default_pg_timeout

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), info.world_size,
                          is_master=False, timeout=default_pg_timeout)
    return dist.PrefixStore(f"vidssl/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # without it a few gloo runs in twenty abort at exit
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N, ...) from every rank along dim 0, gradients flowing back to each
    rank's own slice, so contrastive losses see the negatives of the whole global batch."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (no gradient: momentum keys, queues)."""
    if world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
