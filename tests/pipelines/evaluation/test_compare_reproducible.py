"""Same seeds, same table: whether seeds run one after another or at once in threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from gan_aug import GANOverSampler
from pipelines.data.sources import load_dataset
from pipelines.evaluation import compare

ARMS = ["none", "ros", "gan"]


def train_gan(train, seed):
    return GANOverSampler(steps=4, judge_steps=20, random_state=seed).fit(train.x, train.y).generate  # the judge in, short


def table(dataset, run_all) -> pd.DataFrame:
    rows = [r for rows in run_all(lambda seed: compare.run_seed(dataset, {"3": 5, "8": 5}, ARMS, seed, "cnn", 1, train_gan),
                                  [0, 1]) for r in rows]
    return compare.summarise_comparison(rows).results


def test_compare_is_identical_sequentially_and_in_threads():
    dataset = load_dataset("digits")
    sequential = table(dataset, lambda f, seeds: [f(s) for s in seeds])
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = table(dataset, lambda f, seeds: list(pool.map(f, seeds)))
    with ThreadPoolExecutor(max_workers=2) as pool:
        again = table(dataset, lambda f, seeds: list(pool.map(f, seeds)))
    assert sequential["minority_recall"].nunique() > 1  # the table is not trivially constant
    pd.testing.assert_frame_equal(threaded, sequential, check_exact=True)
    pd.testing.assert_frame_equal(again, sequential, check_exact=True)
