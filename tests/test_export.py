"""Export round trips: safetensors -> load_encoder, torchvision state_dicts, ONNX; refusals; atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import save_file

from vidssl.export import load_encoder, save_encoder
from vidssl.models.encoders import build_encoder


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def files_in(folder: Path) -> list[str]:
    """Every entry, hidden ones included (the temporary files are hidden)."""
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(("name", "stride", "in_chans"), [("resnet18", 32, 3), ("resnet34", 8, 1), ("resnet50", 16, 3)])
def test_safetensors_round_trip(tmp_path: Path, name: str, stride: int, in_chans: int) -> None:
    encoder = build_encoder(name, stride=stride, in_chans=in_chans).eval()
    with torch.no_grad():  # move the BatchNorm statistics off their defaults so they are checked too
        encoder.train()(torch.randn(4, in_chans, 64, 64))
    encoder.eval()
    path = save_encoder(encoder, tmp_path / "out" / "encoder.safetensors", metadata={"method": "fti", "step": 7})
    assert files_in(tmp_path / "out") == ["encoder.safetensors"]
    loaded = load_encoder(path).eval()
    assert (loaded.stride, loaded.out_dim, loaded.config) == (encoder.stride, encoder.out_dim, encoder.config)
    x = torch.randn(2, in_chans, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), encoder.forward_features(x), rtol=0, atol=0)
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    assert json.loads(header["vidssl_encoder"]) == encoder.config
    assert json.loads(header["vidssl_metadata"]) == {"method": "fti", "step": 7}


def test_saved_safetensors_is_also_a_weights_file(tmp_path: Path, images: torch.Tensor) -> None:
    encoder = build_encoder("resnet18").eval()
    path = save_encoder(encoder, tmp_path / "r18.safetensors")
    rebuilt = build_encoder("resnet18", stride=8, weights=path).eval()
    assert rebuilt.stride == 8  # same weights, a dense variant


def test_channels_last_encoder_exports(tmp_path: Path, images: torch.Tensor) -> None:
    encoder = build_encoder("resnet18").eval().to(memory_format=torch.channels_last)
    loaded = load_encoder(save_encoder(encoder, tmp_path / "cl.safetensors")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), encoder(images), atol=1e-5, rtol=1e-5)


def test_load_without_metadata_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in build_encoder("resnet18").state_dict().items()}, path)
    with pytest.raises(ValueError, match=r"bare\.safetensors: no 'vidssl_encoder' metadata"):
        load_encoder(path)
    torch_file = tmp_path / "state.pth"
    torch.save(torchvision.models.resnet18().state_dict(), torch_file)
    with pytest.raises(ValueError, match=r"state\.pth: not a safetensors file"):
        load_encoder(torch_file)


def test_torchvision_format_loads_into_torchvision(tmp_path: Path, images: torch.Tensor) -> None:
    encoder = build_encoder("resnet18").eval()
    path = save_encoder(encoder, tmp_path / "r18.pth", format="torchvision")
    state = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = torchvision.models.resnet18()
    result = model.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), encoder(images), rtol=0, atol=0)
    assert files_in(tmp_path) == ["r18.pth"]


def test_torchvision_format_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stride 32, this encoder 8"):
        save_encoder(build_encoder("resnet18", stride=8), tmp_path / "a.pth", format="torchvision")
    with pytest.raises(ValueError, match="3 input channels, this encoder 1"):
        save_encoder(build_encoder("resnet18", in_chans=1), tmp_path / "b.pth", format="torchvision")
    with pytest.raises(ValueError, match="width_per_group"):
        save_encoder(build_encoder("resnet50", width_per_group=32), tmp_path / "c.pth", format="torchvision")
    with pytest.raises(ValueError, match="tensors only"):
        save_encoder(build_encoder("resnet18"), tmp_path / "d.pth", format="torchvision", metadata={"a": 1})
    assert files_in(tmp_path) == []


def test_torchvision_format_refuses_timm(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="needs a torchvision ResNet encoder, not 'timm:resnet18'"):
        save_encoder(build_encoder("timm:resnet18"), tmp_path / "t.pth", format="torchvision")


def test_timm_safetensors_round_trip(tmp_path: Path, images: torch.Tensor) -> None:
    pytest.importorskip("timm")
    encoder = build_encoder("timm:vit_tiny_patch16_224", img_size=64).eval()
    loaded = load_encoder(save_encoder(encoder, tmp_path / "vit.safetensors")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(images), encoder.forward_features(images), rtol=0, atol=0)


def test_config_that_is_not_json_is_refused(tmp_path: Path) -> None:
    encoder = build_encoder("resnet18", norm_layer=torch.nn.BatchNorm2d)
    with pytest.raises(ValueError, match="not JSON-serializable"):
        save_encoder(encoder, tmp_path / "x.safetensors")
    assert files_in(tmp_path) == []


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = build_encoder("resnet18")
    path = save_encoder(encoder, tmp_path / "r18.pth", format="torchvision")
    before = path.read_bytes()

    def crash(obj: object, f: str) -> None:
        Path(f).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_encoder(encoder, path, format="torchvision")
    assert path.read_bytes() == before
    assert files_in(tmp_path) == ["r18.pth"]


def test_onnx_without_exporter_packages_says_pip_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ImportError, match="pip install onnx onnxscript"):
        save_encoder(build_encoder("resnet18"), tmp_path / "x.onnx", format="onnx")
    assert files_in(tmp_path) == []


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        save_encoder(build_encoder("resnet18"), tmp_path / "x", format="tflite")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """One ONNX export (several seconds), shared by the ONNX checks."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    encoder = build_encoder("resnet18", stride=16)
    with torch.no_grad():
        encoder.train()(torch.randn(4, 3, 64, 64))  # non-default BatchNorm statistics
    encoder.train()  # export must trace eval mode whatever mode it is given, and restore it
    folder = tmp_path_factory.mktemp("onnx")
    path = save_encoder(encoder, folder / "r18.onnx", format="onnx", image_size=64, metadata={"step": 3})
    assert encoder.training
    return path, encoder.eval()


