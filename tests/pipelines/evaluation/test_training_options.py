"""The classifier options of the training arms (balanced softmax, mixup, augmentation): each does
what the module's note says, and touches only the training items it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.data.sources import load_dataset
from pipelines.data.splits import make_imbalanced, stratified_split
from pipelines.errors import GanpipeError
from pipelines.evaluation import classifier
from pipelines.evaluation.classifier import (CNNClassifier, LogisticClassifier, class_shares, mixup_batch,
                                             soft_cross_entropy)


@pytest.fixture(scope="module")
def imbalanced():
    splits = make_imbalanced(stratified_split(load_dataset("digits"), seed=0), {"3": 5, "8": 5}, seed=0)
    return splits


def raw_training_logits(monkeypatch) -> list:
    """The CNN's logits of every training batch, before any adjustment (filled as it trains)."""
    outputs = []

    class Recording(classifier.SmallCNN):
        def forward(self, batch):
            out = super().forward(batch)
            if self.training:
                outputs.append(out.detach().clone())
            return out

    monkeypatch.setattr(classifier, "SmallCNN", Recording)
    return outputs


def test_mixup_mixes_items_and_labels_alike_and_labels_sum_to_one():
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 4, 4)).astype(np.float32)
    targets = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    partner = rng.permutation(6)
    mixed_x, mixed_t = mixup_batch(x, targets, 0.3, partner)
    np.testing.assert_allclose(mixed_x, 0.3 * x + 0.7 * x[partner], rtol=1e-6)
    np.testing.assert_allclose(mixed_t.sum(axis=1), 1.0)
    np.testing.assert_allclose(mixed_t[0], 0.3 * targets[0] + 0.7 * targets[partner[0]])
    same_x, same_t = mixup_batch(torch.from_numpy(x), torch.from_numpy(targets), 1.0, torch.from_numpy(partner))
    np.testing.assert_allclose(same_x.numpy(), x)
    np.testing.assert_allclose(same_t.numpy(), targets)


def test_soft_cross_entropy_equals_the_hard_one_on_one_hot_targets():
    logits = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0])
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    assert soft_cross_entropy(logits, one_hot).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)
    assert soft_cross_entropy(logits, one_hot, weight).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels, weight=weight).item(), rel=1e-6)


def test_balanced_softmax_adds_the_log_training_shares_to_the_logits_while_training(imbalanced, monkeypatch):
    x, y = imbalanced.train.x, imbalanced.train.y
    outputs, seen = raw_training_logits(monkeypatch), []
    real_loss = torch.nn.CrossEntropyLoss

    class Spy(real_loss):
        def forward(self, logits, labels):
            seen.append(logits.detach().clone())
            return super().forward(logits, labels)

    monkeypatch.setattr(classifier.nn, "CrossEntropyLoss", Spy)
    model = CNNClassifier(epochs=1, loss="balanced_softmax", random_state=0).fit(x, y, n_classes=10)
    shares = class_shares(y, 10)
    assert shares[3] == pytest.approx(5 / len(y)) and shares.sum() == pytest.approx(1.0)
    assert len(seen) == len(outputs) > 0
    for raw, adjusted in zip(outputs, seen):
        np.testing.assert_allclose((adjusted - raw).numpy(), np.broadcast_to(np.log(shares), raw.shape), atol=1e-5)
    # predictions use the plain logits
    with torch.no_grad():
        plain = torch.softmax(model.model_(torch.from_numpy(imbalanced.val.x[:10])), 1).numpy()
    np.testing.assert_allclose(model.predict_proba(imbalanced.val.x[:10]), plain, atol=1e-6)


def test_balanced_softmax_finds_more_of_the_minority_than_plain_training(imbalanced):
    x, y = imbalanced.train.x, imbalanced.train.y
    minority = np.isin(imbalanced.test.y, [3, 8])
    recall = {}
    for loss in ("cross_entropy", "balanced_softmax"):
        model = CNNClassifier(epochs=8, loss=loss, random_state=0).fit(x, y, n_classes=10)
        recall[loss] = (model.predict(imbalanced.test.x[minority]) == imbalanced.test.y[minority]).mean()
    assert recall["balanced_softmax"] > recall["cross_entropy"]


def test_logistic_balanced_softmax_divides_by_the_training_shares(imbalanced):
    x, y = imbalanced.train.x, imbalanced.train.y
    plain = LogisticClassifier(max_iter=200).fit(x, y, n_classes=10).predict_proba(imbalanced.val.x)
    adjusted = LogisticClassifier(max_iter=200, loss="balanced_softmax").fit(x, y, n_classes=10).predict_proba(imbalanced.val.x)
    expected = plain / class_shares(y, 10)
    np.testing.assert_allclose(adjusted, expected / expected.sum(axis=1, keepdims=True), rtol=1e-6)


def test_logistic_mixup_enters_each_mix_once_per_label_with_weights_summing_to_one(imbalanced, monkeypatch):
    x, y = imbalanced.train.x[:200], imbalanced.train.y[:200]
    fitted = {}

    class Recording(classifier.LogisticRegression):
        def fit(self, X, labels, sample_weight=None):
            fitted.update(X=X, y=labels, w=sample_weight)
            return super().fit(X, labels, sample_weight=sample_weight)

    monkeypatch.setattr(classifier, "LogisticRegression", Recording)
    LogisticClassifier(max_iter=50, mixup=0.4).fit(x, y, n_classes=10)
    n = len(x)
    assert len(fitted["X"]) == 2 * n
    np.testing.assert_array_equal(fitted["X"][:n], fitted["X"][n:])  # the same mix, once per label
    np.testing.assert_allclose(fitted["w"][:n] + fitted["w"][n:], 1.0, rtol=1e-6)
    assert set(np.unique(fitted["y"])) <= set(np.unique(y))


