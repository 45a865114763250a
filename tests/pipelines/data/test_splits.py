from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.sources import load_dataset
from pipelines.data.specs import parse_class_spec
from pipelines.data.splits import make_imbalanced, stratified_split
from pipelines.errors import GanpipeError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_split_is_deterministic_disjoint_and_complete(digits):
    a = stratified_split(digits, seed=3)
    b = stratified_split(digits, seed=3)
    c = stratified_split(digits, seed=4)
    assert a.train.item_ids == b.train.item_ids and a.test.item_ids == b.test.item_ids
    assert a.test.item_ids != c.test.item_ids
    parts = [set(a.train.item_ids), set(a.val.item_ids), set(a.test.item_ids)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == len(digits)


def test_split_is_stratified(digits):
    s = stratified_split(digits, seed=0, val_fraction=0.2, test_fraction=0.3)
    for part, fraction in [(s.test, 0.3), (s.val, 0.2)]:
        for name, count in part.class_counts.items():
            assert abs(count - fraction * digits.class_counts[name]) <= 1


def test_split_needs_three_items_per_class(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 8, 8), np.float32), y=np.array([0, 0, 0, 1, 1]))
    with pytest.raises(GanpipeError, match="class '1' .* has 2 item"):
        stratified_split(load_dataset(f"npz:{path}"))


def test_make_imbalanced_only_removes_training_items(digits):
    splits = stratified_split(digits, seed=0)
    cut = make_imbalanced(splits, {"2": 10, 5: 4}, seed=0)
    assert cut.train.class_counts["2"] == 10 and cut.train.class_counts["5"] == 4
    assert cut.train.class_counts["3"] == splits.train.class_counts["3"]
    assert cut.val is splits.val and cut.test is splits.test
    assert set(cut.train.item_ids) <= set(splits.train.item_ids)
    again = make_imbalanced(splits, {"2": 10, 5: 4}, seed=0)
    assert again.train.item_ids == cut.train.item_ids


@pytest.mark.parametrize(
    "minority, message",
    [
        ({"eleven": 3}, "unknown class 'eleven'"),
        ({"2": 100000}, "class '2' has .* training items; cannot keep 100000"),
        ({"2": 0}, "must be a whole number >= 1"),
    ],
)
def test_make_imbalanced_bad_requests(digits, minority, message):
    with pytest.raises(GanpipeError, match=message):
        make_imbalanced(stratified_split(digits), minority)


def test_parse_class_spec():
    assert parse_class_spec("2:10, 5:3", counts="required") == {"2": 10, "5": 3}
    assert parse_class_spec("a:b:4", counts="required") == {"a:b": 4}
    for bad, message in [("2=10", "bad class count '2=10'"), ("2:x", "bad count 'x' in '2:x'"), ("", "no classes given"),
                         ("2:1,2:3", "given twice")]:
        with pytest.raises(GanpipeError, match=message):
            parse_class_spec(bad, counts="required")
    assert parse_class_spec("2:10, 5 ,scratch:3") == {"2": 10, "5": None, "scratch": 3}
    with pytest.raises(GanpipeError, match="given twice"):
        parse_class_spec("2,2:3")
    assert parse_class_spec("0, 7", counts="none") == {"0": None, "7": None}
    with pytest.raises(GanpipeError, match="no classes given"):
        parse_class_spec(" , ", counts="none")
