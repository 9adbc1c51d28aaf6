"""Run by tests/engine/test_distributed.py under torchrun: train, then save this rank's parameters.

``VIDSSL_TEST_KILL=STEP:RANK``: on the first attempt only (torchrun's ``TORCHELASTIC_RESTART_COUNT``
is 0), every rank meets at a barrier at the end of step index STEP (after the checkpoints before it
are written), then rank RANK kills itself with SIGKILL: a deterministic fault for elastic restarts.
On the restart, rank RANK starts 2 s late, so the other ranks join the new process group first (and
would read the killed rank's stale address if the attempts shared their store keys).
"""

import logging
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

import vidssl.engine.trainer as trainer
from vidssl.engine.config import resolve

logging.basicConfig(level=logging.INFO, format="rank %(process)d: %(message)s")  # "resumed RUN at step S"
captured = {}
build_run = trainer.build_run
kill = os.environ.get("VIDSSL_TEST_KILL")
first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"


def capture(*args, **kwargs):
    method, optimizer = build_run(*args, **kwargs)
    captured["method"] = method
    if kill and first_attempt:
        kill_step, kill_rank = map(int, kill.split(":"))
        after_step = method.after_step

        def after_step_then_kill(step: int, steps: int) -> None:
            after_step(step, steps)
            if step == kill_step:
                dist.barrier()  # rank 0 has written every checkpoint up to this step
                if dist.get_rank() == kill_rank:
                    os.kill(os.getpid(), signal.SIGKILL)

        method.after_step = after_step_then_kill
    return method, optimizer


trainer.build_run = capture
if kill and not first_attempt and os.environ["RANK"] == kill.split(":")[1]:
    time.sleep(2)
trainer.train(*resolve(sys.argv[2:]))
params = {k: v.detach().clone() for k, v in captured["method"].named_parameters()}
torch.save(params, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
