"""Near-copies of training images: rejected while training (memorisation) and when sampling (novelty)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from gan_aug.novelty import MemorisationRejection, NoveltyFilter, copy_threshold


def test_copy_threshold_is_the_quantile_of_nearest_neighbour_distances():
    members = torch.from_numpy(_levels(6).reshape(6, -1))
    assert copy_threshold(members, 0.5) == pytest.approx(0.2)
    assert copy_threshold(members[:1], 0.5) == 0.0  # one image: nothing counts as a copy


def test_memorisation_rejection_withholds_reward_from_near_copies_of_their_class():
    real = torch.from_numpy(np.concatenate([_levels(4), _checkerboards(2)])) * 2 - 1  # class 0: 0.4 apart in [-1, 1]
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    rejection = MemorisationRejection(real, labels, 3, quantile=0.05)
    assert rejection.thresholds[0].item() == pytest.approx(0.4)
    # a copy of a class-0 image; a checkerboard asked as class 0; the copy asked as class 2 (no images);
    # an image 0.2 from two class-0 images
    fakes = torch.stack([real[0] + 0.01, real[4], real[0] + 0.01, real[1] + 0.2])
    assert rejection.weights(fakes, torch.tensor([0, 0, 2, 0])).tolist() == [0.0, 1.0, 1.0, 0.0]


def _levels(n: int) -> np.ndarray:
    """``n`` flat grey images 0.2 apart: each one's nearest other image is 0.2 away (RMS)."""
    return np.repeat(np.arange(n, dtype=np.float32)[:, None, None, None] * 0.2, 64).reshape(n, 1, 8, 8)


def _checkerboards(n: int) -> np.ndarray:
    """``n`` images at least 0.5 (RMS) from every flat grey image."""
    board = (np.indices((8, 8)).sum(0) % 2).astype(np.float32)
    return np.stack([[board if i % 2 else 1 - board] for i in range(n)])


def test_novelty_filter_rejects_near_copies_of_training_images_and_replaces_them():
    train = _levels(6)
    novelty = NoveltyFilter.fit(train, np.zeros(6, dtype=np.int64), 1, 0.05, seed=0)
    assert novelty.thresholds[0] == pytest.approx(0.2, abs=0.01)
    calls = []

    def draw(m):  # first batch: four near-copies, then only new images
        calls.append(m)
        return np.concatenate([train[:4] + 0.001, _checkerboards(m - 4)]) if len(calls) == 1 else _checkerboards(m)

    images, counts = novelty.select(0, 6, draw, max_draws=10)
    assert images.shape == (6, 1, 8, 8)
    assert (novelty.nearest(0, images) >= novelty.thresholds[0]).all()
    assert counts == {"drawn": sum(calls), "rejected": 4, "filled": 0} and len(calls) == 1
    # memorisation metric of the evaluation agrees: nothing kept is a near-duplicate
    from pipelines.evaluation.quality import memorisation
    assert memorisation(images, train)["near_duplicate_share"] == 0.0


def test_novelty_filter_fills_with_the_least_copied_candidates_when_the_generator_only_copies(caplog):
    train = _levels(5)
    novelty = NoveltyFilter.fit(train, np.zeros(5, dtype=np.int64), 1, 0.05, seed=0)
    copies = lambda m: (train[np.arange(m) % 5] + np.linspace(0, 0.01, m)[:, None, None, None]).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="gan_aug.novelty"):
        images, counts = novelty.select(0, 4, copies, max_draws=3)
    assert len(images) == 4 and counts == {"drawn": 12, "rejected": 12, "filled": 4}
    assert "near-copies used" in caplog.text
