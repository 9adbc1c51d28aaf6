"""tools/gpu_check.py on the CPU: the plain run skips every GPU part with its reason and still writes
its JSON (last line) and Markdown; ``cpu_smoke=true`` runs the parts' code at tiny sizes; a part
that fails, crashes or hangs never stops the others."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_plain_cpu_run_skips_every_gpu_part_and_prints_its_json_last(tmp_path: Path) -> None:
    # on a GPU machine device=cpu makes it the run a machine without CUDA makes
    args = ["device=cpu"] if torch.cuda.is_available() else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(TOOL), f"out={tmp_path / 'out'}", f"work={tmp_path / 'work'}", *args],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record == json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    parts = record["parts"]
    assert list(parts) == ["env", "train", "ddp", "resume", "resnet", "propagation", "decode", "compile"]
    assert parts["env"]["torch"] == torch.__version__ and "seconds" in parts["env"]
    for name, found in parts.items():
        if name != "env":
            assert set(found) == {"skipped"} and found["skipped"].startswith("no CUDA device"), (name, found)
    assert record["errors"] == [] and record["skipped"] == list(parts)[1:]
    summary = (tmp_path / "out" / "gpu_check.md").read_text()
    assert f"torch {torch.__version__}" in summary
    for name in parts:
        assert f"## {name}" in summary
    assert summary.count("skipped: no CUDA device") >= 2 * 7  # the table and each part's section
    assert not (tmp_path / "work" / "synth").exists()  # nothing to train: no data generated


def test_bad_key_is_one_line(tmp_path: Path, gc, capsys) -> None:
    assert gc.main([f"out={tmp_path}", "parts=(train, trian)"]) == 2
    assert "unknown part 'trian'" in capsys.readouterr().err
    assert gc.main([f"out={tmp_path}", "step=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


def test_cpu_smoke_trains_and_resumes_bit_exact(tmp_path: Path, gc, cache_dir) -> None:
    record = gc.check([f"out={tmp_path / 'out'}", f"work={tmp_path / 'work'}", "device=cpu", "cpu_smoke=true",
                       "isolate=false", "parts=(train, resume, compile)", "workers=0"])
    train, resume = record["parts"]["train"], record["parts"]["resume"]
    assert record["errors"] == [], record["parts"]
    row = train["methods"]["fti"]
    assert train["ok"] and row["finite"] and row["steps"] == 2 and row["images_per_s"] > 0
    assert row["peak_mib"] is None  # CUDA memory only
    assert resume["killed_after_step"] == 1 and resume["steps"] == 3
    assert resume["resumed_vs_straight"]["bit_exact"] and resume["rerun_vs_straight"]["bit_exact"]
    assert resume["verdict"] == "bit-exact" and resume["resumed_vs_straight"]["tensors"] > 100
    assert record["parts"]["compile"]["skipped"].startswith("no CUDA device")
    summary = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| methods | steps | first_loss |" in summary and "| fti | 2 |" in summary


def test_cpu_smoke_resnet_propagation_and_decode(tmp_path: Path, gc, cache_dir) -> None:
    """Also the glue to tools/bench_train.py and tools/bench_propagation.py, which these parts call."""
    record = gc.check([f"out={tmp_path / 'out'}", f"work={tmp_path / 'work'}", "device=cpu", "cpu_smoke=true",
                       "isolate=false", "parts=(resnet, propagation, decode)", "decode_seconds=0.2"])
    assert record["errors"] == [], record["parts"]
    resnet = record["parts"]["resnet"]
    assert list(resnet["fraction_of_ceiling"]) == ["resnet18"] and resnet["fraction_of_ceiling"]["resnet18"] > 0
    wide = record["parts"]["propagation"]["wide"]
    assert wide["frames"] == 2 and wide["size"] == "1920x1080" and wide["peak_mib"] > 0
    prop = record["parts"]["propagation"]
    assert prop["sequences"] == ["synth_000", "synth_001"] and prop["preset"] == "crw"
    f32, auto = prop["precisions"]["float32"], prop["precisions"]["auto"]
    assert f32["dtype"] == auto["dtype"] == "float32"  # the default precision is float32 on the CPU
    assert 0 < f32["J&F"] <= 1 and f32["J&F"] == auto["J&F"] and prop["J&F_difference"] == 0
    assert f32["frames"] == 48 and "J&F synth_001" in f32
    decoders = record["parts"]["decode"]["decoders"]
    assert decoders["torchcodec-cuda"]["skipped"]  # no CUDA, or no torchcodec
    for name in ("pyav", "decord"):
        if importlib.util.find_spec({"pyav": "av"}.get(name, name)):
            assert decoders[name]["pairs"] > 0 and decoders[name]["mean_abs_diff_vs_pyav"] == 0, decoders
    if importlib.util.find_spec("torchcodec") is None:
        assert decoders["torchcodec-cpu"] == {"skipped": "torchcodec is not installed"}


def test_propagation_without_davis_is_skipped_with_its_reason(tmp_path: Path, gc) -> None:
    ctx = gc.Context(gc.CheckConfig(), torch.device("cuda"), tmp_path, deadline=1e12)  # no CUDA call is made
    assert gc.part_propagation(ctx)["skipped"].startswith("no DAVIS folder: give davis=")


def test_a_failing_part_leaves_the_others(tmp_path: Path, gc, monkeypatch) -> None:
    def boom(ctx):
        ctx.report({"methods": {"fti": {"images_per_s": 5.0}}})
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")

    parts = dict(gc.PARTS)
    parts["train"] = gc.Part("train", boom, 10, False, True, "fails")
    parts["decode"] = gc.Part("decode", lambda ctx: {"ok": True, "pairs_per_s": 3.0}, 10, False, True, "works")
    monkeypatch.setattr(gc, "PARTS", parts)
    record = gc.check([f"out={tmp_path}", "device=cpu", "cpu_smoke=true", "isolate=false", "parts=(train, decode)"])
    assert record["parts"]["train"] == {"error": "RuntimeError: CUDA error: an illegal memory access was encountered",
                                        "methods": {"fti": {"images_per_s": 5.0}},  # reported before the error
                                        "seconds": record["parts"]["train"]["seconds"]}
    assert record["parts"]["decode"]["pairs_per_s"] == 3.0 and record["errors"] == ["train"]
    assert "error: RuntimeError: CUDA error" in (tmp_path / "gpu_check.md").read_text()


def test_isolated_parts_are_killed_at_their_limit_or_report_their_crash(tmp_path: Path, gc) -> None:
    result = tmp_path / "result.json"
    hang = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    found = gc.run_isolated(hang, timeout=3, result=result)
    assert found["error"].startswith("timed out after 3 s (last output: started)")
    crash = [sys.executable, "-c", "import os; print('segfault next', flush=True); os.abort()"]
    assert gc.run_isolated(crash, timeout=30, result=result)["error"].startswith("exit code -6 without a result")
    write = [sys.executable, "-c", f"open({str(result)!r}, 'w').write('{{\"x\": 1}}')"]
    assert gc.run_isolated(write, timeout=30, result=result) == {"x": 1}
    write_then_hang = [sys.executable, "-c", f"open({str(result)!r}, 'w').write('{{\"x\": 2}}'); "
                       "import time; time.sleep(60)"]
    found = gc.run_isolated(write_then_hang, timeout=3, result=result)
    assert found["x"] == 2 and found["error"].startswith("timed out after 3 s")  # the figures so far are kept


def test_an_isolated_part_runs_in_its_own_process(tmp_path: Path, gc) -> None:
    record = gc.check([f"out={tmp_path / 'out'}", f"work={tmp_path / 'work'}", "device=cpu", "cpu_smoke=true",
                       "parts=(env, decode)", "decode_seconds=0.1"])
    assert record["errors"] == [], record["parts"]
    assert (tmp_path / "work" / "decode" / "result.json").exists()  # written by the child
    assert record["parts"]["decode"]["into"] == "cpu"


def test_out_of_budget_parts_are_skipped(tmp_path: Path, gc) -> None:
    record = gc.check([f"out={tmp_path}", "device=cpu", "cpu_smoke=true", "isolate=false", "budget=10",
                       "parts=(decode,)"])
    assert record["parts"]["decode"]["skipped"].startswith("out of time")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_pieces_on_cpu(tmp_path: Path, gc, monkeypatch, synth_dir) -> None:
    """The torchrun run's arguments are what ``vidssl train`` takes; the probe (NCCL on CUDA)
    joins a one-process gloo group here, wraps FTI in DDP and steps."""
    from vidssl.engine.config import resolve

    cfg = gc.CheckConfig(data=str(synth_dir / "videos"), batch_size=2, image_size=32, workers=0)
    ctx = gc.Context(cfg, torch.device("cpu"), tmp_path, deadline=1e12)
    args = gc.ddp_train_args(ctx, tmp_path / "run")
    assert args[0] == "train"
    train_cfg, method_cfg = resolve(args[1:])
    assert (train_cfg.steps, train_cfg.out, train_cfg.export, train_cfg.method) == (8, str(tmp_path / "run"), False,
                                                                                     "fti")
    assert method_cfg.proj_dim == 16  # smoke() heads on the CPU
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port()), "GLOO_SOCKET_IFNAME": "lo"}.items():
        monkeypatch.setenv(key, value)
    gc.nccl_probe(tmp_path / "probe.json", ["device=cpu", "batch_size=2", "image_size=32"])
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["backend"] == "gloo" and probe["world_size"] == 1, probe
    assert probe["finite"] and probe["all_reduce_ok"] and len(probe["losses"]) == 3
    assert not torch.distributed.is_initialized()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_parts_run_on_cuda(tmp_path: Path, gc) -> None:
    record = gc.check([f"out={tmp_path / 'out'}", f"work={tmp_path / 'work'}", "parts=(env, train, resume, decode)",
                       "methods=(fti, byol)", "steps=4", "batch_size=8", "image_size=64", "resume_steps=4",
                       "decode_seconds=1"])
    assert record["errors"] == [], record["parts"]
    assert all(r["finite"] and r["peak_mib"] > 0 for r in record["parts"]["train"]["methods"].values())


def test_torchcodec_rows_through_its_api(tmp_path: Path, gc, monkeypatch, cache_dir) -> None:
    """TorchCodec is not installed here: a stand-in with its API (VideoDecoder(path, device=,
    seek_mode=), .metadata.num_frames, .get_frames_at(indices=).data as (N, 3, H, W)) that decodes
    with PyAV, so its row must match PyAV's frames exactly."""
    import importlib.machinery
    import types

    from vidssl.data.backends import open_video

    pytest.importorskip("av")

    class FakeVideoDecoder:
        def __init__(self, source: str, *, device: str = "cpu", seek_mode: str = "exact") -> None:
            assert device == "cpu" and seek_mode == "exact"
            self.reader = open_video(source, backend="pyav")
            self.metadata = types.SimpleNamespace(num_frames=self.reader.num_frames)

        def get_frames_at(self, indices: list[int]) -> types.SimpleNamespace:
            return types.SimpleNamespace(data=torch.from_numpy(self.reader.get_frames(indices)).permute(0, 3, 1, 2))

    package = types.ModuleType("torchcodec")
    package.__spec__ = importlib.machinery.ModuleSpec("torchcodec", None)
    decoders = types.ModuleType("torchcodec.decoders")
    decoders.VideoDecoder = FakeVideoDecoder
    package.decoders = decoders
    monkeypatch.setitem(sys.modules, "torchcodec", package)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)
    record = gc.check([f"out={tmp_path / 'out'}", f"work={tmp_path / 'work'}", "device=cpu", "cpu_smoke=true",
                       "isolate=false", "parts=(decode,)", "decode_seconds=0.2"])
    rows = record["parts"]["decode"]["decoders"]
    assert rows["torchcodec-cpu"]["pairs"] > 0 and rows["torchcodec-cpu"]["mean_abs_diff_vs_pyav"] == 0, rows
    assert rows["torchcodec-cuda"] == {"skipped": "no CUDA device"}
