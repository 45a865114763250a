"""The standard remedies for class imbalance, as arms of a comparison, plus the statistics that
say whether one arm really beats another.

Every arm sees only the training split and brings each minority class up to the same target
count, so arms differ only in *how* the missing items are made.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE, RandomOverSampler
from scipy import stats

from pipelines.augment import augment_to_counts
from pipelines.data import ImageDataset
from pipelines.errors import GanpipeError

NON_GAN_ARMS = ("none", "class_weight", "ros", "smote", "albumentations")
GAN_ARMS = ("gan", "gan+albumentations")
ARMS = NON_GAN_ARMS + GAN_ARMS

Synthesise = Callable[[np.ndarray, int], np.ndarray]  # (labels, seed) -> images


def parse_arms(text: str | Sequence[str]) -> list[str]:
    arms = [a.strip() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise GanpipeError(f"unknown arm(s) {', '.join(unknown)}; choose from: {', '.join(ARMS)}")
    if not arms:
        raise GanpipeError(f"no arms given; choose from: {', '.join(ARMS)}")
    return list(dict.fromkeys(arms))


def apply_arm(
    arm: str,
    train: ImageDataset,
    targets: Mapping[int, int],
    seed: int,
    synthesise: Synthesise | None = None,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Training data of one arm: ``(x, y, class_weight)``. ``targets`` maps minority class index to
    the item count it is brought up to; ``synthesise`` makes GAN images for the GAN arms."""
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
        gan_share = {k: n if arm == "gan" else (n + 1) // 2 for k, n in missing.items()}
        labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in sorted(gan_share.items())])
        parts_x, parts_y = [x, synthesise(labels, seed)], [y, labels]
        if arm == "gan+albumentations":
            rest = {k: int(np.sum(y == k)) + n - gan_share[k] for k, n in missing.items()}
            aug_x, aug_y = augment_to_counts(x, y, rest, random_state=seed)
            parts_x.append(aug_x)
            parts_y.append(aug_y)
        return np.concatenate(parts_x).astype(np.float32), np.concatenate(parts_y), None
    raise GanpipeError(f"unknown arm {arm!r}; choose from: {', '.join(ARMS)}")


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval across seeds; needs 2 values or more."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise GanpipeError("an interval needs at least 2 seeds")
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of ``a - b`` over paired seeds, its 95% interval and the paired t-test p-value (two-sided)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean, low, high = mean_interval(diff)
    if np.allclose(diff, diff[0]):
        p = 0.0 if diff[0] != 0 else 1.0  # no spread: the t statistic is undefined
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return {"difference": mean, "low": low, "high": high, "p_value": p}


def summarise(results: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per arm: mean and 95% interval across seeds of each metric (columns ``m``,
    ``m_low``, ``m_high``), in the order the arms first appear."""
    rows = []
    for arm, group in results.groupby("arm", sort=False):
        row: dict[str, object] = {"arm": arm, "seeds": len(group)}
        for metric in metrics:
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = mean_interval(group.sort_values("seed")[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def gan_verdicts(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each GAN arm against the best non-GAN arm (by mean ``metric``), paired by seed."""
    present = set(results["arm"])
    baselines = [a for a in NON_GAN_ARMS if a in present]
    rows = []
    if not baselines:
        return pd.DataFrame(rows)
    means = results.groupby("arm")[metric].mean()
    best = max(baselines, key=lambda a: means[a])
    reference = results[results.arm == best].set_index("seed")[metric]
    for arm in (a for a in GAN_ARMS if a in present):
        values = results[results.arm == arm].set_index("seed")[metric]
        seeds = sorted(set(values.index) & set(reference.index))
        rows.append({"arm": arm, "versus": best, "metric": metric,
                     **paired_difference(values.loc[seeds].to_numpy(), reference.loc[seeds].to_numpy())})
    return pd.DataFrame(rows)
