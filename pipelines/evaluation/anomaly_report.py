"""Metrics, tables, alerts and figures for anomaly scores (any detector: higher score = more anomalous).

A detector here is anything with ``score_components(x, every_component=True) -> {name: (N,)}`` (the
selected score's ``p_value`` last; ``every_component=False``: only the components the selected score's
pass computes), ``score`` (the name that flags), ``threshold_`` and ``score_samples(x)``."""

from __future__ import annotations

import math
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import binomtest  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve  # noqa: E402


def anomaly_metrics(anomalous: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """AUROC, AUPR (with the anomaly base rate it should be read against), and the false positive
    and true positive rates actually reached at ``threshold``."""
    anomalous = np.asarray(anomalous, dtype=bool)
    flagged = scores > threshold
    out = {"anomaly_base_rate": float(anomalous.mean()),
           "fpr_at_threshold": float(flagged[~anomalous].mean()) if (~anomalous).any() else float("nan"),
           "tpr_at_threshold": float(flagged[anomalous].mean()) if anomalous.any() else float("nan")}
    if anomalous.any() and (~anomalous).any():
        out["auroc"] = float(roc_auc_score(anomalous, scores))
        out["aupr"] = float(average_precision_score(anomalous, scores))
    return out


def score_table(detector, x: np.ndarray) -> pd.DataFrame:
    """One row per image of ``x: (N, C, H, W)``: the score that flags, the component scores computed on
    the way (no reconstruction when the score does not need it), the p-value and the flag (1 = score
    above ``threshold_``)."""
    components = detector.score_components(x, every_component=False)
    table = pd.DataFrame({"score": components[detector.score], **components})
    table["flag"] = (table["score"] > detector.threshold_).astype(np.int64)
    return table


def validation_auroc(detector, x: np.ndarray, anomalous: np.ndarray) -> float | None:
    """AUROC of ``detector`` on labelled images; None when it cannot tell (one kind only, other shape)."""
    if not anomalous.any() or anomalous.all() or tuple(detector.image_shape_) != tuple(x.shape[1:]):
        return None
    return anomaly_metrics(anomalous, detector.score_samples(x), np.inf)["auroc"]


def calibration_note(n_calibration: int, target_fpr: float) -> str | None:
    """A warning when too few held-out normal images calibrate the threshold for ``target_fpr``."""
    if n_calibration >= 1 / target_fpr:
        return None
    return (f"only {n_calibration} held-out normal images calibrate the threshold: a false positive rate "
            f"below {1 / (n_calibration + 1):.1%} cannot be told apart from {target_fpr:.1%}; "
            "the threshold is the highest calibration score")


def detector_report(detector, val_x: np.ndarray, val_anomalous: np.ndarray, test_x: np.ndarray,
                    test_anomalous: np.ndarray, examples: int = 8) -> tuple[dict, dict, dict]:
    """Evaluate a calibrated detector (with a ``reconstruct`` method) on labelled validation and test
    images -> (metrics per split, the same flattened with ``val_``/``test_`` prefixes plus the test
    AUROC of every component, figures by artifact path: ROC, score histogram, reconstructions)."""
    selected, threshold = detector.score, detector.threshold_
    val_metrics = anomaly_metrics(val_anomalous, detector.score_components(val_x)[selected], threshold)
    # the validation normals set the threshold, so their FPR is the target by construction: also the
    # rate on calibration images held out of the threshold (cross-fitted)
    if hasattr(detector, "held_out_fpr"):
        val_metrics["fpr_held_out"] = detector.held_out_fpr()
    results, flat = {"val": val_metrics}, {f"val_{k}": v for k, v in val_metrics.items()}
    test_scores = detector.score_components(test_x)
    components = {k: v for k, v in test_scores.items() if k != "p_value"}
    figures = {}
    if test_anomalous.any():
        results["test"] = anomaly_metrics(test_anomalous, test_scores[selected], threshold)
        flat.update({f"test_{k}": v for k, v in results["test"].items()})
        flat.update({f"test_auroc_{k}": anomaly_metrics(test_anomalous, v, np.inf)["auroc"] for k, v in components.items()})
        figures["figures/roc_test.png"] = roc_figure(test_anomalous, components)
    figures["figures/score_histogram_test.png"] = score_histogram(test_scores[selected], test_anomalous, threshold, selected)
    picks = np.concatenate([np.flatnonzero(~test_anomalous)[:examples], np.flatnonzero(test_anomalous)[:examples]])
    figures["figures/reconstructions.png"] = reconstruction_figure(test_x[picks], detector.reconstruct(test_x[picks]),
                                                                   test_anomalous[picks])
    return results, flat, figures


def batch_summary(scored: int, rejected: int, flagged: int, expected_rate: float) -> dict:
    """Counts, the anomaly rate against the rate expected at the calibrated threshold, and an alert
    when a one-sided binomial test says the excess is unlikely to be chance (p < 0.001)."""
    rate = flagged / scored if scored else 0.0
    p_value = binomtest(flagged, scored, expected_rate, alternative="greater").pvalue if scored else 1.0
    alert = bool(scored and p_value < 1e-3)
    message = (f"{scored} scored, {rejected} rejected, {flagged} flagged: anomaly rate {rate:.1%} "
               f"vs {expected_rate:.1%} expected")
    if alert:
        message = f"ALERT: anomaly rate {rate:.1%} is far above the expected {expected_rate:.1%} (p={p_value:.1e}). " + message
    return {"items": scored + rejected, "scored": scored, "rejected": rejected, "flagged": flagged,
            "anomaly_rate": rate, "expected_rate": expected_rate, "excess_p_value": float(p_value),
            "alert": alert, "message": message}


def roc_figure(anomalous: np.ndarray, scores: Mapping[str, np.ndarray]):
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, values in scores.items():
        fpr, tpr, _ = roc_curve(anomalous, values)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(anomalous, values):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("ROC on the test split")
    fig.tight_layout()
    return fig


def score_histogram(scores: np.ndarray, anomalous: np.ndarray | None, threshold: float, name: str):
    """Score distribution (normal vs anomalous when labels are known) with the threshold line."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.histogram_bin_edges(scores, bins=min(50, max(10, int(math.sqrt(len(scores)))))) if len(scores) else 10
    if anomalous is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="batch")
    else:
        ax.hist(scores[~anomalous], bins=bins, color="tab:blue", alpha=0.6, label="normal", density=True)
        if anomalous.any():
            ax.hist(scores[anomalous], bins=bins, color="tab:red", alpha=0.5, label="anomalous", density=True)
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel(f"{name} score (higher = more anomalous)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reconstruction_figure(x: np.ndarray, reconstructed: np.ndarray, anomalous: np.ndarray):
    """Inputs (top row) above their reconstructions G(E(x)); anomalous inputs titled in red."""
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(0.9 * n, 2.2), squeeze=False)
    for i in range(n):
        for row, images in enumerate((x, reconstructed)):
            ax = axes[row, i]
            img = images[i]
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, i].set_title("anom" if anomalous[i] else "norm", fontsize=7, color="red" if anomalous[i] else "black")
    axes[0, 0].set_ylabel("input", fontsize=7)
    axes[1, 0].set_ylabel("G(E(x))", fontsize=7)
    fig.tight_layout()
    return fig
