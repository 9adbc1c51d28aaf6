"""The encoder contract over every registry entry and stride, weights from local files, timm."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from vidssl.models.encoders import ENCODERS, ViTEncoder, build_encoder, encoder_from_config

OUT_DIM = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
RESNETS = list(OUT_DIM)  # the ViTs have their own tests (tests/models/test_vit.py): stride 16 only, class token


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def torchvision_trunk(model: torchvision.models.ResNet) -> torch.nn.Sequential:
    """torchvision's own layers up to layer4: the reference the encoder must reproduce."""
    return torch.nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                               model.layer1, model.layer2, model.layer3, model.layer4)


def test_registry_is_the_three_resnets_and_two_vits() -> None:
    assert set(ENCODERS) == set(OUT_DIM) | {"vit_tiny", "vit_small"}


@pytest.mark.parametrize("stride", [32, 16, 8])
@pytest.mark.parametrize("name", RESNETS)
def test_contract_shapes(name: str, stride: int, images: torch.Tensor) -> None:
    encoder = build_encoder(name, stride=stride).eval()
    assert encoder.out_dim == OUT_DIM[name]
    assert encoder.stride == stride
    assert encoder.config == {"name": name, "stride": stride, "in_chans": 3, "kwargs": {}}
    with torch.no_grad():
        dense = encoder.forward_features(images)
        pooled = encoder(images)
    assert dense.shape == (2, OUT_DIM[name], 64 // stride, 64 // stride)
    assert pooled.shape == (2, OUT_DIM[name])
    torch.testing.assert_close(pooled, dense.mean(dim=(2, 3)))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_forward_is_the_head_of_the_features(name: str) -> None:
    """timm's contract for every registry entry: forward_head(features, pre_logits) -> (B, C),
    forward(x) = forward_head(forward_features(x)); the ViT's head reads the class token from
    forward_tokens (its grid has none), and forward_dense_and_pooled gives both from one pass."""
    torch.manual_seed(0)
    encoder = build_encoder(name, **({"image_size": 32} if name.startswith("vit") else {})).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        pooled = encoder(x)
        dense, pooled_too = encoder.forward_dense_and_pooled(x)
        torch.testing.assert_close(dense, encoder.forward_features(x))
        torch.testing.assert_close(pooled_too, pooled)
        if isinstance(encoder, ViTEncoder):
            tokens = encoder.forward_tokens(x)  # (B, 1 + h * w, C): the class token first
            assert tokens.shape == (2, 1 + 2 * 3, encoder.out_dim)
            torch.testing.assert_close(encoder.forward_head(tokens), pooled)
            torch.testing.assert_close(encoder.forward_head(tokens, pre_logits=False), pooled)
            torch.testing.assert_close(dense.flatten(2).transpose(1, 2), tokens[:, 1:])
            with pytest.raises(ValueError, match="class token"):
                encoder.forward_head(dense)
        else:
            torch.testing.assert_close(encoder.forward_head(dense), pooled)
            torch.testing.assert_close(encoder.forward_head(dense, pre_logits=False), pooled)
            torch.testing.assert_close(pooled, dense.mean(dim=(2, 3)))
    assert pooled.shape == (2, encoder.out_dim)


@pytest.mark.parametrize(("name", "stride", "in_chans", "kwargs"), [
    ("resnet18", 8, 1, {}), ("resnet50", 16, 3, {"width_per_group": 32}), ("vit_tiny", 16, 3, {"image_size": 64}),
])
def test_encoder_from_config_rebuilds_the_architecture(name: str, stride: int, in_chans: int, kwargs: dict) -> None:
    encoder = build_encoder(name, stride=stride, in_chans=in_chans, **kwargs)
    rebuilt = encoder_from_config(encoder.config)
    assert type(rebuilt) is type(encoder) and rebuilt.config == encoder.config and rebuilt.stride == stride
    rebuilt.load_state_dict(encoder.state_dict(), strict=True)
    # Defaults: no stride means the architecture's own, no in_chans 3, no kwargs none.
    assert encoder_from_config({"name": "resnet34"}).config == {"name": "resnet34", "stride": 32, "in_chans": 3,
                                                                "kwargs": {}}
    with pytest.raises(ValueError, match="not an encoder config"):
        encoder_from_config({"stride": 8})


@pytest.mark.parametrize("name", RESNETS)
def test_state_dict_has_torchvision_names(name: str) -> None:
    encoder = build_encoder(name, stride=8)  # the stride-reduced / dilated variant keeps the names too
    result = getattr(torchvision.models, name)().load_state_dict(encoder.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []


@pytest.mark.parametrize("name", RESNETS)
def test_channels_last_matches_contiguous(name: str, images: torch.Tensor) -> None:
    encoder = build_encoder(name, stride=16).eval()
    with torch.no_grad():
        expected = encoder.forward_features(images)
        encoder = encoder.to(memory_format=torch.channels_last)
        got = encoder.forward_features(images.contiguous(memory_format=torch.channels_last))
    # Only the summation order differs; deep random-init activations are large, so scale atol.
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4 * expected.abs().max().item())


def test_bf16_autocast(images: torch.Tensor) -> None:
    encoder = build_encoder("resnet18", stride=8).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        dense = encoder.forward_features(images)
    assert dense.dtype == torch.bfloat16 and dense.shape == (2, 512, 8, 8)
    assert torch.isfinite(dense).all()


@pytest.mark.parametrize("name", RESNETS)
def test_one_input_channel(name: str) -> None:
    encoder = build_encoder(name, in_chans=1, stride=8).eval()
    assert encoder.conv1.in_channels == 1 and encoder.config["in_chans"] == 1
    with torch.no_grad():
        assert encoder.forward_features(torch.randn(2, 1, 64, 64)).shape == (2, OUT_DIM[name], 8, 8)


def test_torchvision_weights_give_torchvision_outputs(tmp_path: Path, images: torch.Tensor) -> None:
    reference = torchvision.models.resnet18().eval()
    path = tmp_path / "resnet18_imagenet_like.pth"
    torch.save(reference.state_dict(), path)
    encoder = build_encoder("resnet18", weights=path).eval()
    with torch.no_grad():
        expected = torchvision_trunk(reference)(images)
        torch.testing.assert_close(encoder.forward_features(images), expected, rtol=0, atol=0)
        # pooled + torchvision's fc is torchvision's classifier
        torch.testing.assert_close(reference.fc(encoder(images)), reference(images), rtol=1e-5, atol=1e-5)


def test_wrapped_ddp_and_safetensors_weights(tmp_path: Path, images: torch.Tensor) -> None:
    reference = build_encoder("resnet18").eval()
    state = reference.state_dict()
    wrapped = tmp_path / "checkpoint.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "step": 10}, wrapped)
    in_state_dict = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state}, in_state_dict)
    safetensors_file = tmp_path / "trunk.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, safetensors_file)
    with torch.no_grad():
        expected = reference(images)
        for path in (wrapped, in_state_dict, safetensors_file):
            torch.testing.assert_close(build_encoder("resnet18", weights=path).eval()(images), expected, rtol=0, atol=0)