def test_cnn_mixup_trains_on_soft_targets_and_is_reproducible(imbalanced):
    x, y = imbalanced.train.x, imbalanced.train.y
    a = CNNClassifier(epochs=2, mixup=0.4, random_state=1).fit(x, y, n_classes=10)
    b = CNNClassifier(epochs=2, mixup=0.4, random_state=1).fit(x, y, n_classes=10)
    plain = CNNClassifier(epochs=2, random_state=1).fit(x, y, n_classes=10)
    np.testing.assert_allclose(a.predict_proba(x[:20]), b.predict_proba(x[:20]), atol=1e-6)
    assert not np.allclose(a.predict_proba(x[:20]), plain.predict_proba(x[:20]), atol=1e-3)


def test_augmentation_sees_only_the_training_batches_and_draws_anew_each_epoch(imbalanced, monkeypatch):
    x, y = imbalanced.train.x[:130], imbalanced.train.y[:130]
    batches = []

    class Spy:
        def __call__(self, batch):
            batches.append(batch.copy())
            return np.clip(batch + 0.01, 0, 1)

    monkeypatch.setattr(classifier, "_augmenter", lambda seed: Spy())
    CNNClassifier(epochs=2, batch_size=64, augment=True, random_state=0).fit(x, y, n_classes=10,
                                                                             validation=(imbalanced.val.x, imbalanced.val.y))
    assert len(batches) == 2 * 3  # every batch of every epoch (64 + 64 + 2 items)
    flat = {item.tobytes() for item in x}
    assert all(item.tobytes() in flat for batch in batches for item in batch)  # training items only, never validation
    assert sum(len(b) for b in batches) == 2 * len(x)


def test_unknown_options_are_refused_in_one_line():
    with pytest.raises(GanpipeError, match="unknown loss 'focal'"):
        CNNClassifier(loss="focal")
    with pytest.raises(GanpipeError, match="mixup alpha"):
        LogisticClassifier(mixup=-1)


def test_sample_weights_weigh_each_items_loss_and_the_balanced_softmax_prior():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 1])
    w = torch.tensor([1.0, 0.5, 0.25, 1.0])
    per_item = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    weighted = torch.nn.functional.one_hot(labels, 3).float() * w[:, None]
    assert soft_cross_entropy(logits, weighted).item() == pytest.approx(((w * per_item).sum() / w.sum()).item(), rel=1e-6)
    y = np.array([0, 0, 1, 1, 1, 2])
    shares = class_shares(y, 3, np.array([1, 1, 1, 0.5, 0.5, 2.0]))
    np.testing.assert_allclose(shares, np.array([2.0, 2.0, 2.0]) / 6)


def test_cnn_balanced_softmax_uses_the_weighted_class_shares(imbalanced, monkeypatch):
    x, y = imbalanced.train.x[:300], imbalanced.train.y[:300]
    weights = np.where(np.isin(y, [3, 8]), 1.0, 0.5)
    outputs, seen = raw_training_logits(monkeypatch), []
    real = classifier.soft_cross_entropy
    monkeypatch.setattr(classifier, "soft_cross_entropy", lambda logits, *a: (seen.append(logits.detach().clone()), real(logits, *a))[1])
    CNNClassifier(epochs=1, loss="balanced_softmax", random_state=0).fit(x, y, n_classes=10, sample_weight=weights)
    assert len(seen) == len(outputs) > 0  # weighted items go through the soft-target loss
    expected = np.log(class_shares(y, 10, weights))
    for raw, adjusted in zip(outputs, seen):
        np.testing.assert_allclose((adjusted - raw).numpy(), np.broadcast_to(expected, raw.shape), atol=1e-5)


def test_logistic_passes_the_weights_on_and_mixes_them_with_their_labels(imbalanced, monkeypatch):
    x, y = imbalanced.train.x[:100], imbalanced.train.y[:100]
    weights = np.linspace(0.1, 1.0, len(x))
    fitted = {}

    class Recording(classifier.LogisticRegression):
        def fit(self, X, labels, sample_weight=None):
            fitted.update(y=labels, w=sample_weight)
            return super().fit(X, labels, sample_weight=sample_weight)

    monkeypatch.setattr(classifier, "LogisticRegression", Recording)
    LogisticClassifier(max_iter=30).fit(x, y, n_classes=10, sample_weight=weights)
    np.testing.assert_allclose(fitted["w"], weights)
    LogisticClassifier(max_iter=30, mixup=0.4).fit(x, y, n_classes=10, sample_weight=weights)
    draws = np.random.default_rng([0, 1])  # the classifier's own mixing draws (random_state 0)
    lam = draws.beta(0.4, 0.4, size=len(x)).astype(np.float32)
    partner = draws.permutation(len(x))
    # each mix enters once per label, weighted by its share of the mix times that label's item's weight
    np.testing.assert_allclose(fitted["w"], np.concatenate([lam * weights, (1 - lam) * weights[partner]]), rtol=1e-6)
    np.testing.assert_array_equal(fitted["y"], np.concatenate([y, y[partner]]))
