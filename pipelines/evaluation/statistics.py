"""The statistics that say whether one arm really beats another: intervals across seeds and
paired differences."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.errors import GanpipeError


def mean_interval(values: Sequence[float], confidence: float = 0.95,
                  bounds: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval across seeds, clipped to ``bounds`` (the range the
    metric can take: a recall's interval never leaves [0, 1]); needs 2 values or more."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise GanpipeError("an interval needs at least 2 seeds")
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, max(mean - half, bounds[0]), min(mean + half, bounds[1])


def paired_difference(a: Sequence[float], b: Sequence[float],
                      bounds: tuple[float, float] = (-np.inf, np.inf)) -> dict[str, float]:
    """Mean of ``a - b`` over paired seeds, its 95% interval (clipped to ``bounds``) and the paired
    t-test p-value (two-sided)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean, low, high = mean_interval(diff, bounds=bounds)
    if np.allclose(diff, diff[0]):
        p = 0.0 if diff[0] != 0 else 1.0  # no spread: the t statistic is undefined
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return {"difference": mean, "low": low, "high": high, "p_value": p}


def summarise(results: pd.DataFrame, metrics: Sequence[str],
              bounds: tuple[float, float] = (-np.inf, np.inf)) -> pd.DataFrame:
    """One row per arm: mean and 95% interval (clipped to ``bounds``) across seeds of each metric
    (columns ``m``, ``m_low``, ``m_high``), in the order the arms first appear."""
    rows = []
    for arm, group in results.groupby("arm", sort=False):
        row: dict[str, object] = {"arm": arm, "seeds": len(group)}
        for metric in metrics:
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = mean_interval(group.sort_values("seed")[metric], bounds=bounds)
        rows.append(row)
    return pd.DataFrame(rows)
