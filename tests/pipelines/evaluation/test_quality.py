from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluation.quality import frechet_distance, label_agreement, memorisation, precision_recall_density_coverage


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(size=(300, 8))


def test_identical_sets_score_as_identical(features):
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    prdc = precision_recall_density_coverage(features, features.copy(), k=5)
    assert prdc["precision"] == 1.0 and prdc["recall"] == 1.0 and prdc["coverage"] == 1.0
    assert prdc["density"] == pytest.approx(1.0, abs=0.2)


def test_a_shifted_set_scores_worse(features):
    other = np.random.default_rng(1).normal(size=(300, 8))
    shifted = other + 3.0
    assert frechet_distance(features, shifted) > 10 * frechet_distance(features, other)
    assert frechet_distance(features, shifted) == pytest.approx(8 * 9.0, rel=0.15)  # |mean shift|^2 = 8 * 3^2
    near = precision_recall_density_coverage(features, other)
    far = precision_recall_density_coverage(features, shifted)
    for key in ("precision", "recall", "coverage", "density"):
        assert far[key] < near[key]
    assert far["coverage"] < 0.1


def test_collapsed_set_has_fidelity_but_no_diversity(features):
    collapsed = np.repeat(features[:3], 100, axis=0) + 1e-3
    prdc = precision_recall_density_coverage(features, collapsed)
    assert prdc["precision"] == 1.0
    assert prdc["coverage"] < 0.15 and prdc["recall"] < 0.05  # 3 of 300 points, plus their k-NN balls


def test_label_agreement():
    assert label_agreement(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 2])) == 0.75


def test_memorisation_flags_copies_and_spares_new_images():
    rng = np.random.default_rng(0)
    train = rng.random((20, 1, 8, 8))
    copies = train[:10] + rng.normal(0, 1e-3, (10, 1, 8, 8))
    fresh = rng.random((10, 1, 8, 8))
    assert memorisation(copies, train)["near_duplicate_share"] == 1.0
    assert memorisation(fresh, train)["near_duplicate_share"] == 0.0
    assert memorisation(copies, train)["nn_distance_median"] < 0.01
