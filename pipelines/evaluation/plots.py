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
        if k < n and not np.isnan(x[k]).all():  # an all-NaN image is a blank cell
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


def tile_images(x: np.ndarray, ncols: int, min_side: int = 32, gap: int = 2,
                row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Images ``x: (N, C, H, W)`` in [0, 1] as one ``(height, width, 3)`` uint8 picture, ``ncols`` per
    row, white gaps between them, each enlarged (nearest neighbour, a whole factor) to at least
    ``min_side`` pixels so small images stay visible (MLflow's image view, sample previews);
    ``row_labels`` writes a label left of each row (e.g. the class of a row of samples)."""
    if row_labels is not None:
        return _label_rows(tile_images(x, ncols, min_side, gap), row_labels, gap)
    x = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    n, _, h, w = x.shape
    factor = max(1, int(np.ceil(min_side / max(h, w))))
    x = x.repeat(factor, axis=2).repeat(factor, axis=3)
    h, w = h * factor, w * factor
    nrows = max(1, int(np.ceil(n / ncols)))
    out = np.ones((nrows * (h + gap) + gap, ncols * (w + gap) + gap, 3), np.float32)
    for k in range(n):
        r, c = divmod(k, ncols)
        top, left = gap + r * (h + gap), gap + c * (w + gap)
        out[top : top + h, left : left + w] = x[k].transpose(1, 2, 0)
    return (out * 255).round().astype(np.uint8)


def _label_rows(picture: np.ndarray, labels: Sequence[str], gap: int) -> np.ndarray:
    """``picture`` with a white margin on the left holding ``labels[r]`` at the height of row ``r``."""
    from PIL import Image, ImageDraw

    rows = max(1, len(labels))
    row_height = (picture.shape[0] - gap) / rows
    margin = 8 + 7 * max((len(str(label)) for label in labels), default=1)
    canvas = Image.new("RGB", (picture.shape[1] + margin, picture.shape[0]), "white")
    canvas.paste(Image.fromarray(picture), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, label in enumerate(labels):
        draw.text((4, int(gap + r * row_height + row_height / 2 - 6)), str(label), fill="black")
    return np.asarray(canvas)


def samples_figure(real: np.ndarray, fake: np.ndarray, title: str, ncols: int = 10):
    """Up to ``ncols`` real images in the first row (empty cells, not black tiles, where there are
    fewer), the synthetic ``fake`` images below; rows labelled; both ``(N, C, H, W)`` in [0, 1]."""
    real = real[:ncols]
    real = np.concatenate([real, np.full((ncols - len(real), *real.shape[1:]), np.nan, np.float32)])
    rows = ["real"] + ["GAN"] * int(np.ceil(len(fake) / ncols))
    return image_grid(np.concatenate([real, fake]), rows=rows, ncols=ncols, title=title)


# non-GAN arms: distinct muted colours; GAN arms: reds with a black edge, so they stand out
BASELINE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:gray", "tab:olive",
                    "tab:cyan", "tab:pink", "navy", "darkgoldenrod", "teal")
GAN_COLOURS = ("tab:red", "darkred", "salmon", "crimson")


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """One colour per arm, never shared: GAN arms (``gan``, ``gan+...``) in reds, the others from the rest."""
    gan = [a for a in arms if a.startswith("gan")]
    other = [a for a in arms if not a.startswith("gan")]
    colours = {a: GAN_COLOURS[i % len(GAN_COLOURS)] for i, a in enumerate(gan)}
    colours.update({a: BASELINE_COLOURS[i % len(BASELINE_COLOURS)] for i, a in enumerate(other)})
    return colours


def comparison_bars(summary, metrics: Sequence[str], title: str = "mean and 95% interval across seeds",
                    results=None):
    """Grouped bars, one group per metric, one bar per arm (its own colour; GAN arms red with a black
    edge), interval whiskers clipped to the metrics' range [0, 1]; the legend sits outside the bars.
    With ``results`` (one row per arm and seed) each seed's value is a dot on its bar, and the value
    axis spans the dots and means (not the whole of [0, 1], where close arms look alike; with few
    seeds a t-interval is wide and the dots show the spread better)."""
    arms = list(summary["arm"])
    colours = arm_colours(arms)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(metrics) * len(arms) / 4 + 2), 4.0))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        row = summary[summary.arm == arm].iloc[0]
        means = np.array([row[m] for m in metrics], dtype=float)
        low = np.clip([row[f"{m}_low"] for m in metrics], 0.0, 1.0)
        high = np.clip([row[f"{m}_high"] for m in metrics], 0.0, 1.0)
        errors = np.maximum([means - low, high - means], 0.0)
        gan = arm.startswith("gan")
        ax.bar(np.arange(len(metrics)) + i * width, means, width, yerr=errors, capsize=2, label=arm,
               color=colours[arm], edgecolor="black" if gan else "none", linewidth=1.2 if gan else 0)
        if results is not None:
            seeds = results[results["arm"] == arm]
            for j, metric in enumerate(metrics):
                values = seeds[metric].to_numpy(dtype=float)
                ax.scatter(np.full(len(values), j + i * width), values, s=9, color="black", zorder=3, linewidths=0)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, [m.replace("_", " ") for m in metrics])
    if results is not None:
        shown = np.concatenate([results[list(metrics)].to_numpy(dtype=float).ravel(),
                                summary[list(metrics)].to_numpy(dtype=float).ravel()])
        shown = shown[np.isfinite(shown)]
        low, high = (float(shown.min()), float(shown.max())) if len(shown) else (0.0, 1.0)
        margin = max(0.02, 0.1 * (high - low))
        ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
    else:
        ax.set_ylim(0, 1.0)
    ax.set_ylabel("score on the test split (bars: mean over seeds" + ("; dots: seeds)" if results is not None else ")"))
    ax.legend(fontsize=8, title="arm", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def sweep_curves(summary, metric: str):
    """``metric`` against the minority training count, one line (with interval band) per arm."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colours = arm_colours(list(dict.fromkeys(summary["arm"])))
    for arm, group in summary.groupby("arm", sort=False):
        group = group.sort_values("count")
        line = ax.plot(group["count"], group[metric], marker="o", label=arm, color=colours[arm],
                       linestyle="-" if arm.startswith("gan") else "--")[0]
        ax.fill_between(group["count"], np.clip(group[f"{metric}_low"], 0, 1), np.clip(group[f"{metric}_high"], 0, 1),
                        alpha=0.12, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("training images per minority class")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def gain_figure(verdicts, metric: str = "minority_recall", cell: str = "count", panel: str | None = None,
                xlabel: str = "training images per minority class"):
    """Each GAN arm minus the best non-GAN arm (chosen on validation) per cell, with its 95% paired
    interval: one point per arm and cell (``cell``: the column that names the cell), filled when the
    paired test is significant (p < 0.05), hollow otherwise; a line at zero. ``panel``: a column
    whose values get a panel each (a data set each)."""
    rows = verdicts[verdicts["metric"] == metric]
    panels = list(dict.fromkeys(rows[panel])) if panel else [None]
    arms = list(dict.fromkeys(rows["arm"]))
    colours = arm_colours(arms)
    most = max(len(set(rows[cell] if panel is None else rows[rows[panel] == name][cell])) for name in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (1.5 + 1.1 * most) + 2.8, 3.8), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], panels):
        part = rows if name is None else rows[rows[panel] == name]
        cells = list(dict.fromkeys(part[cell]))
        for i, arm in enumerate(arms):
            mine = part[part["arm"] == arm].set_index(cell).reindex(cells)
            x = np.arange(len(cells)) + (i - (len(arms) - 1) / 2) * 0.18
            diff = mine["difference"].to_numpy(float)
            errors = np.maximum([diff - mine["low"].to_numpy(float), mine["high"].to_numpy(float) - diff], 0)
            ax.errorbar(x, diff, yerr=errors, fmt="none", ecolor=colours[arm], capsize=3, linewidth=1)
            significant = mine["p_value"].to_numpy(float) < 0.05
            ax.scatter(x[significant], diff[significant], color=colours[arm], zorder=3, s=30, label=f"{arm} (p < 0.05)")
            ax.scatter(x[~significant], diff[~significant], facecolors="white", edgecolors=colours[arm], zorder=3, s=30,
                       label=f"{arm} (not significant)")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(cells)), [str(c).replace(" ", "\n", 1) if len(str(c)) > 6 else str(c)
                                              for c in cells], fontsize=8)
        ax.set_xlim(-0.6, len(cells) - 0.4)
        ax.set_xlabel(xlabel, fontsize=8)
        if name is not None:
            ax.set_title(str(name), fontsize=9)
    axes[0][0].set_ylabel(f"GAN minus best non-GAN arm\n({metric.replace('_', ' ')}, test split)", fontsize=8)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0][-1].legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       frameon=False)
    fig.tight_layout()
    return fig
