"""Tests for training.augment: output contract, determinism, strength 0 = plain resize, oracles."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from imagegen import photo
from training.augment import (
    AugmentConfig,
    CopyAugment,
    GPUAugment,
    SupervisedAugment,
    eval_transform,
)

SIZE = 48
OFF = dict(jpeg_p=0.0, overlay_p=0.0, border_p=0.0, rot90_p=0.0, flip_p=0.0, grayscale_p=0.0,
           blur_p=0.0, perspective_p=0.0, colour_p=0.0, min_crop_area=1.0)
ALL_ON = dict(jpeg_p=1.0, overlay_p=1.0, border_p=1.0, rot90_p=1.0, flip_p=1.0, grayscale_p=1.0,
              blur_p=1.0, perspective_p=1.0, colour_p=1.0)
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                     reason="no CUDA GPU"))


def config(**kw) -> AugmentConfig:
    return AugmentConfig(size=SIZE, **kw)


def halves() -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30, 0] = 255
    arr[:, 30:, 2] = 255
    return Image.fromarray(arr)


def numpy_eval(img: Image.Image, size: int) -> np.ndarray:
    arr = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return ((arr.astype(np.float32) - 127) / 128).transpose(2, 0, 1)


def batch(n: int = 8, side: int = 56, device: str = "cpu", seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8).to(device)


def check_contract(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert x.shape == shape and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.min() >= -127 / 128 - 1e-6 and x.max() <= 1.0 + 1e-6


# ---- CPU paths ---------------------------------------------------------------------------

def test_eval_transform_matches_numpy():
    img = photo(3, (97, 61))
    out = eval_transform(SIZE)(img)
    check_contract(out, (3, SIZE, SIZE))
    assert np.array_equal(out.numpy(), numpy_eval(img, SIZE))


def test_eval_transform_converts_to_rgb():
    img = photo(4).convert("RGBA")
    assert np.array_equal(eval_transform(SIZE)(img).numpy(), numpy_eval(img, SIZE))


@pytest.mark.parametrize("kind", [CopyAugment, SupervisedAugment])
@pytest.mark.parametrize("extra", [{}, ALL_ON], ids=["default", "all_on"])
def test_cpu_contract(kind, extra):
    aug = kind(config(**extra))
    assert aug.takes_rng is True
    for seed in range(4):
        check_contract(aug(photo(seed, (80, 60)), random.Random(seed)), (3, SIZE, SIZE))


def test_copy_augment_handles_odd_modes_and_tiny_images():
    aug = CopyAugment(config(**ALL_ON, min_crop_area=0.05))
    for img in (photo(1).convert("L"), photo(2).convert("RGBA"), photo(3, (5, 3))):
        check_contract(aug(img, random.Random(0)), (3, SIZE, SIZE))


@pytest.mark.parametrize("kind", [CopyAugment, SupervisedAugment])
def test_cpu_same_seed_same_tensor(kind):
    aug, img = kind(config(**ALL_ON)), photo(5)
    assert torch.equal(aug(img, random.Random(11)), aug(img, random.Random(11)))


@pytest.mark.parametrize("kind", [CopyAugment, SupervisedAugment])
def test_cpu_strength_zero_is_eval_transform(kind):
    aug, img = kind(config(**ALL_ON, strength=0.0)), photo(6, (90, 70))
    expected = eval_transform(SIZE)(img)
    for seed in range(3):
        assert torch.equal(aug(img, random.Random(seed)), expected)


@pytest.mark.parametrize("kind", [CopyAugment, SupervisedAugment])
def test_cpu_views_differ(kind):
    aug, img = kind(config()), photo(7)
    a, b = aug(img, random.Random(1)), aug(img, random.Random(2))
    assert (a - b).abs().mean() > 0.01


def test_copy_augment_without_rng_is_random():
    aug, img = CopyAugment(config(**ALL_ON)), photo(8)
    assert not torch.equal(aug(img), aug(img))


def test_copy_augment_does_not_modify_input():
    img = photo(9)
    before = np.asarray(img).copy()
    CopyAugment(config(**ALL_ON))(img, random.Random(0))
    assert np.array_equal(np.asarray(img), before)


def colour_layout(x: torch.Tensor) -> str:
    """'lr' when red is left and blue right, 'rl', 'tb', 'bt' likewise; '?' otherwise."""
    red = x[0] > x[2]
    n = x.shape[-1]
    left, right = red[:, : n // 2].float().mean(), red[:, n // 2:].float().mean()
    top, bottom = red[: n // 2].float().mean(), red[n // 2:].float().mean()
    for name, a, b in (("lr", left, right), ("rl", right, left), ("tb", top, bottom),
                       ("bt", bottom, top)):
        if a > 0.95 and b < 0.05:
            return name
    return "?"


def test_copy_augment_rot90_moves_colours_to_top_and_bottom():
    assert colour_layout(eval_transform(SIZE)(halves())) == "lr"
    aug = CopyAugment(config(**{**OFF, "rot90_p": 1.0}))
    seen = {colour_layout(aug(halves(), random.Random(seed))) for seed in range(12)}
    assert seen == {"tb", "bt"}


def test_copy_augment_flip_swaps_left_and_right():
    aug = CopyAugment(config(**{**OFF, "flip_p": 1.0}))
    seen = {colour_layout(aug(halves(), random.Random(seed))) for seed in range(12)}
    assert seen == {"rl"}  # a vertical flip on top keeps the halves where they are


def test_copy_augment_grayscale_gives_equal_channels():
    aug = CopyAugment(config(**{**OFF, "grayscale_p": 1.0, "colour_p": 1.0, "min_crop_area": 0.3}))
    out = aug(photo(11), random.Random(0))
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


# ---- GPUAugment --------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_gpu_contract_on_batch_of_eight(device):
    aug = GPUAugment(config(**ALL_ON))
    out = aug(batch(device=device), torch.Generator(device=device).manual_seed(0))
    check_contract(out, (8, 3, SIZE, SIZE))
    assert out.device.type == device


def test_gpu_accepts_float_input_and_non_square():
    x = batch().float()[:, :, :40, :]
    check_contract(GPUAugment(config())(x), (8, 3, SIZE, SIZE))


def test_gpu_keeps_leading_dimensions_and_augments_views_apart():
    x = batch(4).unsqueeze(1).expand(4, 2, 3, 56, 56)
    out = GPUAugment(config())(x, torch.Generator().manual_seed(3))
    check_contract(out, (4, 2, 3, SIZE, SIZE))
    assert not torch.equal(out[:, 0], out[:, 1])


def test_gpu_rejects_wrong_shape():
    with pytest.raises(ValueError):
        GPUAugment(config())(torch.zeros(3, 10, 10))
    with pytest.raises(ValueError):
        GPUAugment(config())(torch.zeros(2, 4, 10, 10))


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_gpu_same_generator_seed_same_output(device):
    aug, x = GPUAugment(config(**ALL_ON)), batch(device=device)
    a = aug(x, torch.Generator(device=device).manual_seed(5))
    b = aug(x, torch.Generator(device=device).manual_seed(5))
    c = aug(x, torch.Generator(device=device).manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("side", [56, 40, 48])
def test_gpu_strength_zero_is_plain_resize(side):
    x = batch(side=side)
    out = GPUAugment(config(**ALL_ON, strength=0.0))(x)
    plain = F.interpolate(x.float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, (plain - 127) / 128, atol=1e-4, rtol=0)


def test_gpu_views_differ():
    x = batch()
    a, b = GPUAugment(config())(x), GPUAugment(config())(x)
    assert (a - b).abs().mean() > 0.01


def test_gpu_rot90_moves_colours_to_top_and_bottom():
    x = eval_transform(SIZE)(halves()) * 128 + 127
    x = x.expand(16, 3, SIZE, SIZE).round()
    out = GPUAugment(config(**{**OFF, "rot90_p": 1.0}))(x, torch.Generator().manual_seed(0))
    seen = {colour_layout(v) for v in out}
    assert seen == {"tb", "bt"}


def test_gpu_grayscale_gives_equal_channels():
    aug = GPUAugment(config(**{**OFF, "grayscale_p": 1.0, "colour_p": 1.0}))
    out = aug(batch())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_gpu_border_fills_outside_the_content():
    """Every pixel of a flat grey batch that differs from grey must be a border fill colour."""
    x = torch.full((16, 3, 40, 40), 100.0)
    out = GPUAugment(config(**{**OFF, "border_p": 1.0}))(x, torch.Generator().manual_seed(1))
    grey = (100 - 127) / 128
    changed = (out - grey).abs().amax(1) > 1e-4
    assert changed.any(dim=(1, 2)).float().mean() > 0.5
    assert not changed[:, SIZE // 2, SIZE // 2].all()


def test_gpu_box_overlay_is_solid_colour():
    x = torch.full((8, 3, 40, 40), 100.0)
    out = GPUAugment(config(**{**OFF, "overlay_p": 1.0}))(x, torch.Generator().manual_seed(2))
    for img in out:
        box = (img - (100 - 127) / 128).abs().amax(0) > 1e-4
        assert box.any()
        colours = img[:, box].T.unique(dim=0)
        assert len(colours) <= 2  # one box, maybe a second one over it


def test_gpu_blur_keeps_flat_images_flat():
    x = torch.full((4, 3, 40, 40), 200.0)
    out = GPUAugment(config(**{**OFF, "blur_p": 1.0}))(x)
    torch.testing.assert_close(out, torch.full_like(out, (200 - 127) / 128))


def test_gpu_has_no_trainable_state_and_runs_under_no_grad():
    aug = GPUAugment(config())
    assert not any(p.requires_grad for p in aug.parameters())
    assert list(aug.parameters()) == [] and list(aug.buffers()) == []
    x = batch().float().requires_grad_(True)
    with torch.no_grad():
        out = aug(x)
    assert not out.requires_grad
    assert not aug(x).requires_grad  # forward is no_grad by itself
