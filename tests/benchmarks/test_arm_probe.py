"""The variants of the arm probe: a synthetic loss weight and the judge's soft labels as weighted copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import arm_probe
from benchmarks.regimes import DATA, cell_splits
from gan_aug import GANOverSampler
from pipelines.data.sources import load_dataset


@pytest.fixture(scope="module")
def cell():
    splits, _, targets = cell_splits(load_dataset("digits"), DATA["digits"], 10, seed=0)
    gan = GANOverSampler(steps=20, autoencoder_steps=5, judge_steps=20, random_state=0).fit(splits.train.x,
                                                                                             splits.train.y)
    return splits.train, targets, gan, (lambda labels, s: gan.generate(labels, s + 1))


def test_synthetic_weight_applies_to_the_synthetic_items_only(cell):
    train, targets, gan, synthesise = cell
    x, y, options = arm_probe.variant_arm(gan)("v", train, targets, 0, synthesise, synthetic_share=1.0,
                                               synthetic_weight=0.25)
    weights, n_real = options["sample_weight"], len(train.y)
    assert options["augment"] is True and len(weights) == len(y) == len(x)
    assert (weights[:n_real] == 1).all() and (weights[n_real:] == 0.25).all()
    assert len(y) - n_real == sum(t - int(np.sum(train.y == k)) for k, t in targets.items())


def test_soft_labels_are_two_copies_whose_weights_are_the_judges_top_two_probabilities(cell):
    train, targets, gan, synthesise = cell
    x, y, options = arm_probe.variant_arm(gan)("v", train, targets, 0, synthesise, synthetic_share=1.0, soft=True)
    weights, n_real = options["sample_weight"], len(train.y)
    n_syn = (len(y) - n_real) // 2
    first, second = slice(n_real, n_real + n_syn), slice(n_real + n_syn, n_real + 2 * n_syn)
    assert (weights[:n_real] == 1).all() and np.allclose(weights[first] + weights[second], 1.0)
    assert (weights[first] >= weights[second]).all() and (y[first] != y[second]).all()
    assert np.array_equal(x[first], x[second])
    with torch.no_grad():
        proba = torch.softmax(gan.gan_.judge(torch.from_numpy(x[first] * 2 - 1)), dim=1).numpy()
    assert np.array_equal(y[first], proba.argmax(axis=1))


def test_freezed_gan_freezes_the_early_critic_and_draws_only_the_minority_then_and_restores_the_loop():
    from gan_aug import train

    splits, minority, _ = cell_splits(load_dataset("digits"), DATA["digits"], 10, seed=0)
    shipped = (train.Minibatches.__init__, train.Bookkeeping.after_step)
    seen = {}
    critic_step = train.critic_step

    def watch(nets, objective, batches, *args, **kwargs):
        frozen = [not p.requires_grad for p in nets.discriminator.features.parameters()]
        seen.setdefault(any(frozen), (frozen, batches.class_p.clone()))
        return critic_step(nets, objective, batches, *args, **kwargs)

    train.critic_step = watch
    try:
        arm_probe.freezed_gan(splits, minority, 0, True, steps=12, autoencoder_steps=2, judge_steps=2)
    finally:
        train.critic_step = critic_step
    assert (train.Minibatches.__init__, train.Bookkeeping.after_step) == shipped
    (before, p_before), (after, p_after) = seen[False], seen[True]
    assert not any(before) and after == [True] * 4 + [False] * (len(after) - 4)  # two convolutions: weights, biases
    assert (p_before > 0).all() and set(np.flatnonzero(p_after.numpy() > 0)) == set(minority)
