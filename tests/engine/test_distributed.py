"""torchrun with 2 gloo processes on CPU: ranks stay in sync and only rank 0 writes the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_agree_and_only_rank0_writes(tmp_path: Path, synth_dir: Path, cache_dir: Path) -> None:
    run, dumps = tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    args = [f"data={synth_dir / 'videos'}", f"out={run}", "steps=3", "batch_size=4", "image_size=48", "decode_size=56",
            "workers=0", "proj_hidden=64", "proj_dim=32", "log_every=1", "save_every=2", "loss=moco", "queue_size=32"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(Path(__file__).with_name("ddp_worker.py")), str(dumps), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0, rank1 = (torch.load(dumps / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], msg=key)  # DDP kept the replicas equal
    assert any(k.startswith("encoder.") for k in rank0)

    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "tb" not in p.parts)
    assert files == ["checkpoints/last.pt", "checkpoints/previous.pt",  # step 3 and step 2
                     "config.yaml", "encoder.safetensors", "log.jsonl"]
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # one writer: a second rank would have doubled every line
    assert len(list((run / "tb").iterdir())) == 1
