"""The torchvision ViT encoders (vit_tiny / vit_small): contract, any input size, torchvision
names and outputs, export and reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from vidssl.export import load_encoder, save_encoder
from vidssl.models.encoders import ENCODERS, ViTEncoder, build_encoder


@pytest.fixture(scope="module")
def tiny() -> ViTEncoder:
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny", image_size=64)
    assert isinstance(encoder, ViTEncoder)
    return encoder.eval()


def test_registered_with_their_sizes() -> None:
    assert {"vit_tiny", "vit_small"} <= set(ENCODERS)
    small = build_encoder("vit_small")
    assert (small.out_dim, small.stride, len(small.encoder.layers)) == (384, 16, 12)
    assert small.encoder.layers[0].self_attention.num_heads == 6
    tiny = build_encoder("vit_tiny")
    assert (tiny.out_dim, tiny.stride, tiny.encoder.layers[0].self_attention.num_heads) == (192, 16, 3)
    assert tiny.encoder.layers[0].mlp[0].out_features == 768
    assert tiny.config == {"name": "vit_tiny", "stride": 16, "in_chans": 3, "kwargs": {}}


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 96, 96), (2, 3, 32, 32), (1, 3, 64, 96)])
def test_any_input_size(tiny: ViTEncoder, shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        dense = tiny.forward_features(torch.randn(shape))
        pooled = tiny(torch.randn(shape))
    assert dense.shape == (shape[0], 192, shape[2] // 16, shape[3] // 16)
    assert pooled.shape == (shape[0], 192)


def test_matches_torchvision_at_the_build_size(tiny: ViTEncoder) -> None:
    """Same weights in torchvision's own VisionTransformer: the class token before ``heads`` and
    the patch tokens on their grid are what torchvision computes."""
    reference = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=12, num_heads=3,
                                                     hidden_dim=192, mlp_dim=768).eval()
    result = reference.load_state_dict(tiny.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["heads.head.bias", "heads.head.weight"] and not result.unexpected_keys
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        x = reference._process_input(images)
        tokens = reference.encoder(torch.cat([reference.class_token.expand(2, -1, -1), x], dim=1))
        torch.testing.assert_close(tiny(images), tokens[:, 0])
        dense = tiny.forward_features(images)
        # cell (row 1, col 2) of the 4 x 4 grid is patch token 1 * 4 + 2, after the class token
        torch.testing.assert_close(dense[:, :, 1, 2], tokens[:, 1 + 6])


def test_position_embedding_is_interpolated_not_cropped(tiny: ViTEncoder) -> None:
    pos = tiny._position_embedding(8, 8)
    assert pos.shape == (1, 65, 192)
    torch.testing.assert_close(pos[:, 0], tiny.encoder.pos_embedding[:, 0])  # the class position is kept
    torch.testing.assert_close(tiny._position_embedding(4, 4), tiny.encoder.pos_embedding)


def test_gradients_bf16_and_gray_input() -> None:
    encoder = build_encoder("vit_tiny", in_chans=1)
    encoder(torch.randn(2, 1, 48, 48)).square().mean().backward()
    assert encoder.conv_proj.weight.grad is not None and encoder.encoder.pos_embedding.grad.abs().sum() > 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder.forward_features(torch.randn(1, 1, 32, 32))
    assert out.shape == (1, 192, 2, 2) and torch.isfinite(out.float()).all()


def test_channels_last_input_gives_the_same_tokens(tiny: ViTEncoder) -> None:
    """The trainer makes weights and inputs channels_last on CUDA."""
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = tiny.forward_features(images)
        got = tiny.forward_features(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_stride_is_the_patch_size() -> None:
    with pytest.raises(ValueError, match="encoder_stride=16"):
        build_encoder("vit_tiny", stride=32)


def test_export_and_reload(tiny: ViTEncoder, tmp_path: Path) -> None:
    path = save_encoder(tiny, tmp_path / "vit.safetensors", metadata={"method": "dino"})
    loaded = load_encoder(path).eval()
    assert isinstance(loaded, ViTEncoder) and loaded.config == tiny.config == {
        "name": "vit_tiny", "stride": 16, "in_chans": 3, "kwargs": {"image_size": 64}}
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), tiny(images), rtol=0, atol=0)
        torch.testing.assert_close(loaded.forward_features(images), tiny.forward_features(images), rtol=0, atol=0)


def test_torchvision_checkpoint_loads_without_its_head(tiny: ViTEncoder, tmp_path: Path) -> None:
    reference = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=12, num_heads=3,
                                                     hidden_dim=192, mlp_dim=768)
    path = tmp_path / "vit_tv.pth"
    torch.save(reference.state_dict(), path)
    encoder = build_encoder("vit_tiny", image_size=64, weights=path)
    torch.testing.assert_close(encoder.class_token, reference.class_token)
