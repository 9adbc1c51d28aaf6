"""The ultralytics side of ``vidssl tracks``: detector checks and errors, the YOLO adapter end to
end (an untrained YOLO built offline), no network access, and the real OpenVINO detectors from
../shared/data when present."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from testdata import SHARED

from vidssl.cli import main
from vidssl.tracking import read_manifest, read_tracks

REPO = Path(__file__).resolve().parents[2]


def no_video_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a video was opened before the detector was checked")

    monkeypatch.setattr("vidssl.tracking.run.open_video", fail)
    monkeypatch.setattr("vidssl.tracking.run.scan", fail)


def test_missing_detector(synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    no_video_opened(monkeypatch)
    missing = tmp_path / "nowhere" / "yolov8n.pt"
    assert main(["tracks", str(synth_dir / "videos"), f"out={tmp_path / 'o'}", f"detector={missing}"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err
    assert main(["tracks", str(synth_dir / "videos"), f"out={tmp_path / 'o'}"]) == 1
    assert "needs a detector" in capsys.readouterr().err


def test_not_a_detector(synth_dir: Path, tmp_path: Path, build_untrained: Callable[[str], Path],
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from vidssl.tracking.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    no_video_opened(monkeypatch)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    folder = tmp_path / "some_folder"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0" * 64)
    cases = {
        junk: "cannot load as an ultralytics checkpoint",
        folder: "no ultralytics model metadata",
        build_untrained("yolov8n-cls.yaml"): "is a 'classify' model, not a detector",
    }
    for name, message in (("yolov8n-seg.yaml", "is a 'segment' model"), ("yolov8n.yaml", "random weights")):
        path = tmp_path / name  # a model YAML on disk, as a user would pass it
        path.write_text(yaml.safe_dump(yaml_model_load(name)))
        cases[path] = message
    for path, message in cases.items():
        code = main(["tracks", str(synth_dir / "videos"), f"out={tmp_path / 'o'}", f"detector={path}"])
        err = capsys.readouterr().err
        assert code == 1 and str(path) in err and message in err, (path, err)
    assert not (tmp_path / "o").exists()


def test_bad_tracker_recipe(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tracks", str(synth_dir / "videos"), f"out={tmp_path / 'o'}", "detector=groundtruth"]
    assert main([*args, "tracker=sort"]) == 1
    err = capsys.readouterr().err
    assert "no recipe sort.yaml" in err and "bytetrack" in err and "botsort" in err
    reid = tmp_path / "reid.yaml"
    reid.write_text("tracker_type: botsort\nwith_reid: true\n")
    assert main([*args, f"tracker={reid}"]) == 1
    assert "with_reid" in capsys.readouterr().err


def test_untrained_yolo_end_to_end(
    untrained_yolo: Path, synth_copy: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ultralytics adapter on real frames: an untrained model finds (next to) nothing, but every
    step from loading to the CSVs runs."""
    out = tmp_path / "tracks"
    args = ["tracks", str(synth_copy), f"out={out}", f"detector={untrained_yolo}", "imgsz=160", "max_frames=3",
            "device=cpu", "min_track=1", "min_box=0"]
    assert main(args) == 0
    manifest = read_manifest(out)
    assert manifest["detector"]["type"] == "ultralytics" and manifest["detector"]["imgsz"] == 160
    assert len(manifest["classes"]) == 80  # an untrained model names its classes "0".."79"
    assert sorted(manifest["videos"]) == ["synth_000.mp4", "synth_001.mp4", "synth_002.mp4"]
    assert all(v["frames_processed"] == 3 for v in manifest["videos"].values())
    assert set(read_tracks(out)) == set(manifest["videos"])
    capsys.readouterr()
    assert main(args) == 0  # resumes: nothing left to do
    assert "tracked 0 videos" in capsys.readouterr().out


# Imported first by every interpreter of the test (sitecustomize): an audit hook sees every socket
# operation made from Python, in any thread and in forked children (OpenVINO's telemetry sends from
# one), however the library reached the socket module; each one is recorded and refused.
GUARD = '''
import os, socket, sys

_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
           "socket.sendto", "socket.sendmsg", "socket.getnameinfo"}

def _hook(event, args):
    if event not in _EVENTS:
        return
    on_socket = event in ("socket.connect", "socket.sendto", "socket.sendmsg")  # args[0]: the socket
    if on_socket and args[0].family == socket.AF_UNIX:
        return  # local IPC (multiprocessing), not the network
    with open(os.environ["NETGUARD_LOG"], "a") as f:
        f.write(f"{event} {args[1:] if on_socket else args!r}\\n")
    raise OSError(f"network access blocked by the test: {event}")

sys.addaudithook(_hook)
'''


def guarded(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """(environment, network log, home) of a fresh interpreter under the guard. ``$HOME`` exists
    (OpenVINO's telemetry stays quiet when it does not, which hid it from the first version of this
    test)."""
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    log, home = tmp_path / "network.log", tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ULTRALYTICS_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(guard), str(REPO)]), NETGUARD_LOG=str(log), HOME=str(home),
               VIDSSL_CACHE_DIR=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(home / ".config"))
    return env, log, home


