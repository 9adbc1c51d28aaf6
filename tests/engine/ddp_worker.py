"""Run by tests/engine/test_distributed.py under torchrun: train, then save this rank's parameters."""

import os
import sys

import torch

import vidssl.methods
from vidssl.config import parse_overrides
from vidssl.engine.trainer import TrainConfig, train

captured = {}
build_fti = vidssl.methods.METHODS["fti"]


def capture(encoder, cfg):
    method, spec = build_fti(encoder, cfg)
    captured["method"] = method
    return method, spec


vidssl.methods.METHODS["fti"] = capture
train(parse_overrides(TrainConfig, sys.argv[2:]))
params = {k: v.detach().clone() for k, v in captured["method"].named_parameters()}
torch.save(params, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