@pytest.mark.slow
def test_onnx_graph_and_metadata(onnx_export: tuple[Path, torch.nn.Module]) -> None:
    import onnx

    path, encoder = onnx_export
    assert files_in(path.parent) == ["r18.onnx"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["pooled", "features"]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["vidssl_encoder"]) == encoder.config
    assert json.loads(props["vidssl_metadata"]) == {"step": 3}


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (3, 3, 96, 80), (1, 3, 64, 64)])
def test_onnx_outputs_match(onnx_export: tuple[Path, torch.nn.Module], shape: tuple[int, ...]) -> None:
    ort = pytest.importorskip("onnxruntime")
    path, encoder = onnx_export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(*shape)
    pooled, features = session.run(["pooled", "features"], {"images": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(features), encoder.forward_features(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.from_numpy(pooled), encoder(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_onnx_pooled_output_of_a_vit_is_its_class_token(tmp_path: Path) -> None:
    """``pooled`` is what encoder(x) gives for every encoder: the ViT's class token, not the mean
    of its patch grid."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny", image_size=32).eval()
    path = save_encoder(encoder, tmp_path / "vit.onnx", format="onnx", image_size=32)
    x = torch.randn(2, 3, 32, 32)
    pooled, features = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["pooled", "features"], {"images": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(pooled), encoder(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.from_numpy(features), encoder.forward_features(x), atol=1e-4, rtol=1e-4)


def _trained_encoder(name: str = "resnet18", **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(1)
    encoder = build_encoder(name, **kwargs)
    with torch.no_grad():  # move the BatchNorm statistics off their defaults so they are checked too
        encoder.train()(torch.randn(4, 3, 64, 64))
    return encoder.eval()


def _method_state(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A method's state_dict: the trunk under ``encoder.``, an EMA copy and a head under other names."""
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state |= {f"momentum_encoder.{k}": torch.zeros_like(v) for k, v in encoder.state_dict().items()}
    return state | {"head.weight": torch.randn(16, encoder.out_dim)}


@pytest.mark.parametrize("layout", ["encoder_config", "split_config", "release_0_1"])
def test_encoder_from_checkpoint_of_every_layout(tmp_path: Path, layout: str) -> None:
    """The encoder comes back with its weights from checkpoints of every release: with the
    ``encoder`` entry (the encoder's own config, as export writes it), with the split
    ``{"train": ..., "method": ...}`` config only, and release 0.1's flat config."""
    from vidssl.engine.checkpoint import encoder_from_checkpoint, save_checkpoint

    encoder = _trained_encoder("resnet18", stride=16)
    state: dict = {"model": _method_state(encoder), "step": 7}
    if layout == "encoder_config":
        state |= {"encoder": encoder.config, "config": {"train": {"encoder": "resnet50"}, "method": {}}}
    elif layout == "split_config":
        state["config"] = {"train": {"encoder": "resnet18", "encoder_stride": 16, "steps": 2},
                           "method": {"name": "fti", "temperature": 0.1}}
    else:
        state["config"] = {"method": "fti", "encoder": "resnet18", "encoder_stride": 16, "steps": 2}
    save_checkpoint(state, tmp_path / "run" / "checkpoints" / "last.pt")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.pt"]
    for where in (tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.pt"):
        loaded = encoder_from_checkpoint(where).eval()
        assert loaded.config == encoder.config and loaded.stride == 16
        for key, value in encoder.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_encoder_from_checkpoint_of_release_0_1_at_the_architectures_own_stride(tmp_path: Path) -> None:
    """Release 0.1 wrote encoder_stride None for "the architecture's own"; a ViT's is its patch."""
    from vidssl.engine.checkpoint import encoder_from_checkpoint, save_checkpoint

    encoder = build_encoder("vit_tiny")
    path = save_checkpoint({"model": _method_state(encoder), "config": {"encoder": "vit_tiny", "encoder_stride": None}},
                           tmp_path / "last.pt")
    loaded = encoder_from_checkpoint(path)
    assert loaded.stride == 16 and loaded.config == encoder.config
    torch.testing.assert_close(loaded.class_token, encoder.class_token, rtol=0, atol=0)


def test_encoder_from_checkpoint_refusals(tmp_path: Path) -> None:
    from vidssl.engine.checkpoint import encoder_from_checkpoint, save_checkpoint

    encoder = build_encoder("resnet18")
    save_checkpoint({"step": 1}, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="not a vidssl training checkpoint"):
        encoder_from_checkpoint(tmp_path / "a.pt")
    save_checkpoint({"model": _method_state(encoder), "config": {"train": {"steps": 2}}}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="names no encoder"):
        encoder_from_checkpoint(tmp_path / "b.pt")
    save_checkpoint({"model": _method_state(encoder), "encoder": {**encoder.config, "name": "resnet50"}},
                    tmp_path / "c.pt")
    with pytest.raises(ValueError, match="do not fit 'resnet50'"):
        encoder_from_checkpoint(tmp_path / "c.pt")
    with pytest.raises(FileNotFoundError):
        encoder_from_checkpoint(tmp_path / "no_run")


def test_non_finite_and_integer_weights_are_refused_wherever_they_load(tmp_path: Path) -> None:
    """A diverged run's NaN weights exported and propagated to J&F 0 without a word, and int8 weights
    were cast silently: every loader (checkpoint, exported file, weights=) refuses them, naming the
    file and the tensor."""
    from vidssl.engine.checkpoint import encoder_from_checkpoint, save_checkpoint
    from vidssl.models.encoders import load_weights

    encoder = build_encoder("resnet18")
    nan = {k: v.clone() for k, v in encoder.state_dict().items()}
    nan["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    ints = {k: (v.to(torch.int8) if v.is_floating_point() else v) for k, v in encoder.state_dict().items()}
    for label, weights, message in (("nan", nan, r"layer1.0.conv1.weight holds 1 non-finite"),
                                    ("int8", ints, r"[\w.]+ is int8, expected floating-point")):
        run = tmp_path / label
        save_checkpoint({"model": {f"encoder.{k}": v for k, v in weights.items()}, "encoder": encoder.config,
                         "step": 3}, run / "checkpoints" / "last.pt")
        with pytest.raises(ValueError, match=f"last.pt: {message}"):
            encoder_from_checkpoint(run)
        save_file(weights, str(tmp_path / f"{label}.safetensors"),
                  metadata={"vidssl_encoder": json.dumps(encoder.config)})
        with pytest.raises(ValueError, match=f"{label}.safetensors: {message}"):
            load_encoder(tmp_path / f"{label}.safetensors")
        with pytest.raises(ValueError, match=f"{label}.safetensors: {message}"):
            load_weights(build_encoder("resnet18"), tmp_path / f"{label}.safetensors")
