"""Run by tests/engine/test_distributed.py under torchrun: train, then save this rank's parameters."""

import os
import sys

import torch

import vidssl.engine.trainer as trainer
from vidssl.engine.config import resolve

captured = {}
build_run = trainer.build_run


def capture(*args, **kwargs):
    method, optimizer = build_run(*args, **kwargs)
    captured["method"] = method
    return method, optimizer


trainer.build_run = capture
trainer.train(*resolve(sys.argv[2:]))
params = {k: v.detach().clone() for k, v in captured["method"].named_parameters()}
torch.save(params, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
