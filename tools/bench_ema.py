"""EMA update cost: the trainer's fused ``torch._foreach_lerp_`` against a loop over tensors.

    python tools/bench_ema.py [encoder=resnet50] [head=4096] [repeats=50] [device=auto] [out=FILE]

The pair updated is what BYOL keeps (target encoder + projector 2048/4096 -> 256 following the
online ones); MoCo and DINO update the same kind of pairs after every optimizer step. Both
implementations run on the same modules in the same process, alternating, and must give identical
tensors. The last line printed is one JSON object with every figure (``ratio``: loop seconds / fused
seconds, above 1 when the fused update is faster).
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from dataclasses import dataclass

import torch

from vidssl.config import option, parse_overrides
from vidssl.device import resolve_device
from vidssl.ema import ema_update
from vidssl.models.encoders import build_encoder
from vidssl.models.heads import projection_mlp


@dataclass(frozen=True)
class BenchConfig:
    encoder: str = option("resnet50", "encoder whose EMA copy is updated")
    head: int = option(4096, "hidden width of the projector that is updated with it (BYOL: 4096)")
    repeats: int = option(50, "updates timed per implementation")
    device: str = option("auto", "auto | cpu | cuda")
    out: str = option("", "also write the JSON figures here")


@torch.no_grad()
def loop_update(pairs: list[tuple[torch.nn.Module, torch.nn.Module]], momentum: float) -> None:
    """The per-tensor rule the methods used before the trainer fused it (the baseline)."""
    for target, online in pairs:
        for t, o in zip(target.parameters(), online.parameters(), strict=True):
            t.lerp_(o.detach(), 1.0 - momentum)
        for t, o in zip(target.buffers(), online.buffers(), strict=True):
            t.copy_(o)


def seconds(fn, pairs, repeats: int, device: torch.device) -> float:
    fn(pairs, 0.99)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(pairs, 0.99)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchConfig, argv)
    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    encoder = build_encoder(cfg.encoder)
    head = projection_mlp(encoder.out_dim, cfg.head, 256)
    online = torch.nn.ModuleDict({"encoder": encoder, "head": head}).to(device)
    fused_target, loop_target = copy.deepcopy(online), copy.deepcopy(online)
    for p in online.parameters():  # the online copy has moved away from the target
        p.data.add_(torch.randn_like(p), alpha=0.01)
    fused_pairs, loop_pairs = [(fused_target, online)], [(loop_target, online)]
    ema_update(fused_pairs, 0.99)
    loop_update(loop_pairs, 0.99)
    equal = all(torch.equal(a, b) for a, b in zip(fused_target.state_dict().values(),
                                                  loop_target.state_dict().values(), strict=True))
    loop_s, fused_s = [], []
    for _ in range(3):  # alternate, so both see the same machine load
        loop_s.append(seconds(loop_update, loop_pairs, cfg.repeats, device))
        fused_s.append(seconds(ema_update, fused_pairs, cfg.repeats, device))
    tensors = sum(1 for _ in online.parameters())
    params = sum(p.numel() for p in online.parameters())
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "encoder": cfg.encoder, "head": cfg.head, "tensors": tensors,
        "parameters": params, "identical": equal, "loop_ms": 1000 * min(loop_s), "fused_ms": 1000 * min(fused_s),
        "ratio": min(loop_s) / min(fused_s),
    }
    print(f"{cfg.encoder} + head {cfg.head}: {tensors} tensors, {params / 1e6:.1f} M parameters on {device}")
    print(f"  loop over tensors  {result['loop_ms']:8.2f} ms per update")
    print(f"  fused foreach lerp {result['fused_ms']:8.2f} ms per update   {result['ratio']:.2f}x, identical: {equal}")
    if cfg.out:
        from vidssl.files import atomic_write_json

        atomic_write_json(cfg.out, result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
