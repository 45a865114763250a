"""The gan arm's synthetic share is chosen on the validation split; the test split only reports."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.data.sources import load_dataset
from pipelines.evaluation import compare

VAL_SCORE = {0.5: 0.2, 0.75: 0.9, 1.0: 0.5}
TEST_SCORE = {0.5: 0.99, 0.75: 0.3, 1.0: 0.1}  # test would pick 0.5: it must not be asked


def test_gan_share_is_chosen_on_validation_never_on_test(monkeypatch):
    splits, minority_idx, targets = compare.seed_splits(load_dataset("digits"), {"3": 5}, seed=0)
    current, made = {}, {}
    real_apply = compare.apply_arm

    def apply(arm, train, targets, seed, synthesise, synthetic_share=1.0):
        current["share"] = synthetic_share
        return real_apply(arm, train, targets, seed, synthesise, synthetic_share=synthetic_share)

    class Stub:
        def fit(self, x, y, n_classes, validation=None):
            self.share = current["share"]
            return self

        def predict_proba(self, x):
            proba = np.zeros((len(x), 10))
            made[id(proba)] = ("val" if x is splits.val.x else "test", self.share)
            return proba

    def report(y_true, proba, names, minority):
        split, share = made[id(proba)]
        return {"minority_recall": (VAL_SCORE if split == "val" else TEST_SCORE)[share]}, pd.DataFrame(
            {"class": [], "recall": []})

    monkeypatch.setattr(compare, "apply_arm", apply)
    monkeypatch.setattr(compare, "make_classifier", lambda *a, **k: Stub())
    monkeypatch.setattr(compare, "classification_report", report)
    synthesise = lambda labels, seed: np.zeros((len(labels), *splits.train.x.shape[1:]), np.float32)  # noqa: E731
    row = compare.evaluate_arms(splits, minority_idx, targets, ["gan"], "cnn", 1, 0, synthesise)[0]
    assert row["synthetic_share"] == 0.75
    assert row["minority_recall"] == TEST_SCORE[0.75] and row["val_minority_recall"] == VAL_SCORE[0.75]
