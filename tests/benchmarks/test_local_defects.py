"""The local-defect set (benchmarks.local_defects): masks where the paint is, kinds kept apart, PRO."""

from __future__ import annotations

import numpy as np

from benchmarks.local_defects import TEST_KINDS, VALIDATION_KINDS, make_set, paint, petal_crops, pro_score


def test_each_defect_changes_the_pixels_under_its_mask_and_only_there():
    rng = np.random.default_rng(0)
    clean = petal_crops(40, rng)
    for kind in (*VALIDATION_KINDS, *TEST_KINDS):
        for image in clean[:10]:
            painted, mask = paint(image, kind, rng)
            change = np.abs(painted - image).max(axis=0)
            assert 0.005 < mask.mean() < 0.15, kind  # a small local defect
            assert change[mask].mean() > 5 * change[~mask].mean() + 1e-6, kind


def test_validation_and_test_defects_are_of_different_kinds_and_clean_items_have_empty_masks():
    data = make_set(20, 8)
    assert set(data["val"]["kinds"]) == {"clean", *VALIDATION_KINDS} and set(data["test"]["kinds"]) == {"clean", *TEST_KINDS}
    for split in ("val", "test"):
        part = data[split]
        assert (part["masks"][~part["anomalous"]].sum(axis=(1, 2)) == 0).all()
        assert (part["masks"][part["anomalous"]].sum(axis=(1, 2)) > 0).all()
    assert data["train"].shape == (20, 3, 32, 32)


def test_pro_is_one_for_a_perfect_map_and_low_for_an_unrelated_one():
    masks = np.zeros((4, 32, 32), bool)
    masks[:, 10:14, 10:14] = True
    assert pro_score(masks.astype(np.float32), masks) > 0.95
    noise = np.random.default_rng(1).random((4, 32, 32))
    assert pro_score(noise, masks) < 0.25
