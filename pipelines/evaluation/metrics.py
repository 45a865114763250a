"""Classification metrics that stay honest under class imbalance."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support


def classification_report(
    y_true: np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    minority: Sequence[int] = (),
) -> tuple[dict[str, float], pd.DataFrame]:
    """Summary metrics and a per-class table.

    ``proba: (N, K)`` class probabilities. Summary keys: ``accuracy``, ``balanced_accuracy``,
    ``macro_f1``, ``g_mean`` (geometric mean of per-class recalls) and, when ``minority`` is given,
    ``minority_recall`` (mean recall over those classes) and ``minority_pr_auc`` (mean one-vs-rest
    average precision over those classes).
    """
    labels = np.arange(len(class_names))
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = pd.DataFrame(
        {"class": list(class_names), "precision": precision, "recall": recall, "f1": f1, "support": support}
    )
    present = support > 0
    summary = {
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels[present], average="macro", zero_division=0)),
        "g_mean": float(np.exp(np.mean(np.log(np.maximum(recall[present], 1e-12)))))
        if np.all(recall[present] > 0) else 0.0,
    }
    if len(minority):
        minority = list(minority)
        summary["minority_recall"] = float(recall[minority].mean())
        summary["minority_pr_auc"] = float(
            np.mean([average_precision_score(y_true == k, proba[:, k]) for k in minority])
        )
    return summary, per_class
