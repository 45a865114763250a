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


def samples_figure(real: np.ndarray, fake: np.ndarray, title: str, ncols: int = 10):
    """Up to ``ncols`` real images in the first row (blank cells keep rows aligned), the synthetic
    ``fake`` images below; both ``(N, C, H, W)`` in [0, 1]."""
    real = real[:ncols]
    real = np.concatenate([real, np.zeros((ncols - len(real), *real.shape[1:]), np.float32)])
    return image_grid(np.concatenate([real, fake]), ncols=ncols, title=title)


def comparison_bars(summary, metrics: Sequence[str], title: str = "mean and 95% interval across seeds"):
    """Grouped bars, one group per metric, one bar per arm, with interval whiskers."""
    arms = list(summary["arm"])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) * len(arms) / 4), 3.8))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        row = summary[summary.arm == arm].iloc[0]
        means = np.array([row[m] for m in metrics])
        errors = np.array([[row[m] - row[f"{m}_low"] for m in metrics], [row[f"{m}_high"] - row[m] for m in metrics]])
        ax.bar(np.arange(len(metrics)) + i * width, means, width, yerr=np.maximum(errors, 0), capsize=2, label=arm,
               color=("tab:red" if arm.startswith("gan") else None))
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=min(len(arms), 4), loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def sweep_curves(summary, metric: str):
    """``metric`` against the minority training count, one line (with interval band) per arm."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for arm, group in summary.groupby("arm", sort=False):
        group = group.sort_values("count")
        line = ax.plot(group["count"], group[metric], marker="o", label=arm,
                       linestyle="-" if arm.startswith("gan") else "--")[0]
        ax.fill_between(group["count"], group[f"{metric}_low"], group[f"{metric}_high"], alpha=0.12, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("training images per minority class")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
