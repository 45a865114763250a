"""The cells of the GAN regime grid: step cells cut the named classes, the long tail decays by the stated ratio."""

from __future__ import annotations

import numpy as np

import re
import shutil
from pathlib import Path

import pytest
from benchmarks.regimes import LONG_TAIL, LONG_TAIL_RATIO, cache_name, cell_splits, cells_of
from pipelines.data.sources import load_dataset
from pipelines.data.splits import stratified_split


def test_cells_stop_at_half_the_smallest_class_and_end_with_the_long_tail():
    dataset = load_dataset("digits")
    smallest = int(np.bincount(stratified_split(dataset, seed=0).train.y).min())
    cells = cells_of(dataset)
    assert cells[-1] == LONG_TAIL and all(n <= smallest // 2 for n in cells[:-1]) and cells[0] == 5


def test_step_cell_cuts_only_the_minority_classes_of_the_training_split():
    dataset = load_dataset("digits")
    splits, minority, targets = cell_splits(dataset, ("3", "8"), 10, seed=1)
    counts = np.bincount(splits.train.y)
    assert counts[[3, 8]].tolist() == [10, 10] and minority == [3, 8]
    assert set(targets.values()) == {counts.max()}
    full = stratified_split(dataset, seed=1)
    assert len(splits.test) == len(full.test) and len(splits.val) == len(full.val)


def test_long_tail_decays_exponentially_to_the_ratio_and_its_tail_half_is_the_minority():
    dataset = load_dataset("digits")
    splits, minority, targets = cell_splits(dataset, ("3", "8"), LONG_TAIL, seed=0)
    counts = np.bincount(splits.train.y)
    assert (np.diff(counts) <= 0).all() and counts.min() >= 2
    assert counts[0] / counts[-1] >= LONG_TAIL_RATIO * 0.9
    ratios = counts[:-1] / counts[1:]
    assert np.allclose(ratios[:6], LONG_TAIL_RATIO ** (1 / 9), rtol=0.25)  # the same factor from class to class
    assert minority == [5, 6, 7, 8, 9] and set(targets) == set(minority) and set(targets.values()) == {counts[0]}


def test_a_cached_seed_is_reused_only_by_the_code_that_made_it(tmp_path, monkeypatch):
    from benchmarks import regimes

    first = regimes.code_key()
    assert first == regimes.code_key()
    monkeypatch.setattr(regimes, "ARMS", (*regimes.ARMS, "another"))
    assert regimes.code_key() != first


def test_cached_seed_files_are_portable_names_one_per_cell_and_seed():
    names = {cache_name("photo-crops@32", cell, seed, 1500, 15, "0123abcdef") for cell in (5, 50, LONG_TAIL)
             for seed in (0, 1)}
    assert len(names) == 6
    assert all(re.fullmatch(r"[A-Za-z0-9@.-]+\.csv", name) for name in names)  # no ':' or spaces (committed)
    assert cache_name("digits", LONG_TAIL, 0, 1500, 15, "k") == f"digits-long-tail-{LONG_TAIL_RATIO}-1-seed0-1500steps-15epochs-k.csv"


def test_the_cache_key_ignores_comments_and_docstrings_but_not_code():
    from benchmarks.regimes import source_digest

    plain = 'def f(x):\n    return x + 1\n'
    worded = '"""A module."""\n\n\ndef f(x):\n    """Adds one."""\n    # a comment\n    return x + 1  # why\n'
    assert source_digest(plain) == source_digest(worded)
    assert source_digest(plain) != source_digest(plain.replace("+ 1", "+ 2"))
    assert source_digest(plain) != source_digest(plain.replace("return x + 1", "return 'x + 1'"))
    only_doc = 'def f(x):\n    """Only a docstring."""\n'
    assert source_digest(only_doc) == source_digest('def f(x):\n    pass\n')


def test_a_cell_gets_confirmation_seeds_only_where_a_gan_arm_differs_significantly_on_the_primary_metric():
    import pandas as pd

    from benchmarks.regimes import PRIMARY, SIGNIFICANCE, significant

    def verdicts(p_primary: float, p_other: float) -> pd.DataFrame:
        return pd.DataFrame([{"arm": "gan", "metric": PRIMARY, "p_value": p_primary},
                             {"arm": "gan", "metric": "balanced_accuracy", "p_value": p_other}])

    assert significant(verdicts(SIGNIFICANCE / 2, 0.9))
    assert not significant(verdicts(SIGNIFICANCE, 0.9))
    assert not significant(verdicts(0.5, 0.001))  # balanced accuracy alone does not extend a cell


def test_the_targets_count_significantly_worse_cells_and_significant_gains_of_at_least_the_stated_size():
    import pandas as pd

    from benchmarks.regimes import GAIN, SIGNIFICANCE, target_counts

    primary = pd.DataFrame([
        {"cell": "5", "difference": -0.05, "p_value": SIGNIFICANCE / 2},  # worse, significant
        {"cell": "10", "difference": -0.05, "p_value": 0.3},  # worse, not significant: neither list
        {"cell": "25", "difference": GAIN, "p_value": SIGNIFICANCE / 2},  # a gain of the size asked for
        {"cell": "50", "difference": GAIN / 2, "p_value": 0.001},  # significant but too small
        {"cell": "100", "difference": 2 * GAIN, "p_value": SIGNIFICANCE},  # large but not significant
    ])
    assert target_counts(primary) == (["5"], ["25"])


def test_the_grid_builds_each_data_set_the_colour_one_in_colour_with_its_minority_classes():
    from benchmarks.regimes import COLOUR, COUNTS, DATA, dataset_of

    assert set(COLOUR) == {"photo-crops-32"} and set(COLOUR) < set(DATA)
    crops = dataset_of("photo-crops-32")
    assert crops.x.shape[1:] == (3, 32, 32) and set(DATA["photo-crops-32"]) <= set(crops.class_names)
    assert cells_of(crops) == [*COUNTS, LONG_TAIL]  # 400 crops a class: every step count fits
    digits = dataset_of("digits")
    assert digits.x.shape[1] == 1 and digits.source == load_dataset("digits").source


def _cache_with(tmp_path: Path, files: dict[str, str]) -> Path:
    """A cache folder holding committed digits seeds (key 4d8613b948) under other names."""
    from benchmarks import regimes

    for source, target in files.items():
        shutil.copy(regimes.CACHE / f"digits-{source}-1500steps-15epochs-4d8613b948.csv", tmp_path / target)
    return tmp_path


def test_cached_rows_are_those_of_the_key_by_cell_in_grid_order(tmp_path):
    from benchmarks.regimes import cached_rows

    cache = _cache_with(tmp_path, {
        "long-tail-50-1-seed0": "digits-long-tail-50-1-seed0-1500steps-15epochs-k1.csv",
        "5-seed0": "digits-5-seed0-1500steps-15epochs-k1.csv",
        "5-seed1": "digits-5-seed3-1500steps-15epochs-k1.csv",
        "10-seed0": "digits-10-seed0-1500steps-15epochs-k2.csv"})
    found = cached_rows("digits", "k1", cache=cache)
    assert list(found) == ["5", LONG_TAIL]  # cell 10 is cached at another key only
    assert sorted({row["seed"] for row in found["5"]}) == [0, 1]  # what the files hold, whatever their name
    assert len(found["5"]) == 2 * len(found[LONG_TAIL])


def test_the_summary_command_prints_each_cached_cell_and_rejects_an_unknown_cell_before_training(
        tmp_path, monkeypatch, capsys):
    from benchmarks import regimes

    cache = _cache_with(tmp_path, {"5-seed0": "digits-5-seed0-1500steps-15epochs-k1.csv",
                                   "5-seed1": "digits-5-seed1-1500steps-15epochs-k1.csv",
                                   "10-seed0": "digits-10-seed0-1500steps-15epochs-k1.csv"})
    monkeypatch.setattr(regimes, "CACHE", cache)
    regimes.main(["digits", "--key", "k1"])
    out = capsys.readouterr().out
    assert "digits cell 5: seeds [0, 1] (key k1)" in out and "| gan+albumentations |" in out
    # a cell with one seed so far (the grid has just begun it) prints its means without an interval
    assert "digits cell 10: seeds [0] (key k1; one seed: no interval or test yet)" in out
    assert out.count("| minority_recall |") == 2
    regimes.main(["digits", "--key", "nothing"])
    assert "no cached seeds of digits at key nothing" in capsys.readouterr().out
    monkeypatch.setattr(regimes, "measure_cell", lambda *a, **k: pytest.fail("trained before checking the cells"))
    with pytest.raises(SystemExit):
        regimes.main(["digits", "--run", "5,7"])
    assert "no cell '7' in digits" in capsys.readouterr().err


@pytest.mark.parametrize("differs, confirm, runs", [(True, True, 2), (False, True, 1), (True, False, 1)])
def test_a_measured_cell_takes_the_confirmation_seeds_only_when_asked_and_significant(monkeypatch, differs,
                                                                                       confirm, runs):
    from benchmarks import regimes

    rows = regimes.cached_rows("digits", "4d8613b948")["5"]  # five committed seeds of a real cell
    calls = []

    def run_cell(dataset, minority, cell, seeds, *args):
        calls.append(seeds)
        return [row for row in rows if row["seed"] in seeds], [30.0] * len(seeds)

    monkeypatch.setattr(regimes, "run_cell", run_cell)
    monkeypatch.setattr(regimes, "significant", lambda verdicts: differs)
    comparison, seconds = regimes.measure_cell(None, ("3", "8"), 5, regimes.SEEDS, 1500, 15, confirm=confirm)
    assert calls == [regimes.SEEDS, regimes.CONFIRM_SEEDS][:runs]
    assert sorted(comparison.results["seed"].unique()) == sorted(sum(calls, []))
    assert len(seconds) == len(sum(calls, []))