def run_guarded(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; assert sys.modules['sitecustomize'].__file__;"
           " from vidssl.cli import main; raise SystemExit(main())", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_the_guard_sees_a_lookup(tmp_path: Path) -> None:
    """The guard itself: a name lookup from a library (urllib here) is recorded and refused."""
    env, log, _ = guarded(tmp_path)
    code = ("import urllib.request\ntry:\n    urllib.request.urlopen('https://example.com', timeout=1)\n"
            "except OSError:\n    pass")
    subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=True)
    assert "socket.getaddrinfo ('example.com'" in log.read_text()


def test_no_network_during_a_run(untrained_yolo: Path, synth_copy: Path, synth_dir: Path, tmp_path: Path) -> None:
    """``vidssl tracks`` (a .pt detector and, when ../shared/data has them, an OpenVINO export),
    ``train`` and ``propagate`` in fresh interpreters under the guard: no connection and no name
    lookup may be attempted (import, settings, model load, predict, tracker, telemetry), and nothing
    is written to ~/.config or ~/intel."""
    env, log, home = guarded(tmp_path)
    runs = [["tracks", str(synth_copy), f"out={tmp_path / 'tracks'}", f"detector={untrained_yolo}",
             "tracker=botsort", "imgsz=160", "max_frames=4", "device=cpu", "min_track=1"]]
    openvino = SHARED / "detectors" / "yolov8n_int8_openvino_model"
    if openvino.is_dir() and importlib.util.find_spec("openvino") is not None:
        runs.append(["tracks", str(synth_copy), f"out={tmp_path / 'tracks_ov'}", f"detector={openvino}",
                     "max_frames=2", "device=cpu"])
    runs.append(["train", str(synth_copy), f"out={tmp_path / 'run'}", "steps=1", "batch_size=2", "image_size=32",
                 "decode_size=40", "workers=0", "proj_hidden=16", "proj_dim=8", "queue_size=8", "encoder=resnet18"])
    seq = "synth_000"
    runs.append(["propagate", str(synth_copy / f"{seq}.mp4"),
                 f"labels={synth_dir / 'davis' / 'Annotations' / '480p' / seq / '00000.png'}",
                 f"out={tmp_path / 'prop'}", "encoder=random", "device=cpu", "overlay=false"])
    for args in runs:
        proc = run_guarded(env, *args)
        assert proc.returncode == 0, (args[0], proc.stderr[-3000:])
        assert not log.exists(), (args, log.read_text())
    assert len(read_manifest(tmp_path / "tracks")["videos"]) == 3
    assert list((tmp_path / "cache" / "ultralytics").rglob("settings.json"))
    settings = json.loads(next((tmp_path / "cache" / "ultralytics").rglob("settings.json")).read_text())
    assert settings["sync"] is False
    assert not (home / ".config" / "Ultralytics").exists() and not (home / "intel").exists()


@pytest.mark.parametrize("zipped", [True, False], ids=["torch-zip", "raw-pickle"])
def test_a_detector_pickle_never_runs_its_payload(zipped: bool, synth_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``detector=evil.pt`` whose pickle asks to call ``os.mkdir`` on loading: refused in one line,
    and the folder never appears (ultralytics would unpickle it in full by default)."""
    import pickle

    import torch

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    evil = tmp_path / "evil.pt"
    if zipped:
        torch.save({"model": Payload(), "train_args": {}}, evil)
    else:
        evil.write_bytes(pickle.dumps({"model": Payload()}))
    assert main(["tracks", str(synth_dir / "videos"), f"out={tmp_path / 'out'}", f"detector={evil}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert not marker.exists()
    assert len(err) == 1 and err[0].startswith(f"vidssl tracks: detector {evil}: cannot load"), err


# bmx-bumps shows a rider on a bicycle from its first frame (bikes.mp4 only from frame ~105).
SHARED_CLIP = "davis2016_train_mp4/bmx-bumps.mp4"


@pytest.mark.shared
@pytest.mark.parametrize("shared_openvino", ["yolov8n", "yolo11n"], indirect=True)
def test_openvino_detector_finds_people_and_bicycles(
    shared_openvino: Path, tmp_path: Path, cache_dir: Path
) -> None:
    video = SHARED / "videos" / SHARED_CLIP
    if not video.exists():
        pytest.skip("../shared/data is absent")
    out = tmp_path / "tracks"
    args = ["tracks", str(video), f"out={out}", f"detector={shared_openvino}", "classes=person,bicycle", "device=cpu"]
    assert main([*args, "max_frames=12", "min_track=6"]) == 0
    tracks = read_tracks(out)[video.name]
    assert {t.class_name for t in tracks} == {"person", "bicycle"}, tracks
    manifest = read_manifest(out)
    assert manifest["classes"]["0"] == "person" and manifest["detector"]["export_imgsz"] == [640, 640]
    info = manifest["videos"][video.name]
    assert (info["width"], info["height"], info["frames_processed"]) == (854, 480, 12)
    for track in tracks:
        assert track.boxes[:, [0, 2]].max() <= 854 and track.boxes[:, [1, 3]].max() <= 480
        assert track.boxes.min() >= 0 and (np.diff(track.frames) > 0).all() and track.frames.max() < 12
