"""``compile=true`` on the CPU: the trainer's compiled path trains, checkpoints and resumes.

Inductor (torch.compile's default backend) works on this CPU but compiles a ResNet-18 step in
minutes (about 4.5 min for a 3-step run on a loaded 2-core machine), so these tests compile with
a backend that records the graphs Dynamo captures and runs them as they are: everything the
trainer does with ``compile=true`` (the wrapped module, graph breaks such as ``loss.item()``, the
checkpoint of the unwrapped method, resuming into a freshly compiled model) is exercised; the
generated kernels are checked on the GPU (tools/gpu_check.py, part ``compile``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from testdata import train_killed_at

from vidssl.engine.checkpoint import load_checkpoint
from vidssl.engine.trainer import run_config, train


class Graphs(list):
    compiled: list

    def __init__(self) -> None:
        super().__init__()
        self.compiled = []


TINY = dict(encoder="resnet18", batch_size=2, image_size=32, decode_size=40, workers=0, lr=0.01, log_every=1,
            save_every=2, export=False, proj_hidden=32, proj_dim=16, device="cpu")


@pytest.fixture()
def graphs(monkeypatch: pytest.MonkeyPatch) -> list:
    """torch.compile with a backend that keeps each captured FX graph and runs it eagerly; the
    modules given to torch.compile are kept in ``graphs.compiled``."""
    captured = Graphs()
    real = torch.compile

    def recording_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        captured.append(gm)
        return gm.forward

    def compile_recording(model, **kwargs):
        captured.compiled.append(model)
        return real(model, backend=recording_backend, **{k: v for k, v in kwargs.items() if k != "backend"})

    monkeypatch.setattr(torch, "compile", compile_recording)
    torch._dynamo.reset()  # graphs cached by an earlier test would not be captured again
    yield captured
    torch._dynamo.reset()


def test_compile_true_trains_resumes_and_matches_eager(tmp_path: Path, synth_dir: Path, cache_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch, graphs: list) -> None:
    data = str(synth_dir / "videos")
    eager = train(*run_config(data=data, out=str(tmp_path / "eager"), steps=3, loss="moco", queue_size=8, **TINY))
    assert graphs == [] and graphs.compiled == []  # compile=false compiles nothing

    cfg, method_cfg = run_config(data=data, out=str(tmp_path / "compiled"), steps=3, loss="moco", queue_size=8,
                                 compile=True, **TINY)
    train_killed_at(cfg, method_cfg, monkeypatch, step=2)
    assert graphs, "compile=true captured no graph"
    from dataclasses import replace

    compiled = train(replace(cfg, resume=True), method_cfg)
    # the resumed run compiles its new model too (Dynamo may reuse the graphs: same code, same guards)
    assert len(graphs.compiled) == 2 and graphs.compiled[0] is not graphs.compiled[1]

    a = load_checkpoint(eager / "checkpoints" / "last.pt")
    b = load_checkpoint(compiled / "checkpoints" / "last.pt")
    assert b["step"] == 3 and b["config"]["train"]["compile"] is True
    assert sorted(a["model"]) == sorted(b["model"])  # the method's own names, no "_orig_mod." prefix
    for key in a["model"]:  # the captured graphs compute what eager does; the resume is exact
        assert torch.equal(a["model"][key], b["model"][key]), key
    for group_a, group_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(group_a[k], group_b[k]) for k in group_a)
