"""The standard remedies for class imbalance, as arms of a comparison.

Every arm sees only the training split and brings each minority class up to the same target
count, so arms differ only in *how* the missing items are made.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from imblearn.over_sampling import SMOTE, RandomOverSampler

from pipelines.data.sources import ImageDataset
from pipelines.errors import GanpipeError
from pipelines.evaluation.arms import ARMS, GAN_ARMS
from pipelines.evaluation.augment import augment_to_counts

Synthesise = Callable[[np.ndarray, int], np.ndarray]  # (labels, seed) -> images


def apply_arm(
    arm: str,
    train: ImageDataset,
    targets: Mapping[int, int],
    seed: int,
    synthesise: Synthesise | None = None,
    synthetic_share: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Training data of one arm: ``(x, y, class_weight)``. ``targets`` maps minority class index to
    the item count it is brought up to; ``synthesise`` makes GAN images for the GAN arms. In the
    ``gan`` arm ``synthetic_share`` of the added items are synthetic and the rest random copies of
    real ones; ``gan+albumentations`` adds half synthetic, half classically augmented items."""
    x, y = train.x, train.y
    missing = {k: int(t - np.sum(y == k)) for k, t in targets.items() if t > np.sum(y == k)}
    if arm == "none" or not missing:
        return x, y, None
    if arm == "class_weight":
        return x, y, "balanced"
    if arm in ("ros", "smote"):
        strategy = {k: int(t) for k, t in targets.items() if k in missing}
        if arm == "ros":
            sampler = RandomOverSampler(sampling_strategy=strategy, random_state=seed)
        else:
            smallest = min(int(np.sum(y == k)) for k in missing)
            if smallest < 2:
                raise GanpipeError("SMOTE needs at least 2 training items in every minority class")
            sampler = SMOTE(sampling_strategy=strategy, k_neighbors=min(5, smallest - 1), random_state=seed)
        flat, y_new = sampler.fit_resample(x.reshape(len(x), -1), y)
        return flat.reshape((-1, *x.shape[1:])).astype(np.float32), y_new, None
    if arm == "albumentations":
        new_x, new_y = augment_to_counts(x, y, targets, random_state=seed)
        return np.concatenate([x, new_x]), np.concatenate([y, new_y]), None
    if arm in GAN_ARMS:
        if synthesise is None:
            raise ValueError(f"arm {arm!r} needs a synthesise function")
        share = synthetic_share if arm == "gan" else 0.5
        gan_share = {k: int(np.ceil(n * share)) for k, n in missing.items()}
        labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in sorted(gan_share.items())])
        parts_x, parts_y = [x, synthesise(labels, seed)], [y, labels]
        if arm == "gan":
            rng = np.random.default_rng(seed)
            copies = np.concatenate([rng.choice(np.flatnonzero(y == k), n - gan_share[k]) for k, n in sorted(missing.items())])
            parts_x.append(x[copies])
            parts_y.append(y[copies])
        else:
            rest = {k: int(np.sum(y == k)) + n - gan_share[k] for k, n in missing.items()}
            aug_x, aug_y = augment_to_counts(x, y, rest, random_state=seed)
            parts_x.append(aug_x)
            parts_y.append(aug_y)
        return np.concatenate(parts_x).astype(np.float32), np.concatenate(parts_y), None
    raise GanpipeError(f"unknown arm {arm!r}; choose from: {', '.join(ARMS)}")
