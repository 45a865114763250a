from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import uncut_judge_probe


def test_recall_report_counts_each_class_present():
    truth = np.array([0, 0, 1, 1, 2])
    report = uncut_judge_probe.recall_report(np.array([0, 1, 1, 1, 0]), truth, ["a", "b", "c", "d"])
    assert report == {"accuracy": 0.6, "recall": {"a": 0.5, "b": 1.0, "c": 0.0}}  # d has no item: left out


def test_the_probe_scores_the_svm_judge_on_validation_and_test(capsys):
    assert uncut_judge_probe.main(["digits", "0", "--judges", "svm"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["judge"] == "svm" and len(line["val"]["recall"]) == len(line["test"]["recall"]) == 10
    assert line["test"]["accuracy"] > 0.9  # digits are easy for an RBF SVM: it learnt, it is not a constant


def test_an_unknown_judge_is_one_line_of_usage(capsys):
    with pytest.raises(SystemExit):
        uncut_judge_probe.main(["digits", "0", "--judges", "knn"])
    assert "unknown judge(s): knn" in capsys.readouterr().err
