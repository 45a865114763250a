"""Minority-class synthesis and the comparison of remedies, measured in one run.

mnist5k, classes 2, 5 and 8 cut to 10 training images, 5 seeds. For each seed one conditional GAN
is trained on the training split (`ganpipe augment` defaults); its samples are scored against SMOTE
and classic augmentation (issue 3), and the same small CNN is trained under every arm (issue 4).
Nothing here looks at the test split except the final classifier metrics.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from gan_aug import GANOverSampler
from pipelines.data.sources import load_dataset
from pipelines.evaluation.compare import METRICS, Comparison, evaluate_arms, seed_splits, summarise_comparison
from pipelines.evaluation.remedies import ARMS
from pipelines.evaluation.sample_quality import SAMPLES, compare_sample_quality
from pipelines.tracking.runs import markdown_table

MINORITY = {"2": 10, "5": 10, "8": 10}
QUALITY = ["frechet", "precision", "recall", "coverage", "label_agreement", "near_duplicate_share"]


def run(quick: bool = False) -> str:
    data, seeds, steps, epochs = ("digits", [0, 1], 40, 2) if quick else ("mnist5k", [0, 1, 2, 3, 4], 1500, 15)
    dataset = load_dataset(data)
    quality_tables, rows, gan_seconds = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        splits, minority_idx, targets = seed_splits(dataset, dict(MINORITY), seed)
        gan = GANOverSampler(steps=steps, random_state=seed).fit(splits.train.x, splits.train.y)
        gan_seconds.append(gan.gan_.seconds)
        rows.extend(evaluate_arms(splits, minority_idx, targets, list(ARMS), "cnn", epochs, seed, gan.generate))
        quality = compare_sample_quality(splits, lambda labels, s: gan.generate(labels, seed=s + 10_000), minority_idx, seed)
        quality_tables.append(quality.assign(seed=seed))
        print(f"[bench] synthesis seed {seed}: {time.perf_counter() - start:.0f} s (GAN {gan_seconds[-1]:.0f} s)", flush=True)

    return _augment_section(data, seeds, steps, pd.concat(quality_tables), gan_seconds) + "\n\n" + \
        _compare_section(data, seeds, epochs, steps, summarise_comparison(rows))


def _augment_section(data, seeds, steps, table: pd.DataFrame, seconds: list[float]) -> str:
    by_method = table.groupby(["class", "method"], sort=False)[QUALITY].mean().reset_index()
    overall = table.groupby("method", sort=False)[QUALITY].mean().reset_index()
    gan = table[table.method == "gan"].set_index(["seed", "class"])["frechet"]
    smote = table[table.method == "smote"].set_index(["seed", "class"])["frechet"]
    wins = int((gan < smote.loc[gan.index]).sum())
    agreement = table[table.method == "gan"].groupby("class")["label_agreement"].mean()
    return "\n".join([
        "## Minority-class synthesis: sample quality (issue 3)\n",
        f"`{data}`, classes {', '.join(MINORITY)} cut to 10 training images, GAN with {steps} generator steps, "
        f"seeds {seeds}; {SAMPLES} samples per class and method. Real reference: the validation images "
        "of the class (never test); features and label agreement from a CNN trained on the real training split.\n",
        f"- GAN training time on 2 cores: mean {np.mean(seconds):.0f} s, max {np.max(seconds):.0f} s (target <= 300 s).",
        f"- GAN label agreement per class: {', '.join(f'{k}: {v:.0%}' for k, v in agreement.items())} "
        f"(target >= 90%).",
        f"- GAN Fréchet distance below SMOTE's in {wins} of {len(gan)} (seed, class) pairs.\n",
        "Mean over seeds, per class and method:\n",
        markdown_table(by_method),
        "Mean over minority classes and seeds:\n",
        markdown_table(overall),
    ])


def _compare_section(data, seeds, epochs, steps, comparison: Comparison) -> str:
    summary, verdicts = comparison.summary, comparison.verdicts
    shown = summary[["arm"] + [c for m in METRICS for c in (m, f"{m}_low", f"{m}_high")][:9]]
    return "\n".join([
        "## Comparison of remedies: does the GAN help the classifier? (issue 4)\n",
        f"`{data}`, classes {', '.join(MINORITY)} cut to 10 training images, small CNN ({epochs} epochs), "
        f"GAN {steps} steps, seeds {seeds}; every arm brings each minority class to the majority count; "
        "metrics on the untouched test split, mean and 95% t-interval over seeds.\n",
        markdown_table(shown),
        "All metrics (means):\n",
        markdown_table(summary[["arm"] + METRICS]),
        "GAN arms against the best non-GAN arm, paired by seed:\n",
        markdown_table(verdicts),
        comparison.text,
    ])
