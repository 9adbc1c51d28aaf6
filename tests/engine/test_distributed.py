"""torchrun with 2 gloo processes on CPU: ranks stay in sync and only rank 0 writes the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
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
    assert files == [".vidssl-run.json", "checkpoints/last.pt", "checkpoints/previous.pt",  # step 3 and step 2
                     "config.yaml", "encoder.safetensors", "log.jsonl"]  # and no lock left behind
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # one writer: a second rank would have doubled every line
    assert len(list((run / "tb").iterdir())) == 1


def _train_args(synth_dir: Path, run: Path, *extra: str) -> list[str]:
    """A tiny MoCo run (its queue is state too) over the synthetic videos, 5 steps, a checkpoint every 2."""
    return [f"data={synth_dir / 'videos'}", f"out={run}", "steps=5", "batch_size=2", "image_size=32",
            "decode_size=40", "workers=0", "proj_hidden=32", "proj_dim=16", "log_every=1", "save_every=2",
            "loss=moco", "queue_size=16", *extra]


def _torchrun(launch: list[str], dumps: Path, args: list[str], cache: Path, **env: str) -> subprocess.Popen[str]:
    """Start ``torchrun LAUNCH ddp_worker.py DUMPS ARGS`` (gloo on the loopback interface only), its
    output going to ``CACHE/torchrun.log`` (a file: two launchers on pipes could block each other)."""
    dumps.mkdir(exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch, str(Path(__file__).with_name("ddp_worker.py")),
           str(dumps), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "VIDSSL_CACHE_DIR": str(cache), **env}
    with (cache / "torchrun.log").open("w") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen[str], cache: Path, timeout: float = 240) -> str:
    """Wait for a launch started by :func:`_torchrun` with ``cache``; its output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        output = (cache / "torchrun.log").read_text()
        raise AssertionError(f"torchrun did not finish in {timeout} s:\n{output[-3000:]}") from None
    output = (cache / "torchrun.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    return output


def _two_processes(port: int) -> list[str]:
    return ["--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}"]


def _assert_same_run(run: Path, reference: Path) -> None:
    """The final checkpoints hold bit-identical weights, buffers (MoCo's queue) and optimizer state,
    and the logs the same losses, step by step."""
    got, want = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (run, reference))
    assert got["step"] == want["step"] == 5
    assert got["model"].keys() == want["model"].keys()
    for key in want["model"]:
        torch.testing.assert_close(got["model"][key], want["model"][key], rtol=0, atol=0, msg=key)
    torch.testing.assert_close(got["optimizer"]["state"], want["optimizer"]["state"], rtol=0, atol=0)
    got_losses, want_losses = ([json.loads(line)["loss"] for line in (r / "log.jsonl").read_text().splitlines()]
                               for r in (run, reference))
    assert len(want_losses) == 5 and got_losses == want_losses


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Path:
    """An uninterrupted run of two gloo processes on one node."""
    root = tmp_path_factory.mktemp("reference")
    run = root / "run"
    cache = root / "cache"
    _finish(_torchrun(_two_processes(free_port()), root / "dumps", _train_args(synth_dir, run), cache), cache)
    return run


@pytest.mark.slow
def test_elastic_restart_after_a_killed_rank_matches_an_uninterrupted_run(tmp_path: Path, synth_dir: Path,
                                                                             reference_run: Path) -> None:
    """torchrun --max-restarts=1: rank 1 is SIGKILLed during step 3 (after the step-2 checkpoint), torchrun
    stops rank 0 and restarts both, which resume from step 2 (resume=true from the first start) and
    finish with the uninterrupted run's weights, bit for bit."""
    run = tmp_path / "run"
    launch = ["--nnodes=1", "--nproc_per_node=2", "--max-restarts=1", "--monitor-interval=0.5",
              "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}"]
    cache = tmp_path / "cache"
    proc = _torchrun(launch, tmp_path / "dumps", _train_args(synth_dir, run, "resume=true"), cache,
                     VIDSSL_TEST_KILL="2:1")
    output = _finish(proc, cache)
    assert output.count("holds no run; starting a new one") == 2  # the first start, both ranks
    assert "failed (exitcode: -9) local_rank: 1" in output  # the SIGKILL, seen by torchrun
    assert output.count(f"resumed {run} at step 2 of 5") == 2, output[-3000:]  # the restart, both ranks
    _assert_same_run(run, reference_run)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # step 3, logged by rank 0 before the restart, was cut back


@pytest.mark.slow
def test_two_nodes_on_loopback_train_the_same_weights_as_one_node(tmp_path: Path, synth_dir: Path,
                                                                 reference_run: Path) -> None:
    """torchrun --nnodes=2 --nproc_per_node=1, both nodes on this machine with rendezvous on 127.0.0.1:
    the same run, bit for bit, as one node with two processes."""
    run, port = tmp_path / "run", free_port()
    caches = [tmp_path / f"cache{node}" for node in (0, 1)]
    nodes = [_torchrun(["--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}", "--master_addr=127.0.0.1",
                        f"--master_port={port}"], tmp_path / "dumps", _train_args(synth_dir, run), caches[node])
             for node in (0, 1)]
    try:
        for node, cache in zip(nodes, caches, strict=True):
            _finish(node, cache)
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    _assert_same_run(run, reference_run)
    rank0, rank1 = (torch.load(tmp_path / "dumps" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)


def test_each_elastic_attempt_keeps_its_store_keys_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun's agent store (which outlives a restart), the process group's keys live under a
    prefix of the attempt: a restarted rank never reads the address its killed peer published."""
    import torch.distributed as dist

    from vidssl.distributed import DistInfo, _attempt_store

    assert _attempt_store(DistInfo(0, 2)) is None  # not under torchrun's agent store: torch's own setup
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(server.port))
    server.set("rank_1", "a dead peer's address")  # what the attempt before wrote
    for attempt in ("1", "2"):
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", attempt)
        store = _attempt_store(DistInfo(0, 2))
        assert store is not None and not store.check(["rank_1"])
        store.set("rank_1", f"attempt {attempt}")
        assert server.get(f"vidssl/attempt_{attempt}/rank_1") == f"attempt {attempt}".encode()
    assert server.get("rank_1") == b"a dead peer's address"