def test_stride_reduced_encoder_loads_stride_32_weights(tmp_path: Path) -> None:
    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    encoder = build_encoder("resnet34", stride=8, weights=path)
    assert encoder.stride == 8


def test_rgb_weights_into_gray_encoder_sum_over_channels(tmp_path: Path) -> None:
    rgb = build_encoder("resnet18").eval()
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    gray = build_encoder("resnet18", in_chans=1, weights=path).eval()
    luminance = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(luminance), rgb(luminance.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-5)


def test_wrong_key_is_an_error_naming_the_file(tmp_path: Path) -> None:
    state = torchvision.models.resnet18().state_dict()
    state["layer5.weight"] = torch.zeros(1)
    path = tmp_path / "bad_keys.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"bad_keys\.pth.*unexpected 1 keys \(layer5\.weight\)"):
        build_encoder("resnet18", weights=path)
    del state["layer5.weight"], state["layer1.0.conv1.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"bad_keys\.pth.*missing 1 keys \(layer1\.0\.conv1\.weight\)"):
        build_encoder("resnet18", weights=path)


def test_wrong_architecture_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match=r"r18\.pth"):
        build_encoder("resnet34", weights=path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.pth"
    torch.save(torchvision.models.resnet18(), path)  # a whole nn.Module: needs unpickling code
    with pytest.raises(ValueError, match=r"module\.pth"):
        build_encoder("resnet18", weights=path)


def test_unknown_name_suggests() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'resnet18'\?.*resnet34"):
        build_encoder("resnet19")


def test_bad_stride() -> None:
    with pytest.raises(ValueError, match="stride must be 8, 16 or 32"):
        build_encoder("resnet18", stride=4)


def test_timm_missing_says_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real(name, *a))
    with pytest.raises(ImportError, match="pip install timm"):
        build_encoder("timm:resnet18")


