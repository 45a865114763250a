"""Colour apart from shape (gan_aug.colour) and the sampler's ``colour`` setting."""

from __future__ import annotations

import numpy as np
import pytest

from gan_aug import GANOverSampler
from gan_aug.colour import colourise, decide, split_colour
from gan_aug.config import GANConfig
from pipelines.data.sources import load_dataset
from pipelines.tracking.safe_state import load_state, save_state

TINY = {"width": 8, "z_dim": 16, "batch_size": 16, "judge_steps": 10, "autoencoder_steps": 2}


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(ds.y == k)[:40] for k in range(4)])
    return ds.x[keep], ds.y[keep]


def recoloured(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each grey image as stroke colour over ground colour, both drawn at random per image."""
    rng = np.random.default_rng(seed)
    fg, bg = rng.random((len(x), 3, 1, 1)), rng.random((len(x), 3, 1, 1))
    return (x * fg + (1 - x) * bg).astype(np.float32), fg, bg


def test_a_two_colour_image_splits_into_its_shape_and_palette_and_back(digits):
    x, _ = digits
    coloured, fg, bg = recoloured(x)
    views, palettes, fit = split_colour(coloured)
    assert views.shape == (len(x), 1, 8, 8) and palettes.shape == (len(x), 2, 3)
    assert views.min() >= 0 and views.max() <= 1 and np.all(fit > 0.999)
    # the view is the grey digit again, ink bright, whichever of its two colours is lighter
    corr = [np.corrcoef(v.ravel(), g.ravel())[0, 1] for v, g in zip(views, x)]
    assert min(corr) > 0.99
    # its own palette gives the image back; the colours at the view's ends are the stroke's and the ground's
    back = np.clip(palettes[:, 0, :, None, None] * views + palettes[:, 1, :, None, None], 0, 1)
    np.testing.assert_allclose(back, coloured, atol=1e-4)
    full = (x.min(axis=(1, 2, 3)) == 0) & (x.max(axis=(1, 2, 3)) == 1)  # grey from 0 to 1: the view is the image
    assert full.sum() > 100
    np.testing.assert_allclose(palettes[full, 1], bg[full, :, 0, 0], atol=1e-3)  # v = 0: the ground
    np.testing.assert_allclose(palettes[full].sum(axis=1), fg[full, :, 0, 0], atol=1e-3)  # v = 1: the stroke


def test_colourise_draws_training_palettes_reproducibly():
    views = np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4).repeat(50, axis=0)
    palettes = np.array([[[0.5, 0.0, 0.0], [0.2, 0.2, 0.2]], [[0.0, -0.2, 0.0], [0.9, 0.9, 0.9]]], dtype=np.float32)
    out = colourise(views, palettes, seed=3)
    assert out.shape == (50, 3, 4, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out, colourise(views, palettes, seed=3))
    grounds = {tuple(np.round(image[:, 0, 0].astype(np.float64), 3).tolist()) for image in out}  # the colour at v = 0
    assert grounds == {(0.2, 0.2, 0.2), (0.9, 0.9, 0.9)}  # both palettes used, nothing else
    assert colourise(views[:0], palettes, 0).shape == (0, 3, 4, 4)


def test_auto_learns_colour_apart_only_where_colour_hides_the_class(digits):
    x, y = digits
    coloured, _, _ = recoloured(x)
    apart, evidence = decide(coloured, y)
    assert apart and evidence["class_signal_views"] > 0.2 > 0.05 > evidence["class_signal_images"]
    # colour is the class: each class in its own hue, textured, so one axis does not hold the image either
    rng = np.random.default_rng(1)
    hues = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
    texture = rng.random((len(x), 3, 8, 8), dtype=np.float32)
    by_hue = (0.6 * hues[y][:, :, None, None] + 0.4 * texture).astype(np.float32)
    apart, evidence = decide(by_hue, y)
    assert not apart and evidence["class_signal_images"] > evidence["class_signal_views"]
    assert decide(x, y) == (False, {})  # grey: drawn as it is, nothing measured
    assert decide(coloured, y, "joint") == (False, {})
    assert decide(by_hue, y, "apart")[0]
    with pytest.raises(ValueError, match="colour must be one of"):
        decide(coloured, y, "grey")
    with pytest.raises(ValueError, match="colour must be one of"):
        GANConfig(colour="grey")


def test_a_sampler_with_colour_apart_trains_on_shapes_and_gives_colour_samples(digits, tmp_path):
    x, y = digits
    coloured, _, _ = recoloured(x)
    shown = []
    sampler = GANOverSampler(steps=2, **TINY, random_state=0,
                             preview=lambda step, images, labels: shown.append(images.shape)).fit(coloured, y)
    assert sampler.gan_.config.colour == "apart" and sampler.colour == "auto"  # the decision, and the setting as given
    assert sampler.gan_.image_shape == (1, 8, 8) and sampler.palettes_.shape == (len(x), 2, 3)
    assert shown and all(shape[1] == 3 for shape in shown)  # previews in colour too
    images = sampler.generate(np.array([0, 1, 3, 3]), seed=5)
    assert images.shape == (4, 3, 8, 8) and 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, sampler.generate(np.array([0, 1, 3, 3]), seed=5))
    # the colours of a sample are those of some training image: its pixels lie on that palette's line
    palettes = sampler.palettes_
    views = sampler.gan_.sample(np.array([0, 1, 3, 3]), seed=5)
    for image, view in zip(images, views):
        candidates = np.clip(palettes[:, 0, :, None, None] * view + palettes[:, 1, :, None, None], 0, 1)
        assert np.abs(candidates - image).max(axis=(1, 2, 3)).min() < 1e-5
    again = GANOverSampler.from_state_dict(load_state(save_state(sampler.state_dict(), tmp_path)))
    np.testing.assert_array_equal(again.generate(np.array([0, 1, 3, 3]), seed=5), images)
    # jointly: the GAN draws the three channels itself
    joint = GANOverSampler(steps=2, **TINY, colour="joint", random_state=0).fit(coloured, y)
    assert joint.gan_.config.colour == "joint" and joint.palettes_ is None and joint.gan_.image_shape == (3, 8, 8)


def test_a_colour_gan_saved_before_the_setting_loads_as_joint(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 3, 8, 8), dtype=np.float32), np.repeat([0, 1], 20)
    fitted = GANOverSampler(steps=2, **TINY, colour="joint", random_state=1).fit(x, y)
    state = fitted.state_dict()
    del state["palettes"], state["params"]["colour"], state["gan"]["config"]["colour"]  # as saved before
    again = GANOverSampler.from_state_dict(load_state(save_state(state, tmp_path)))
    assert again.colour == again.gan_.config.colour == "joint" and again.palettes_ is None
    np.testing.assert_array_equal(again.sample(1, 4, seed=2), fitted.sample(1, 4, seed=2))
