"""The synthesis bench's per-seed cache (a finished seed is taken back, the sample sheet with it) and its uncut judge."""

from __future__ import annotations

import numpy as np

from benchmarks import synthesis
from pipelines.data.sources import load_dataset
from pipelines.evaluation.compare import seed_splits


def test_a_finished_seed_is_taken_from_the_cache_with_its_sample_sheet(tmp_path, monkeypatch):
    dataset, calls = load_dataset("digits"), []

    def run_seed(dataset, minority, seed, steps, epochs, sheet=False):
        calls.append((seed, sheet))
        return {"quality": [{"class": "3", "method": "gan"}], "rows": [], "gan_seconds": 1.0,
                "augment_seconds": 2.0, "judge_accuracy": {"3": 0.9}, "sheet": b"png" if sheet else None}

    monkeypatch.setattr(synthesis, "run_seed", run_seed)
    first = synthesis._cached_seed(dataset, {"3": 5}, 0, 40, 2, True, tmp_path)
    again = synthesis._cached_seed(dataset, {"3": 5}, 0, 40, 2, True, tmp_path)
    assert calls == [(0, True)] and again == first and again["sheet"] == b"png"
    synthesis._cached_seed(dataset, {"3": 5}, 1, 40, 2, False, tmp_path)  # another seed: trained
    synthesis._cached_seed(dataset, {"3": 6}, 0, 40, 2, True, tmp_path)  # another cut: trained
    assert calls == [(0, True), (1, False), (0, True)]
    assert synthesis._cached_seed(dataset, {"3": 5}, 1, 40, 2, True, tmp_path)["sheet"] == b"png"  # no sheet kept: again
    assert calls[-1] == (1, True) and len(list(tmp_path.iterdir())) == 3


def test_uncut_judge_agreement_scores_the_samples_with_the_judge_given(monkeypatch):
    """A judge passed in is used as it is (none is trained); agreement is the share of samples it
    gives the class asked for, accuracy its share right on the class's real test images."""
    dataset = load_dataset("digits")
    splits, minority_idx, _ = seed_splits(dataset, {"3": 5, "8": 5}, 0)
    monkeypatch.setattr(synthesis, "uncut_judge", lambda *a: (_ for _ in ()).throw(AssertionError("trained")))

    class Judge:  # says 3 for every image, whatever it shows
        def predict(self, x):
            return np.full(len(x), 3)

    class Gan:
        def generate(self, labels, seed=0):
            return np.zeros((len(labels), *dataset.x.shape[1:]), np.float32)

    agreement, accuracy = synthesis.uncut_judge_agreement(dataset, splits, minority_idx, Gan(), 0, Judge())
    assert agreement == {"3": 1.0, "8": 0.0} and accuracy == {"3": 1.0, "8": 0.0}


def test_confirmation_seeds_run_only_where_a_gan_arm_is_significant_and_all_seeds_are_reported(monkeypatch):
    import benchmarks.regimes as regimes

    dataset = load_dataset("digits")
    for found_significant, expected in ((True, [0, 1, 2, 3, 4]), (False, [0, 1, 2])):
        trained, reported, judged = [], [], []
        monkeypatch.setattr(synthesis, "_cached_seed", lambda ds, minority, seed, *a: (trained.append(seed), {
            "quality": [{"seed": seed}], "rows": [{"seed": seed}], "gan_seconds": 1.0, "augment_seconds": 2.0,
            "judge_accuracy": {}, "sheet": None})[1])
        monkeypatch.setattr(synthesis, "summarise_comparison", lambda rows: type("C", (), {"verdicts": [r["seed"] for r in rows]}))
        monkeypatch.setattr(regimes, "significant", lambda verdicts, _s=found_significant: (judged.append(list(verdicts)), _s)[1])
        monkeypatch.setattr(synthesis, "_augment_section", lambda data, cut, seeds, *a: reported.append(seeds) or "")
        monkeypatch.setattr(synthesis, "_compare_section", lambda data, cut, seeds, epochs, steps, comparison, issue:
                            reported.append(comparison.verdicts) or "")
        synthesis.run_setting(dataset, {"3": 5}, [0, 1, 2], 40, 2, confirm=[3, 4])
        assert trained == expected and judged == [[0, 1, 2]]  # judged once, on the first seeds only
        assert reported == [expected, expected]
    trained.clear()
    synthesis.run_setting(dataset, {"3": 5}, [0, 1, 2], 40, 2)  # no confirmation seeds given: none run
    assert trained == [0, 1, 2]


def test_the_section_reports_taught_recall_per_method_and_reads_seeds_cached_without_it():
    import pandas as pd

    rows = [{"seed": seed, "class": c, "method": m, **{q: 0.5 for q in synthesis.QUALITY},
             "taught_recall": {"gan": 0.1, "smote": 0.4, "albumentations": 0.2}[m] + 0.1 * seed}
            for seed in (0, 1) for c in ("2", "5") for m in ("gan", "smote", "albumentations")]
    table = pd.DataFrame(rows)
    text = synthesis._augment_section("colour-mnist@32", "2, 5 cut to 10", [0, 1], 40, table, [1.0])
    line = next(x for x in text.splitlines() if x.startswith("- Taught recall"))
    assert "GAN 2: 0.15, 5: 0.15; SMOTE 2: 0.45, 5: 0.45; classic augmentation 2: 0.25" in line
    old = synthesis._augment_section("colour-mnist@32", "2, 5 cut to 10", [0, 1], 40,
                                     table.drop(columns="taught_recall"), [1.0])
    assert "Taught recall" not in old and "taught_recall" not in old