class TestTimm:
    @pytest.fixture(autouse=True)
    def _needs_timm(self) -> None:
        pytest.importorskip("timm")

    def test_vit_patch_tokens_on_grid(self, images: torch.Tensor) -> None:
        encoder = build_encoder("timm:vit_tiny_patch16_224", img_size=64, reg_tokens=4).eval()
        assert (encoder.stride, encoder.out_dim, encoder.model.num_prefix_tokens) == (16, 192, 5)
        with torch.no_grad():
            dense = encoder.forward_features(images)
            tokens = encoder.model.forward_features(images)
        assert dense.shape == (2, 192, 4, 4)
        # cell (row 1, col 2) is patch token 1 * 4 + 2 after the 5 prefix tokens
        torch.testing.assert_close(dense[:, :, 1, 2], tokens[:, 5 + 6])
        torch.testing.assert_close(encoder(images), dense.mean(dim=(2, 3)))
        torch.testing.assert_close(encoder.forward_head(dense), dense.mean(dim=(2, 3)))  # the map's mean

    def test_dynamic_size_vit(self) -> None:
        encoder = build_encoder("timm:vit_tiny_patch16_224", dynamic_img_size=True).eval()
        with torch.no_grad():
            assert encoder.forward_features(torch.randn(1, 3, 64, 96)).shape == (1, 192, 4, 6)

    def test_cnn_and_output_stride(self, images: torch.Tensor) -> None:
        encoder = build_encoder("timm:resnet18", in_chans=1).eval()
        assert (encoder.stride, encoder.out_dim) == (32, 512)
        with torch.no_grad():
            assert encoder.forward_features(images[:, :1]).shape == (2, 512, 2, 2)
        encoder = build_encoder("timm:resnet18", stride=8, output_stride=8)
        assert encoder.stride == 8 and encoder.config["kwargs"] == {"output_stride": 8}
        with pytest.raises(ValueError, match="output_stride=8"):
            build_encoder("timm:resnet18", stride=8)

    def test_timm_weights_with_or_without_prefix(self, tmp_path: Path, images: torch.Tensor) -> None:
        reference = build_encoder("timm:resnet18").eval()
        bare = tmp_path / "timm_resnet18.pth"
        torch.save(reference.model.state_dict(), bare)
        prefixed = tmp_path / "vidssl_timm_resnet18.pth"
        torch.save(reference.state_dict(), prefixed)
        with torch.no_grad():
            for path in (bare, prefixed):
                encoder = build_encoder("timm:resnet18", weights=path).eval()
                torch.testing.assert_close(encoder(images), reference(images), rtol=0, atol=0)

    def test_timm_classifier_is_ignored(self, tmp_path: Path) -> None:
        import timm

        path = tmp_path / "classifier.pth"
        torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)  # has fc.*
        build_encoder("timm:resnet18", weights=path)

    def test_timm_refusals(self) -> None:
        with pytest.raises(ValueError, match="never downloaded"):
            build_encoder("timm:resnet18", pretrained=True)
        with pytest.raises(ValueError, match="did you mean timm:resnet18"):
            build_encoder("timm:resnet1B")
