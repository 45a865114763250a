"""Score synthetic images of some classes against held-out real ones, next to the classic remedies.

The feature space is a small CNN trained here on the real training split (no download); the real
reference for each class is the validation split, never the test split.

Label agreement asks whether a judge reads the samples as their class: a precision. It can be high
for samples that cover one corner of the class (colour digits drawn in one shape and stroke colour
per class: the uncut judge's agreement 0.84 / 0.90 / 0.67, taught recall 0.07 / 0.07 / 0.04, the
`colour-colour-mnist-32` section of docs/benchmarks.md). ``taught_recall`` asks the converse, as the
classification accuracy score of Ravuri & Vinyals (2019) does: a classifier that meets the rare
classes only through one method's samples (every other class through its real training images), and
its recall on the class's real reference images. Samples that teach the class score near what its
real images would; samples of a corner of it score low however well a judge reads them.
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
    device: str = "auto", taught: bool = False,
) -> pd.DataFrame:
    """One row per class and method (``gan``, ``smote``, ``albumentations``) with Fréchet distance,
    precision/recall/density/coverage, label agreement and memorisation, all from ``n`` samples, and
    with ``taught`` the ``taught_recall`` of the module's note (one more CNN per method). The
    feature network trains and embeds on ``device``; the metrics are computed on the host. ``n``
    defaults to :data:`SAMPLES`."""
    n = SAMPLES if n is None else n
    train = splits.train
    feature_net = CNNClassifier(**FEATURE_NET, class_weight="balanced", random_state=seed, device=device)
    feature_net.fit(train.x, train.y, n_classes=len(train.class_names))

    def embed(images: np.ndarray) -> np.ndarray:
        return feature_net.embed(images).astype(np.float64)

    candidates = method_samples(splits, generate, classes, seed, n)
    references = {k: reference_images(splits, k) for k in classes}
    taught_recall = {method: taught_recalls(splits, classes, x_fake, y_fake, references, seed, device)
                     for method, (x_fake, y_fake) in candidates.items()} if taught else {}
    rows = []
    for k in classes:
        reference, images = references[k]
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
                **({"taught_recall": taught_recall[method][k]} if taught else {}),
            })
    return pd.DataFrame(rows)


def method_samples(splits: Splits, generate: Generate, classes: Sequence[int], seed: int = 0, n: int | None = None
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{method: (images, labels)}``: ``n`` items of each class of ``classes`` from the GAN
    (``generate``), SMOTE and classic augmentation, the same draws :func:`compare_sample_quality` scores."""
    n = SAMPLES if n is None else n
    train = splits.train
    labels = np.repeat(np.asarray(classes, dtype=np.int64), n)
    counts = np.bincount(train.y, minlength=len(train.class_names))
    return {
        "gan": (generate(labels, seed), labels),
        "smote": smote_samples(train.x, train.y, classes, n, seed),
        "albumentations": augment_to_counts(train.x, train.y, {k: int(counts[k] + n) for k in classes}, random_state=seed),
    }


def taught_table(splits: Splits, generate: Generate, classes: Sequence[int], seed: int = 0, n: int | None = None,
                 device: str = "auto") -> pd.DataFrame:
    """Only the ``taught_recall`` column of :func:`compare_sample_quality` (``class``, ``method``,
    ``taught_recall``), from the same draws, for callers that time the rest of the table apart."""
    references = {k: reference_images(splits, k) for k in classes}
    return pd.DataFrame([{"class": splits.train.class_names[k], "method": method, "taught_recall": recall}
                         for method, (x_fake, y_fake) in method_samples(splits, generate, classes, seed, n).items()
                         for k, recall in taught_recalls(splits, classes, x_fake, y_fake, references, seed, device).items()])


def reference_images(splits: Splits, k: int) -> tuple[str, np.ndarray]:
    """``(name, images)``: the real images class ``k``'s samples are held against: its validation
    images, or with fewer than :data:`MIN_REFERENCE` of them, those and its training images."""
    images = splits.val.x[splits.val.y == k]
    if len(images) < MIN_REFERENCE:  # a rare class has almost no held-out images: use all real ones
        return "train+val", np.concatenate([images, splits.train.x[splits.train.y == k]])
    return "val", images


def taught_recalls(splits: Splits, classes: Sequence[int], x_fake: np.ndarray, y_fake: np.ndarray,
                   references: dict[int, tuple[str, np.ndarray]], seed: int, device: str = "auto") -> dict[int, float]:
    """Per class of ``classes``: the recall on its real reference images of a class-balanced CNN
    trained on the real training images of every other class and on ``(x_fake, y_fake)`` for
    ``classes`` (no real image of them)."""
    train = splits.train
    others = ~np.isin(train.y, classes)
    net = CNNClassifier(**FEATURE_NET, class_weight="balanced", random_state=seed + 1, device=device)
    net.fit(np.concatenate([train.x[others], x_fake]), np.concatenate([train.y[others], y_fake]),
            n_classes=len(train.class_names))
    return {k: float((net.predict(images) == k).mean()) for k, (_, images) in references.items()}
