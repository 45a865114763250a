from __future__ import annotations

import json

import numpy as np

from benchmarks import judge_probe


def test_judge_report_counts_recall_and_precision_of_the_minority_classes():
    truth = np.array([0, 0, 1, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 0, 0, 0])
    report = judge_probe.judge_report(predicted, truth, [1, 2], ["a", "b", "c"])
    assert report["accuracy"] == round(3 / 7, 3)
    assert report["minority_recall"] == {"b": round(2 / 3, 3), "c": 0.0}
    assert report["minority_precision"] == {"b": round(2 / 3, 3), "c": 0.0}  # c is never predicted


def test_the_probe_trains_the_judge_with_the_settings_given(capsys):
    assert judge_probe.main(["digits", "0", '{"judge_steps": 5}']) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["config"] == {"judge_steps": 5} and set(line["minority_recall"]) == {"3", "8"}
    assert 0.0 <= line["accuracy"] <= 1.0


def test_colour_trains_a_different_judge_on_the_same_split(capsys):
    lines = []
    for extra in ([], ["--colour"]):
        assert judge_probe.main(["digits", "0", '{"judge_steps": 20}', *extra]) == 0
        lines.append(json.loads(capsys.readouterr().out))
    assert [line["colour"] for line in lines] == [False, True]
    assert lines[0]["minority_recall"] != lines[1]["minority_recall"] or lines[0]["accuracy"] != lines[1]["accuracy"]
