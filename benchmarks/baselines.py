"""Downstream classifier on an imbalanced split with the classic remedies, over several seeds.

These are the numbers every GAN arm has to beat: mnist5k, classes 2, 5 and 8 cut to 10 training
images, small CNN, metrics on the untouched test split.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE, RandomOverSampler

from pipelines.classifier import CNNClassifier
from pipelines.data import load_dataset
from pipelines.metrics import classification_report
from pipelines.splits import make_imbalanced, stratified_split
from pipelines.tracking import markdown_table

MINORITY = {"2": 10, "5": 10, "8": 10}


def _resample(arm: str, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if arm == "none":
        return x, y
    sampler = RandomOverSampler(random_state=seed) if arm == "ros" else SMOTE(random_state=seed, k_neighbors=5)
    flat, y_new = sampler.fit_resample(x.reshape(len(x), -1), y)
    return flat.reshape((-1,) + x.shape[1:]).astype(np.float32), y_new


def run(quick: bool = False) -> str:
    data, seeds, epochs = ("digits", [0], 3) if quick else ("mnist5k", [0, 1, 2], 15)
    dataset = load_dataset(data)
    rows = []
    for seed in seeds:
        splits = make_imbalanced(stratified_split(dataset, seed=seed), MINORITY, seed=seed)
        minority = [splits.train.class_index(k) for k in MINORITY]
        for arm in ("none", "ros", "smote"):
            start = time.perf_counter()
            x, y = _resample(arm, splits.train.x, splits.train.y, seed)
            model = CNNClassifier(epochs=epochs, random_state=seed).fit(x, y, n_classes=len(dataset.class_names))
            summary, _ = classification_report(splits.test.y, model.predict_proba(splits.test.x),
                                               dataset.class_names, minority)
            rows.append({"arm": arm, "seed": seed, **summary, "seconds": time.perf_counter() - start})
    table = pd.DataFrame(rows)
    metrics = ["minority_recall", "balanced_accuracy", "macro_f1", "minority_pr_auc", "seconds"]
    summary = table.groupby("arm", sort=False)[metrics].agg(["mean", "std"])
    summary.columns = [f"{m} {s}" for m, s in summary.columns]
    summary = summary.reset_index()
    return "\n".join([
        "## Classic baselines under imbalance\n",
        f"`{data}`, classes {', '.join(MINORITY)} cut to {next(iter(MINORITY.values()))} training images, "
        f"small CNN ({epochs} epochs), seeds {seeds}; mean and standard deviation over seeds, "
        "metrics on the untouched test split.\n",
        markdown_table(summary),
    ])
