from __future__ import annotations

import copy

import pytest
import torch

from gan_core.layers import center_crop, upsampling_stages
from gan_core.regularisers import diff_augment, ema_update, gradient_penalty


def test_gradient_penalty_is_zero_for_a_unit_slope_critic():
    critic = lambda x, *args: x.flatten(1)[:, 0]  # noqa: E731  gradient norm exactly 1
    real, fake = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    assert gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0)).item() == pytest.approx(0.0)


def test_diff_augment_is_differentiable_seeded_and_shape_preserving():
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    a = diff_augment(x, torch.Generator().manual_seed(1))
    b = diff_augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and (x.grad == 0).any() and (x.grad == 1).any()  # cut-out pixels get no gradient
    unchanged = diff_augment(x, torch.Generator(), translation=0, cutout=0)
    assert torch.equal(unchanged, x)


def test_diff_augment_colour_changes_brightness_saturation_and_contrast_per_image():
    x = torch.rand(64, 3, 8, 8) * 2 - 1
    plain = diff_augment(x, torch.Generator().manual_seed(2), translation=0, cutout=0)
    jittered = diff_augment(x, torch.Generator().manual_seed(2), translation=0, cutout=0, colour=True)
    assert torch.equal(plain, x) and not torch.allclose(jittered, x)
    shift = (jittered - x).mean(dim=(1, 2, 3))
    assert shift.std() > 0.1  # each image its own brightness, within the op's range
    assert shift.abs().max() < 1.5
    # on one channel the saturation step changes nothing: only brightness and contrast act
    grey = torch.linspace(-1, 1, 16).view(1, 1, 4, 4)
    out = diff_augment(grey, torch.Generator().manual_seed(3), translation=0, cutout=0, colour=True)
    contrast = out.std() / grey.std()
    assert 0.5 - 1e-5 <= contrast <= 1.5 + 1e-5
    torch.testing.assert_close((out - out.mean()) / contrast, grey - grey.mean())


def test_ema_update_moves_weights_towards_the_model_and_copies_buffers():
    model = torch.nn.BatchNorm1d(3)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema_update(ema, model, decay=0.75)
    torch.testing.assert_close(ema.weight, torch.full((3,), 1.25))
    torch.testing.assert_close(ema.running_mean, torch.full((3,), 5.0))


def test_stages_and_centre_crop():
    assert [upsampling_stages(s) for s in (8, 15, 16, 32, 33, 64)] == [1, 1, 2, 2, 3, 3]
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(center_crop(x, 2), x[:, :, 1:3, 1:3])
    assert center_crop(x, 4) is x
