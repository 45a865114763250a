from __future__ import annotations

import numpy as np

from pipelines.data.sources import load_dataset
from pipelines.data.splits import make_imbalanced, stratified_split
from pipelines.evaluation.sample_quality import compare_sample_quality, taught_table


def test_quality_table_scores_real_copies_well_and_noise_badly():
    splits = make_imbalanced(stratified_split(load_dataset("digits"), seed=0), {"3": 5}, seed=0)
    val_threes = splits.val.x[splits.val.y == 3]

    def copies_of_val(labels, seed):  # a "generator" that returns held-out real threes
        return val_threes[np.arange(len(labels)) % len(val_threes)]

    good = compare_sample_quality(splits, copies_of_val, [3], seed=0, n=40, taught=True)
    noise = compare_sample_quality(splits, lambda labels, s: np.random.default_rng(s).random((len(labels), 1, 8, 8),
                                                                                            dtype=np.float32), [3], 0, 40,
                                   taught=True)
    assert set(good["method"]) == {"gan", "smote", "albumentations"}
    g, n = good[good.method == "gan"].iloc[0], noise[noise.method == "gan"].iloc[0]
    assert g["reference"] == "val" and g["reference_items"] == len(val_threes)
    assert g["label_agreement"] > 0.75 and n["label_agreement"] < 0.5  # 5 training threes: an imperfect judge
    assert g["frechet"] < n["frechet"] and g["coverage"] > n["coverage"]
    # samples that are the class teach a classifier that never saw its real images; noise does not
    assert g["taught_recall"] > 0.8 and n["taught_recall"] < 0.2
    assert good["taught_recall"].between(0, 1).all()


def test_a_judge_can_agree_with_samples_that_teach_nothing_of_the_class():
    """Copies of one training three: a judge reads them as threes (label agreement 1), but a
    classifier taught the class by them alone misses most real threes (low taught recall)."""
    splits = make_imbalanced(stratified_split(load_dataset("digits"), seed=0), {"3": 5}, seed=0)
    val_threes = splits.val.x[splits.val.y == 3]
    one = compare_sample_quality(splits, lambda labels, s: np.repeat(val_threes[:1], len(labels), axis=0), [3],
                                 seed=0, n=40, taught=True)
    many = taught_table(splits, lambda labels, s: val_threes[np.arange(len(labels)) % len(val_threes)], [3],
                        seed=0, n=40)
    assert list(many.columns) == ["class", "method", "taught_recall"] and set(many.method) == {"gan", "smote",
                                                                                                 "albumentations"}
    one, many = one[one.method == "gan"].iloc[0], many[many.method == "gan"].iloc[0]
    assert one["label_agreement"] == 1.0
    assert one["taught_recall"] < many["taught_recall"]


def test_rare_class_falls_back_to_all_real_images_as_reference(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, 8, 8), dtype=np.float32)
    x[:50, 0, :4] += 1.0
    x = np.clip(x, 0, 1)
    y = np.array([0] * 50 + [1] * 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    splits = stratified_split(load_dataset(f"npz:{tmp_path / 'd.npz'}"), seed=0)
    table = compare_sample_quality(splits, lambda labels, s: x[50:][: len(labels)], [1], seed=0, n=8)
    row = table[table.method == "gan"].iloc[0]
    expected = int((splits.val.y == 1).sum() + (splits.train.y == 1).sum())
    assert row["reference"] == "train+val" and row["reference_items"] == expected < 10
    assert np.isfinite(table[["frechet", "precision", "coverage"]].to_numpy()).all()
    assert "taught_recall" not in table  # one more CNN per method only when asked for
