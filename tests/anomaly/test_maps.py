"""Anomaly maps (anomaly.maps, GANAnomalyDetector.anomaly_map): shape, direction, what they are fitted on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly import GANAnomalyDetector
from anomaly.maps import (COLOUR_BANK, LocationGaussians, PixelDraw, colour_distances, colour_field, colour_grid_side,
                          location_distances, spatial_features, to_image)
from anomaly.networks import Critic

TINY = {"gan_steps": 60, "encoder_steps": 40, "critic_steps": 2, "width": 8, "latent_dim": 8, "batch_size": 32}


def texture(n: int, seed: int, size: int = 16) -> np.ndarray:
    """Normal data: faint vertical stripes at a random phase, with noise."""
    rng = np.random.default_rng(seed)
    xx = np.arange(size)[None, None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    images = 0.5 + 0.2 * np.sin(xx * 1.2 + phase) + rng.normal(0, 0.03, (n, size, size))
    return np.broadcast_to(images, (n, size, size))[:, None].clip(0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def detector():
    return GANAnomalyDetector(target_fpr=0.1, random_state=0, **TINY).fit(texture(300, 0), texture(100, 1))


def test_maps_have_the_image_shape_for_every_kind(detector):
    x = texture(5, 2)
    for kind in ("feature", "residual", "combined"):
        maps = detector.anomaly_map(x, kind=kind)
        assert maps.shape == (5, 16, 16) and maps.dtype == np.float32 and np.isfinite(maps).all()
    with pytest.raises(ValueError, match="kind must be one of"):
        detector.anomaly_map(x, kind="pixels")


def test_a_pasted_defect_lights_up_its_own_pixels(detector):
    x = texture(20, 3)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 9:13] = True  # a bright square, 6% of the image
    x[:, 0][:, mask] = 1.0
    for kind in ("feature", "combined"):
        maps = detector.anomaly_map(x, kind=kind)
        inside, outside = maps[:, mask].mean(1), maps[:, ~mask].mean(1)
        assert (inside > outside).mean() >= 0.9, kind
    # and the image score from the map ranks defective items above clean ones
    clean, broken = texture(40, 4), x
    scores = detector.score_components(np.concatenate([clean, broken]))["critic_map"]
    assert np.median(scores[40:]) > np.quantile(scores[:40], 0.9)


def test_location_gaussians_are_fitted_on_the_normal_training_images_only():
    critic = Critic(1, 16, 4).eval()
    x = torch.from_numpy(texture(50, 5)) * 2 - 1
    with torch.no_grad():
        features = spatial_features(critic, x)
        gaussians = LocationGaussians()
        gaussians.add(features[:20])
        gaussians.add(features[20:])  # batch by batch = all at once
        mean, whitening = gaussians.fit()
        assert np.allclose(mean, features.flatten(2).permute(2, 0, 1).mean(1).numpy(), atol=1e-5)
        own = location_distances(features, torch.from_numpy(mean), torch.from_numpy(whitening))
        shifted = location_distances(features + 1.0, torch.from_numpy(mean), torch.from_numpy(whitening))
    assert own.shape == (50, 8, 8) and (shifted > own).float().mean() > 0.95


def test_the_detector_fits_maps_on_its_training_images_and_not_on_calibration_ones(detector):
    refit = GANAnomalyDetector(target_fpr=0.1, random_state=0, **TINY).fit(texture(300, 0), 1 - texture(100, 1))
    # other calibration images: the same location Gaussians (the threshold differs)
    assert np.array_equal(refit.map_mean_, detector.map_mean_) and np.array_equal(refit.map_whitening_, detector.map_whitening_)
    assert np.array_equal(refit.colour_field_, detector.colour_field_)
    # and the colour field is the training pixels' colours: grey 0.5 is normal, black is ~0.5 away from them
    field = detector.colour_field_
    assert field[len(field) // 2] < 0.01 and field[0] > 0.4


def test_upsampled_maps_keep_a_bright_location_where_it_was():
    location = torch.zeros(1, 8, 8)
    location[0, 2, 5] = 1.0
    image = to_image(location, 32)[0]
    row, col = divmod(int(image.argmax()), 32)
    assert 8 <= row < 12 and 20 <= col < 24


def test_the_maps_scales_are_their_means_on_the_normal_training_images(detector):
    train = texture(300, 0)  # what the module's detector trained on
    for kind in ("feature", "residual"):
        assert detector.anomaly_map(train, kind=kind).mean() == pytest.approx(detector.map_norms_[kind], rel=1e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_colour_field_is_the_distance_to_the_nearest_normal_colour(channels):
    rng = np.random.default_rng(channels)
    normal = rng.uniform(-0.5, 0.5, (400, channels)).astype(np.float32)
    field = colour_field(normal)
    side = colour_grid_side(channels)
    assert field.shape == (side,) * channels
    # exact at the vertices, up to the snap of the normal colours (an eighth of a step per axis)
    axis = np.linspace(-1, 1, side)
    vertex = [3, side - 2, 1][:channels]
    point = np.array([axis[k] for k in vertex])
    assert field[tuple(vertex)] == pytest.approx(np.linalg.norm(normal - point, axis=1).min(), abs=np.sqrt(channels) / (side - 1) / 4 + 1e-6)
    # and close to exact between them: within one grid step
    queries = rng.uniform(-1, 1, (200, channels)).astype(np.float32)
    exact = np.linalg.norm(queries[:, None] - normal[None], axis=2).min(1)
    x = torch.from_numpy(queries.T.copy()).reshape(1, channels, 20, 10)
    read = colour_distances(x, torch.from_numpy(field)).reshape(-1).numpy()
    step = 2 / (side - 1) * np.sqrt(channels)
    assert np.abs(read - exact).max() <= step
    # a normal colour is near zero, an unseen one far
    assert read[exact > 0.3].min() > 0.2 and colour_distances(torch.from_numpy(normal[:10].T.copy()).reshape(1, channels, 2, 5),
                                                              torch.from_numpy(field)).max() < step


def test_the_pixel_draw_batch_by_batch_is_the_draw_at_once():
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (30, 3, 8, 8)).astype(np.float32))
    whole, parts = PixelDraw(30, 64, seed=4), PixelDraw(30, 64, seed=4)
    whole.add(x)
    for start in range(0, 30, 7):
        parts.add(x[start:start + 7])
    assert np.array_equal(whole.colours(), parts.colours()) and whole.colours().shape == (min(COLOUR_BANK, 30 * 64), 3)
    every = x.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    assert np.isin(whole.colours()[:, 0], every[:, 0]).all()


def rgb_texture(n: int, seed: int, size: int = 16) -> np.ndarray:
    """Normal colour data: greenish-grey stripes at a random phase, with noise."""
    grey = texture(n, seed, size)[:, 0]
    return np.stack([grey * 0.6, grey, grey * 0.8], axis=1).astype(np.float32)


def test_a_stain_of_an_unseen_colour_lights_up_its_pixels_in_colour_images():
    detector = GANAnomalyDetector(target_fpr=0.1, random_state=0, **TINY).fit(rgb_texture(300, 0), rgb_texture(100, 1))
    x = rgb_texture(20, 3)
    mask = np.zeros((16, 16), bool)
    mask[9:12, 2:6] = True  # a red stain, 5% of the image: brightness within the normal range
    for channel, value in enumerate((0.8, 0.1, 0.1)):
        x[:, channel][:, mask] = value
    maps = detector.anomaly_map(x, kind="feature")
    assert maps.shape == (20, 16, 16)
    assert (maps[:, mask].mean(1) > 2 * maps[:, ~mask].mean(1)).mean() >= 0.9
    scores = detector.score_components(np.concatenate([rgb_texture(40, 4), x]))["critic_map"]
    assert scores[40:].min() > np.quantile(scores[:40], 0.9)


def test_a_detector_saved_before_the_colour_field_refuses_maps_in_one_line(detector):
    import copy

    from pipelines.errors import GanpipeError

    old = copy.copy(detector)
    old.colour_field_ = None
    with pytest.raises(GanpipeError, match="train it again"):
        old.anomaly_map(texture(2, 9))
