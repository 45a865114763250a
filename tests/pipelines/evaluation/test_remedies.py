from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.data.sources import ImageDataset
from pipelines.errors import GanpipeError
from pipelines.evaluation.compare import best_gan_arm, gan_verdicts, verdict_text
from pipelines.evaluation.arms import ARMS, NON_GAN_ARMS, parse_arms
from pipelines.evaluation.remedies import MIXUP_ALPHA, TRAINING, apply_arm
from pipelines.evaluation.statistics import mean_interval, paired_difference, summarise


@pytest.fixture
def train():
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 30 + [2] * 4)
    return ImageDataset(x=rng.random((64, 1, 8, 8), dtype=np.float32), y=y, class_names=("a", "b", "c"),
                        item_ids=tuple(map(str, range(64))), source="test")


def test_mean_interval_matches_the_t_formula():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    with pytest.raises(GanpipeError, match="at least 2 seeds"):
        mean_interval([0.5])


def test_paired_difference_on_known_cases():
    constant = paired_difference([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert constant["difference"] == pytest.approx(0.1) and constant["p_value"] == 0.0
    a, b = [0.9, 0.7, 0.8, 0.6], [0.5, 0.6, 0.9, 0.55]
    result = paired_difference(a, b)
    assert result["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert result["low"] < result["difference"] < result["high"]
    assert paired_difference([0.5, 0.5], [0.5, 0.5])["p_value"] == 1.0


def test_verdict_compares_each_gan_arm_with_the_baseline_best_on_validation():
    results = pd.DataFrame({
        "arm": ["none"] * 3 + ["ros"] * 3 + ["gan"] * 3,
        "seed": [0, 1, 2] * 3,
        "minority_recall": [0.5, 0.52, 0.48, 0.8, 0.82, 0.78, 0.7, 0.73, 0.69],
        "val_minority_recall": [0.5, 0.5, 0.5, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7],
    })
    verdict = gan_verdicts(results, "minority_recall").iloc[0]
    assert verdict["versus"] == "ros" and verdict["difference"] == pytest.approx((0.7 + 0.73 + 0.69 - 2.4) / 3)
    summary = summarise(results, ["minority_recall"])
    assert list(summary["arm"]) == ["none", "ros", "gan"]
    assert summary.loc[1, "minority_recall"] == pytest.approx(0.8)
    # the choice follows validation even where test would pick another arm: test never chooses
    results.loc[results.arm == "none", "val_minority_recall"] = 0.9
    assert gan_verdicts(results, "minority_recall").iloc[0]["versus"] == "none"


def test_the_gan_arm_validation_prefers_is_marked_whatever_test_says():
    rows = [{"arm": arm, "seed": seed, "val_minority_recall": val + 0.01 * seed, "minority_recall": test + 0.01 * seed}
            for seed in (0, 1, 2)
            for arm, val, test in (("gan", 0.80, 0.95), ("gan+albumentations", 0.85, 0.70),
                                   ("gan+mixup", 0.84, 0.99), ("balanced_softmax", 0.99, 0.50))]
    results = pd.DataFrame(rows)
    assert best_gan_arm(results, "minority_recall") == "gan+albumentations"  # not the test's best, not a non-GAN arm
    assert best_gan_arm(results[results.arm == "balanced_softmax"], "minority_recall") is None
    verdicts = gan_verdicts(results, "minority_recall")
    assert verdicts.set_index("arm")["chosen"].to_dict() == {"gan": False, "gan+albumentations": True, "gan+mixup": False}
    text = verdict_text(summarise(results, ["minority_recall"]), verdicts)
    assert "gan+albumentations (the GAN arm validation prefers) vs best non-GAN arm balanced_softmax" in text
    assert text.count("validation prefers") == 1


def test_intervals_of_bounded_metrics_stay_in_range():
    results = pd.DataFrame({"arm": ["ros"] * 2, "seed": [0, 1], "minority_recall": [0.98, 0.6]})
    row = summarise(results, ["minority_recall"], bounds=(0.0, 1.0)).iloc[0]
    assert 0.0 == row["minority_recall_low"] < row["minority_recall"] < row["minority_recall_high"] == 1.0
    assert paired_difference([1.0, 0.0], [0.0, 0.9], bounds=(-1.0, 1.0))["high"] == 1.0


def test_parse_arms():
    assert parse_arms("ros, gan") == ["ros", "gan"]
    with pytest.raises(GanpipeError, match="unknown arm"):
        parse_arms("ros,magic")


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_brings_minority_classes_to_the_target(train, arm):
    calls = []

    def synthesise(labels, seed):
        calls.append(labels)
        return np.full((len(labels), 1, 8, 8), 0.5, np.float32)

    x, y, options = apply_arm(arm, train, {2: 30}, seed=0, synthesise=synthesise, synthetic_weight=0.25)
    assert len(x) == len(y)
    weights = options.pop("sample_weight", None)
    assert options == TRAINING.get(arm, {})
    assert (weights is None) == (arm != "gan+balanced_softmax")
    if weights is not None:  # real items count fully, the 26 synthetic ones at the weight asked for
        assert weights.tolist() == [1.0] * 64 + [0.25] * 26 and calls[0].tolist() == [2] * 26
    if arm in ("none", "class_weight", "balanced_softmax"):  # the real items, unchanged
        assert len(y) == 64
        np.testing.assert_array_equal(x, train.x)
    else:
        assert np.bincount(y).tolist() == [30, 30, 30]
        np.testing.assert_array_equal(x[:64], train.x)  # the real items come first, unchanged
    if arm in ("ros", "ros+albumentations", "mixup"):  # the added items are copies of real minority items
        assert all(any(np.array_equal(item, real) for real in train.x[train.y == 2]) for item in x[64:])
    if arm in ("gan", "gan+mixup", "gan+albumentations"):  # share 1 (the default): every added item synthetic
        assert len(calls[0]) == 26 and set(calls[0]) == {2}


def test_the_training_arms_name_their_classifier_options():
    assert TRAINING["class_weight"] == {"class_weight": "balanced"}
    assert TRAINING["balanced_softmax"] == {"loss": "balanced_softmax"}
    assert TRAINING["mixup"] == {"mixup": MIXUP_ALPHA} and MIXUP_ALPHA > 0
    assert TRAINING["ros+albumentations"] == {"augment": True}
    assert TRAINING["gan+mixup"] == {"mixup": MIXUP_ALPHA}
    assert TRAINING["gan+albumentations"] == TRAINING["ros+albumentations"]  # the GAN twin of the classic arm
    assert TRAINING["gan+balanced_softmax"] == {"loss": "balanced_softmax"}
    assert {a for a in TRAINING if not a.startswith("gan")} <= set(NON_GAN_ARMS)
