"""Minority-class synthesis and the comparison of remedies, measured in one run.

mnist5k (classes 2, 5 and 8 cut to 10 training images) and digits (classes 3 and 8 cut to 5), 5 seeds.
For each seed one conditional GAN is trained on the training split (`ganpipe augment` defaults); its
samples are scored against SMOTE and classic augmentation, and the same small CNN is trained under
every arm.
Nothing here looks at the test split except the final classifier metrics.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from gan_aug import GANConfig, GANOverSampler
from pipelines.data.sources import load_dataset
from pipelines.evaluation.compare import METRICS, Comparison, evaluate_arms, seed_splits, summarise_comparison
from pipelines.evaluation.quality import memorisation
from pipelines.evaluation.arms import ARMS
from pipelines.evaluation.sample_quality import SAMPLES, compare_sample_quality
from pipelines.text import markdown_table

# (data, minority classes and the training images each keeps): the two settings
SETTINGS = [("mnist5k", {"2": 10, "5": 10, "8": 10}), ("digits", {"3": 5, "8": 5})]
QUALITY = ["frechet", "precision", "recall", "coverage", "label_agreement", "near_duplicate_share",
           "raw_near_duplicate_share"]


def run(setting: tuple[str, dict[str, int]], quick: bool = False) -> str:
    """The sections of one ``(data, minority)`` setting of :data:`SETTINGS`."""
    seeds, steps, epochs = ([0, 1], 40, 2) if quick else ([0, 1, 2, 3, 4], 1500, 15)
    return run_setting(*setting, seeds, steps, epochs)


def run_setting(data: str, minority: dict[str, int], seeds: list[int], steps: int, epochs: int) -> str:
    """One conditional GAN per seed on the training split: its samples scored beside SMOTE and
    classic augmentation, and the classifier trained under every arm."""
    dataset = load_dataset(data)
    quality_tables, rows, gan_seconds = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        splits, minority_idx, targets = seed_splits(dataset, dict(minority), seed)
        gan = GANOverSampler(steps=steps, random_state=seed).fit(splits.train.x, splits.train.y)
        gan_seconds.append(gan.gan_.seconds)
        rows.extend(evaluate_arms(splits, minority_idx, targets, list(ARMS), "cnn", epochs, seed, gan.generate))
        quality = compare_sample_quality(splits, lambda labels, s: gan.generate(labels, seed=s + 10_000), minority_idx, seed)
        # how often the generator itself draws near-copies, before the novelty filter drops them
        raw = {splits.train.class_names[k]: memorisation(
            gan.generate(np.full(SAMPLES, k), seed=seed + 10_000, novelty=False),
            splits.train.x[splits.train.y == k])["near_duplicate_share"] for k in minority_idx}
        quality["raw_near_duplicate_share"] = [raw[c] if m == "gan" else np.nan for c, m in zip(quality["class"], quality.method)]
        quality_tables.append(quality.assign(seed=seed))
        print(f"[bench] synthesis {data} seed {seed}: {time.perf_counter() - start:.0f} s (GAN {gan_seconds[-1]:.0f} s)",
              flush=True)
    cut = ", ".join(f"{k} cut to {n}" for k, n in minority.items())
    return _augment_section(data, cut, seeds, steps, pd.concat(quality_tables), gan_seconds) + "\n\n" + \
        _compare_section(data, cut, seeds, epochs, steps, summarise_comparison(rows))


def _augment_section(data, cut, seeds, steps, table: pd.DataFrame, seconds: list[float]) -> str:
    by_method = table.groupby(["class", "method"], sort=False)[QUALITY].mean().reset_index()
    overall = table.groupby("method", sort=False)[QUALITY].mean().reset_index()
    gan = table[table.method == "gan"].set_index(["seed", "class"])["frechet"]
    smote = table[table.method == "smote"].set_index(["seed", "class"])["frechet"]
    wins = int((gan < smote.loc[gan.index]).sum())
    gan_rows = table[table.method == "gan"].groupby("class")
    agreement, duplicates = gan_rows["label_agreement"].mean(), gan_rows["near_duplicate_share"].mean()
    raw = gan_rows["raw_near_duplicate_share"].mean()
    novelty = GANConfig.novelty_quantile
    return "\n".join([
        f"## Minority-class synthesis on `{data}`: sample quality (issue 9)\n",
        f"`{data}`, classes {cut} training images, GAN with {steps} generator steps (judge-guided, "
        f"guide weight {GANConfig.guide_weight}), seeds {seeds}; {SAMPLES} samples per class and method. "
        "Real reference: the validation images of the class (never test); features and label agreement from a CNN "
        "trained on the real training split.\n",
        f"- GAN training time on 2 cores (judge included): mean {np.mean(seconds):.0f} s, max {np.max(seconds):.0f} s "
        "(target <= 300 s).",
        f"- GAN label agreement per class: {', '.join(f'{k}: {v:.0%}' for k, v in agreement.items())} "
        "(target >= 90%).",
        f"- GAN near-duplicate share per class: {', '.join(f'{k}: {v:.2f}' for k, v in duplicates.items())} "
        "(target <= 0.2)" + (f"; the generator's own share before its novelty filter (quantile {novelty}) "
                             f"drops near-copies: {', '.join(f'{k}: {v:.2f}' for k, v in raw.items())}." if novelty else "."),
        f"- GAN Fréchet distance below SMOTE's in {wins} of {len(gan)} (seed, class) pairs.\n",
        "Mean over seeds, per class and method:\n",
        markdown_table(by_method),
        "Mean over minority classes and seeds:\n",
        markdown_table(overall),
    ])


def _compare_section(data, cut, seeds, epochs, steps, comparison: Comparison) -> str:
    summary, verdicts = comparison.summary, comparison.verdicts
    shown = summary[["arm"] + [c for m in METRICS for c in (m, f"{m}_low", f"{m}_high")][:9]]
    shares = comparison.results.loc[comparison.results.arm == "gan", "synthetic_share"].tolist()
    return "\n".join([
        f"## Comparison of remedies on `{data}`: does the GAN help the classifier? (issue 9)\n",
        f"`{data}`, classes {cut} training images, small CNN ({epochs} epochs), GAN {steps} steps, seeds {seeds}; "
        "every arm brings each minority class to the majority count; metrics on the untouched test split, mean and "
        "95% t-interval over seeds (clipped to [0, 1]). The best non-GAN arm and the `gan` arm's synthetic share "
        f"are chosen on the validation split; shares chosen per seed: {shares}.\n",
        markdown_table(shown),
        "All metrics (means):\n",
        markdown_table(summary[["arm"] + METRICS]),
        "GAN arms against the best non-GAN arm (chosen on validation), paired by seed, on test:\n",
        markdown_table(verdicts),
        comparison.text,
    ])
