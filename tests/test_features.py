"""The one feature source (vidssl.features): encoder specs, pooled features and layer taps, dense maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidssl.data.transforms import normalize
from vidssl.features import LabPixels, pooled_features, resolve_encoder, resolve_features


def _images(n: int, size: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def test_exported_encoder_is_rebuilt_at_stride_8(tmp_path: Path) -> None:
    from vidssl.export import save_encoder
    from vidssl.models.encoders import build_encoder

    torch.manual_seed(0)
    encoder = build_encoder("resnet18")  # stride 32, as trained and exported
    save_encoder(encoder, tmp_path / "r18.safetensors")
    dense = resolve_encoder(str(tmp_path / "r18.safetensors"), stride=8)
    assert dense.stride == 8 and dense.forward_features(torch.zeros(1, 3, 64, 48)).shape[2:] == (8, 6)
    for key, value in encoder.state_dict().items():
        assert torch.equal(dense.state_dict()[key], value)


def test_random_encoders_are_seeded_and_missing_files_named() -> None:
    a, b = resolve_encoder("random:resnet18", seed=3), resolve_encoder("random:resnet18", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        resolve_encoder("nothing.safetensors")


def test_pooled_features_are_the_encoders_output_in_batches() -> None:
    encoder = resolve_encoder("random:resnet18")
    images = _images(5)
    with torch.no_grad():
        expected = encoder(normalize(images))
    features = pooled_features(encoder, images, batch_size=2, device="cpu")
    assert features.dtype == torch.float32 and features.shape == (5, 512)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
    encoder.train()
    pooled_features(encoder, images, batch_size=4, device="cpu")
    assert encoder.training  # the mode is restored


def test_layer_taps_average_a_module_over_space() -> None:
    encoder = resolve_encoder("random:resnet18")
    images = _images(3)
    with torch.no_grad():
        x = encoder.maxpool(encoder.relu(encoder.bn1(encoder.conv1(normalize(images)))))
        expected = encoder.layer3(encoder.layer2(encoder.layer1(x))).mean(dim=(2, 3))
    torch.testing.assert_close(pooled_features(encoder, images, layer="layer3", batch_size=2, device="cpu"), expected)
    with pytest.raises(ValueError, match="did you mean 'layer3'"):
        pooled_features(encoder, images, layer="layer_3", device="cpu")


def test_a_vit_is_pooled_by_its_class_token_and_tapped_over_tokens() -> None:
    torch.manual_seed(0)
    encoder = resolve_encoder("random:vit_tiny")
    images = _images(2)
    with torch.no_grad():
        tokens = encoder.forward_tokens(normalize(images))
    torch.testing.assert_close(pooled_features(encoder, images, device="cpu"), tokens[:, 0], rtol=1e-5, atol=1e-5)
    assert pooled_features(encoder, images, layer="encoder.layers.encoder_layer_3", device="cpu").shape == (2, 192)


def test_gray_input_feeds_colorization_encoders_their_lightness() -> None:
    color = pytest.importorskip("vidssl.models.color")

    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 40, 3), dtype=np.uint8)
    extractor = resolve_features("random:resnet18", stride=8, device="cpu", gray=True)
    x = color.gray_input(normalize(torch.from_numpy(frames).permute(0, 3, 1, 2)))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(extractor.encoder.forward_features(x), dim=1).permute(0, 2, 3, 1)
    torch.testing.assert_close(extractor(frames), expected)
    assert extractor(frames).shape == (2, 4, 5, 512)


def test_pixels_baseline_and_bad_specs() -> None:
    extractor = resolve_features("pixels", stride=None, device="cpu")
    assert isinstance(extractor, LabPixels) and extractor.stride == 8
    maps = extractor(np.zeros((1, 20, 17, 3), np.uint8))
    assert maps.shape == (1, 3, 3, 3) and torch.allclose(maps.norm(dim=-1), torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="no encoder given"):
        resolve_features("", device="cpu")
    with pytest.raises(ValueError, match="precision"):
        resolve_features("pixels", device="cpu", precision="int8")


def test_baselines_by_one_name() -> None:
    """random, pixels and copy mean the same everywhere: resolve_encoder (image tasks) and
    resolve_features (propagation)."""
    from vidssl.features import CopyFirst, PixelEncoder

    random = resolve_encoder("random", seed=3)
    named = resolve_encoder("random:resnet18", seed=3)
    pairs = zip(random.state_dict().values(), named.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    pixels = resolve_encoder("pixels")
    assert isinstance(pixels, PixelEncoder)
    images = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    images[1] = 255
    pooled = pooled_features(pixels, images, device="cpu")
    assert pooled.shape == (2, 3)  # mean Lab: black is L = 0 -> -1, white L = 100 -> 1
    torch.testing.assert_close(pooled[:, 0], torch.tensor([-1.0, 1.0]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="copy is a propagation baseline"):
        resolve_encoder("copy")
    copy = resolve_features("copy", device="cpu")
    assert isinstance(copy, CopyFirst) and copy(np.zeros((2, 20, 17, 3), np.uint8)).shape == (2, 3, 3, 0)


def test_res3_is_the_trunk_up_to_layer3() -> None:
    extractor = resolve_features("random", stride=8, device="cpu", layer="res3")
    frames = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    encoder = extractor.encoder
    x = normalize(torch.from_numpy(frames).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = encoder.layer3(encoder.layer2(encoder.layer1(encoder.maxpool(encoder.relu(encoder.bn1(
            encoder.conv1(x)))))))
    maps = extractor(frames)
    assert maps.shape == (1, 4, 6, 256) and extractor.stride == 8 and extractor.name == "random:resnet18@res3"
    torch.testing.assert_close(maps, torch.nn.functional.normalize(expected, dim=1).permute(0, 2, 3, 1))
    assert resolve_features("random", stride=32, device="cpu", layer="res3").stride == 16
    assert resolve_features("random", stride=8, device="cpu", layer="res4")(frames).shape[-1] == 512
    with pytest.raises(ValueError, match="needs a ResNet"):
        resolve_features("random:vit_tiny", stride=None, device="cpu", layer="res3")


def test_an_encoder_reads_what_its_method_trained_it_on(tmp_path: Path, synth_dir: Path, cache_dir: Path) -> None:
    """``input=auto``: a colorization encoder gets the Lab lightness wherever it comes from (run
    folder, checkpoint, export, an export of before ``input`` was recorded); others get RGB."""
    from vidssl.engine.trainer import run_config, train
    from vidssl.export import save_encoder
    from vidssl.features import encoder_input
    from vidssl.methods import METHODS
    from vidssl.models.encoders import build_encoder
    from vidssl.propagation.propagate import PropagationConfig

    assert {name for name, cls in METHODS.items() if cls.input == "gray"} == {"colorization"}
    cfg, method_cfg = run_config(method="colorization", data=str(synth_dir / "videos"), out=str(tmp_path / "run"),
                                 steps=1, encoder="resnet18", batch_size=2, image_size=48, decode_size=56, workers=0,
                                 save_every=1, **METHODS["colorization"].smoke())
    run = train(cfg, method_cfg)
    (run / "copy").mkdir()  # a run folder without config.yaml: its checkpoint's config says it
    (run / "copy" / "checkpoints").mkdir()
    (run / "copy" / "checkpoints" / "last.pt").write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    old = save_encoder(build_encoder("resnet18"), tmp_path / "old.safetensors", metadata={"method": "colorization"})
    fti = save_encoder(build_encoder("resnet18"), tmp_path / "fti.safetensors", metadata={"method": "fti"})
    bare = save_encoder(build_encoder("resnet18"), tmp_path / "bare.safetensors")
    for spec in (run, run / "checkpoints" / "last.pt", run / "encoder.safetensors", run / "copy", old):
        assert encoder_input(str(spec)) == "gray", spec
    for spec in ("random", "random:resnet18", "pixels", "copy", str(fti), str(bare), str(tmp_path / "missing")):
        assert encoder_input(spec) == "rgb", spec
    assert PropagationConfig(encoder=str(run)).input == "gray"
    assert PropagationConfig(encoder=str(run), input="rgb").input == "rgb"  # an explicit choice wins
    assert PropagationConfig(encoder="random").input == "rgb"


def test_pooled_features_feed_gray_input_and_evaluations_resolve_it(tmp_path: Path) -> None:
    """Image-level evaluations (invariance, kNN, linear) give a colorization encoder the Lab
    lightness too, and record the resolved ``input`` in their configs."""
    from vidssl.evaluation.invariance import InvarianceConfig
    from vidssl.evaluation.knn import KnnEvalConfig
    from vidssl.evaluation.linear import LinearEvalConfig
    from vidssl.export import save_encoder
    from vidssl.models import color
    from vidssl.models.encoders import build_encoder

    encoder = resolve_encoder("random:resnet18")
    images = _images(3)
    with torch.no_grad():
        expected = encoder(color.gray_input(normalize(images)))
    gray = pooled_features(encoder, images, device="cpu", gray=True)
    torch.testing.assert_close(gray, expected, rtol=1e-5, atol=1e-5)
    assert (gray - pooled_features(encoder, images, device="cpu")).abs().max() > 1e-3  # not the RGB features
    colorization = save_encoder(build_encoder("resnet18"), tmp_path / "c.safetensors",
                                metadata={"method": "colorization"})
    for config in (InvarianceConfig, KnnEvalConfig, LinearEvalConfig):
        assert config(encoder=str(colorization)).input == "gray", config
        assert config(encoder=str(colorization), input="rgb").input == "rgb", config
        assert config(encoder="random:resnet18").input == "rgb", config
        with pytest.raises(ValueError, match="input must be auto, rgb or gray"):
            config(encoder="random:resnet18", input="grey")
    from vidssl.cli import main

    for command in (["eval", "knn"], ["eval", "linear"], ["eval", "invariance", "random:resnet18"]):
        assert main([*command, "input=grey"]) == 2, command  # one line, no traceback
