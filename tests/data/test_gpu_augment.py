"""Batched colour augmentation: per-image parameters, reproducible, each part checked alone."""

from __future__ import annotations

import pytest
import torch

from vidssl.data.gpu_augment import color_augment

GRAY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture()
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(16, 3, 32, 32) * 0.8 + 0.1


def test_reproducible_and_per_image(images) -> None:
    a, b = color_augment(images, gen(1)), color_augment(images, gen(1))
    assert torch.equal(a, b) and a.shape == images.shape and 0 <= a.min() and a.max() <= 1
    same = color_augment(images[:1].expand(8, -1, -1, -1).contiguous(), gen(2))
    assert not torch.allclose(same[0], same[1])  # one batch, different parameters per image


def test_all_off_is_identity(images) -> None:
    out = color_augment(images, gen(), p_jitter=0, p_gray=0, p_blur=0)
    torch.testing.assert_close(out, images)


def test_grayscale(images) -> None:
    out = color_augment(images, gen(), p_jitter=0, p_gray=1, p_blur=0)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    torch.testing.assert_close(out[:, :1], (images * GRAY).sum(1, keepdim=True))


def test_brightness_only_scales_within_range(images) -> None:
    out = color_augment(images, gen(), jitter=(0.4, 0, 0, 0), p_jitter=1, p_gray=0, p_blur=0)
    ratio = (out / images).flatten(1)
    unclipped = out.flatten(1) < 1
    for r, keep in zip(ratio, unclipped, strict=True):
        assert torch.allclose(r[keep], r[keep][0], atol=1e-5) and 0.6 - 1e-5 <= r[keep][0] <= 1.4 + 1e-5


def test_hue_rotation_keeps_luma(images) -> None:
    out = color_augment(images, gen(), jitter=(0, 0, 0, 0.1), p_jitter=1, p_gray=0, p_blur=0)
    assert not torch.allclose(out, images, atol=1e-3)
    inside = ((out > 0) & (out < 1)).all(1, keepdim=True)
    luma_in, luma_out = (images * GRAY).sum(1, keepdim=True), (out * GRAY).sum(1, keepdim=True)
    assert (luma_in - luma_out)[inside].abs().max() < 1e-4


def test_blur_smooths_and_keeps_constants() -> None:
    noise = torch.rand(4, 3, 40, 40, generator=gen(3))
    blurred = color_augment(noise, gen(), p_jitter=0, p_gray=0, p_blur=1, blur_sigma=(1.5, 2.0))
    assert blurred.std() < noise.std() * 0.6
    flat = torch.full((2, 3, 40, 40), 0.3)
    torch.testing.assert_close(color_augment(flat, gen(), p_jitter=0, p_gray=0, p_blur=1), flat)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_channels_last(images) -> None:
    x = images.cuda().contiguous(memory_format=torch.channels_last)
    out = color_augment(x, torch.Generator("cuda").manual_seed(0))
    assert out.is_cuda and out.shape == x.shape and torch.isfinite(out).all()
