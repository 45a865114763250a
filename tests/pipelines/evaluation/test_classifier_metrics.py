from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.sources import load_dataset
from pipelines.data.splits import stratified_split
from pipelines.errors import GanpipeError
from pipelines.evaluation.classifier import CNNClassifier, LogisticClassifier, make_classifier
from pipelines.evaluation.metrics import classification_report


def test_metrics_on_a_known_case():
    y = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 0])
    proba = np.eye(2)[pred]
    summary, table = classification_report(y, proba, ["a", "b"], minority=[1])
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["balanced_accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    assert summary["g_mean"] == pytest.approx(np.sqrt(0.75 * 0.5))
    assert summary["minority_recall"] == pytest.approx(0.5)
    assert table.loc[1, "precision"] == pytest.approx(0.5)
    assert table["support"].tolist() == [4, 2]


def test_g_mean_is_zero_when_a_class_is_never_found():
    y = np.array([0, 1, 2])
    summary, _ = classification_report(y, np.eye(3)[[0, 0, 2]], ["a", "b", "c"])
    assert summary["g_mean"] == 0.0


@pytest.mark.parametrize("model", [CNNClassifier(epochs=4), LogisticClassifier()])
def test_classifiers_learn_digits(model):
    s = stratified_split(load_dataset("digits"), seed=0)
    model.fit(s.train.x, s.train.y, n_classes=10)
    proba = model.predict_proba(s.test.x)
    assert proba.shape == (len(s.test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (model.predict(s.test.x) == s.test.y).mean() > 0.85


def test_cnn_is_reproducible_with_a_seed():
    s = stratified_split(load_dataset("digits"), seed=0)
    a = CNNClassifier(epochs=1, random_state=3).fit(s.train.x, s.train.y).predict_proba(s.test.x[:20])
    b = CNNClassifier(epochs=1, random_state=3).fit(s.train.x, s.train.y).predict_proba(s.test.x[:20])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_unknown_classifier():
    with pytest.raises(GanpipeError, match="unknown classifier 'svm'"):
        make_classifier("svm")


def test_min_steps_lengthens_training_on_small_data():
    s = stratified_split(load_dataset("digits"), seed=0)
    x, y = s.train.x[:64], s.train.y[:64]  # one batch per epoch
    short = CNNClassifier(epochs=1, random_state=0).fit(x, y, n_classes=10)
    long = CNNClassifier(epochs=1, min_steps=60, random_state=0).fit(x, y, n_classes=10)
    assert (long.predict(x) == y).mean() > (short.predict(x) == y).mean()


def test_validation_curves_do_not_change_what_is_learned():
    s = stratified_split(load_dataset("digits"), seed=0)
    plain = CNNClassifier(epochs=3, random_state=1).fit(s.train.x, s.train.y)
    watched = CNNClassifier(epochs=3, random_state=1).fit(s.train.x, s.train.y, validation=(s.val.x, s.val.y))
    np.testing.assert_array_equal(plain.predict_proba(s.test.x), watched.predict_proba(s.test.x))
    assert [r["epoch"] for r in watched.history_] == [1, 2, 3]
    assert all({"loss", "val_loss", "val_balanced_accuracy", "time"} <= set(r) for r in watched.history_)
    assert watched.history_[-1]["loss"] < watched.history_[0]["loss"]  # it learns
    assert "val_loss" not in plain.history_[0]  # no validation set, no validation curve
