"""Anomaly maps (anomaly.maps, GANAnomalyDetector.anomaly_map): shape, direction, what they are fitted on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly import GANAnomalyDetector
from anomaly.maps import LocationGaussians, location_distances, spatial_features, to_image
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
