from __future__ import annotations

import numpy as np

from pipelines.data.sources import load_dataset
from pipelines.evaluation.augment import ClassicAugment, augment_to_counts


def test_classic_augment_keeps_shape_and_range_and_changes_images():
    x = load_dataset("digits").x[:20]
    out = ClassicAugment(random_state=1)(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - x).mean() > 0.01
    # still close to the source image: the augmentation perturbs, it does not replace
    assert np.abs(out - x).mean() < np.abs(x - x[::-1]).mean()


def test_classic_augment_is_reproducible_and_handles_rgb():
    rgb = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    a = ClassicAugment(random_state=5)(rgb)
    b = ClassicAugment(random_state=5)(rgb)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 3, 16, 16)


def test_augment_to_counts_fills_only_the_missing_items():
    x = np.random.default_rng(0).random((13, 1, 8, 8), dtype=np.float32)
    y = np.array([0] * 10 + [1] * 3)
    new_x, new_y = augment_to_counts(x, y, {0: 10, 1: 10})
    assert new_x.shape == (7, 1, 8, 8)
    assert new_y.tolist() == [1] * 7
