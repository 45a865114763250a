"""Figures people would rather look at than read. Every function returns a matplotlib Figure."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], title: str = ""):
    """Row-normalised confusion matrix (each row sums to 1: recall on the diagonal)."""
    labels = np.arange(len(class_names))
    cm = confusion_matrix(y_true, y_pred, labels=labels).astype(float)
    cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(labels, class_names, rotation=90 if len(class_names) > 12 else 0)
    ax.set_yticks(labels, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 20:
        for i in labels:
            for j in labels:
                ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.tight_layout()
    return fig


def image_grid(x: np.ndarray, rows: Sequence[str] | None = None, ncols: int = 10, title: str = ""):
    """Grid of images ``x: (R*ncols, C, H, W)`` in [0, 1]; ``rows`` labels each row."""
    n = len(x)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.9, nrows * 0.9 + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if k < n:
            img = x[k]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1))
    if rows is not None:
        for r, label in enumerate(rows[:nrows]):
            axes[r, 0].set_ylabel(str(label), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def class_counts_figure(counts: dict[str, int], title: str = "training items per class"):
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(counts) + 2), 3))
    ax.bar(list(counts), list(counts.values()), color="tab:blue")
    ax.set_ylabel("items")
    ax.set_title(title)
    fig.tight_layout()
    return fig
