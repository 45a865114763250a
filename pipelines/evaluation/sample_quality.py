"""Score synthetic images of some classes against held-out real ones, next to the classic remedies.

The feature space is a small CNN trained here on the real training split (no download); the real
reference for each class is the validation split, never the test split.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE

from pipelines.data.splits import Splits
from pipelines.evaluation.augment import augment_to_counts
from pipelines.evaluation.classifier import CNNClassifier
from pipelines.evaluation.quality import frechet_distance, label_agreement, memorisation, precision_recall_density_coverage

SAMPLES = 200  # synthetic items per class and method
MIN_REFERENCE = 10  # held-out images a class needs before they alone serve as the real reference
FEATURE_NET = {"epochs": 10, "min_steps": 300}  # training of the feature network (class-balanced CNN)
Generate = Callable[[np.ndarray, int], np.ndarray]  # (labels, seed) -> images (N, C, H, W) in [0, 1]


def smote_samples(x: np.ndarray, y: np.ndarray, classes: Sequence[int], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` new SMOTE items for each class in ``classes`` (only the new ones)."""
    counts = np.bincount(y)
    strategy = {k: int(counts[k] + n) for k in classes}
    k_neighbors = max(1, min(5, min(counts[k] for k in classes) - 1))
    flat, y_new = SMOTE(sampling_strategy=strategy, k_neighbors=k_neighbors, random_state=seed).fit_resample(
        x.reshape(len(x), -1), y)
    return flat[len(y):].reshape((-1, *x.shape[1:])).astype(np.float32), y_new[len(y):]


def compare_sample_quality(
    splits: Splits, generate: Generate, classes: Sequence[int], seed: int = 0, n: int | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """One row per class and method (``gan``, ``smote``, ``albumentations``) with Fréchet distance,
    precision/recall/density/coverage, label agreement and memorisation, all from ``n`` samples. The
    feature network trains and embeds on ``device``; the metrics are computed on the host. ``n``
    defaults to :data:`SAMPLES`."""
    n = SAMPLES if n is None else n
    train = splits.train
    feature_net = CNNClassifier(**FEATURE_NET, class_weight="balanced", random_state=seed, device=device)
    feature_net.fit(train.x, train.y, n_classes=len(train.class_names))

    def embed(images: np.ndarray) -> np.ndarray:
        return feature_net.embed(images).astype(np.float64)

    labels = np.repeat(np.asarray(classes, dtype=np.int64), n)
    counts = np.bincount(train.y, minlength=len(train.class_names))
    candidates = {
        "gan": (generate(labels, seed), labels),
        "smote": smote_samples(train.x, train.y, classes, n, seed),
        "albumentations": augment_to_counts(train.x, train.y, {k: int(counts[k] + n) for k in classes}, random_state=seed),
    }
    rows = []
    for k in classes:
        reference, images = "val", splits.val.x[splits.val.y == k]
        if len(images) < MIN_REFERENCE:  # a rare class has almost no held-out images: use all real ones
            reference, images = "train+val", np.concatenate([images, train.x[train.y == k]])
        real = embed(images)
        for method, (x_fake, y_fake) in candidates.items():
            fake = x_fake[y_fake == k]
            rows.append({
                "class": train.class_names[k], "method": method, "samples": len(fake),
                "reference": reference, "reference_items": len(real),
                "frechet": frechet_distance(real, embed(fake)) if len(real) >= 2 else float("nan"),
                **precision_recall_density_coverage(real, embed(fake)),
                "label_agreement": label_agreement(feature_net.predict(fake), y_fake[y_fake == k]),
                **memorisation(fake, train.x[train.y == k]),
            })
    return pd.DataFrame(rows)
