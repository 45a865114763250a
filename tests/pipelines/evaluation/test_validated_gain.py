"""augment's verdict: the synthetic set against the best classic remedy, on the validation split only."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.sources import load_dataset
from pipelines.evaluation import validated_gain as module
from pipelines.evaluation.compare import seed_splits
from pipelines.evaluation.validated_gain import CLASSIC, USES, paired_bootstrap, validated_gain


def test_paired_bootstrap_on_known_cases():
    same = [np.array([True, False, True, True])]
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0)
    better = [np.ones(20, bool), np.ones(10, bool)]
    worse = [np.zeros(20, bool), np.r_[np.ones(5, bool), np.zeros(5, bool)]]
    difference, low, high = paired_bootstrap(better, worse)
    assert difference == pytest.approx((1.0 + 0.5) / 2)  # the mean over classes of each class's recall gap
    assert low < difference <= high <= 1.0 and low > 0


def test_the_verdict_is_made_on_validation_never_test_and_each_arm_sees_only_training_items(monkeypatch):
    splits, minority, targets = seed_splits(load_dataset("digits"), {"3": 5, "8": 5}, seed=0)
    rng = np.random.default_rng(0)
    synthetic = (rng.random((40, 1, 8, 8), dtype=np.float32), np.repeat(minority, 20))
    fitted, predicted = [], []
    real_make = module.make_classifier

    def spy(*args, **kwargs):
        model = real_make(*args, **kwargs)
        real_fit, real_predict = model.fit, model.predict

        def fit(x, y, n_classes=None, validation=None):
            fitted.append((x, y, kwargs))
            return real_fit(x, y, n_classes=n_classes, validation=validation)

        def predict(x):
            predicted.append(x)
            return real_predict(x)

        model.fit, model.predict = fit, predict
        return model

    monkeypatch.setattr(module, "make_classifier", spy)
    gain = validated_gain(splits, minority, synthetic, "logreg", seed=0)
    assert all(x is splits.val.x for x in predicted) and len(predicted) == len(USES) + len(CLASSIC)
    test_items = {item.tobytes() for item in splits.test.x}
    train_items = {item.tobytes() for item in splits.train.x} | {item.tobytes() for item in synthetic[0]}
    for (first_x, first_y, options), use in zip(fitted, USES):  # the synthetic set in each way: real training items and the exported ones
        assert len(first_x) == len(splits.train) + 40 and np.bincount(first_y)[minority].tolist() == [25, 25]
        assert {item.tobytes() for item in first_x} <= train_items
        assert options.get("augment", False) == bool(USES[use].get("augment"))
    assert set(gain.uses) == set(USES) and gain.gan == gain.uses[gain.use] == max(gain.uses.values())
    for x, y, options in fitted[len(USES):]:
        assert not {item.tobytes() for item in x} & test_items
        assert len(x) == len(splits.train) or np.bincount(y)[minority].tolist() == [25, 25]  # the same counts
    assert {o.get("loss") for _, _, o in fitted} >= {"balanced_softmax"}
    assert set(gain.classic) == set(CLASSIC) and gain.classic[gain.best] == max(gain.classic.values())
    assert gain.low <= gain.difference <= gain.high
    assert gain.difference == pytest.approx(gain.gan - gain.classic[gain.best])  # the chosen way's hits were compared
    assert gain.verdict == ("gain" if gain.low > 0 else "loss" if gain.high < 0 else "no clear difference")
    assert gain.items == int(np.isin(splits.val.y, minority).sum())
    assert gain.tag().startswith(f"{gain.difference:+.3f} [") and gain.best in gain.text()
    assert f"(synthetic set {gain.use})" in gain.tag() and f"best used {gain.use}" in gain.text()
