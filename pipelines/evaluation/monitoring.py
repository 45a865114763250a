"""The trend of a model's scored batches: one point per batch (anomaly rate, mean score) beside the
rate expected at the calibrated threshold, and the rate above which a batch of that size raises an
alert. Kept in one MLflow run per registered model (experiment ``ganpipe-monitoring``) as metrics
over steps, a table and a plot, so the UI shows drift across batches without opening each one
(:func:`pipelines.tracking.monitoring.update_trend` logs it)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import binom  # noqa: E402

ALERT_P = 1e-3  # the one-sided binomial test of batch_summary: an alert below this p-value
TREND_METRICS = ("anomaly_rate", "mean_score", "expected_rate", "alert_rate", "alert", "scored")


def alert_rate(scored: int, expected_rate: float, p: float = ALERT_P) -> float:
    """The smallest anomaly rate of a batch of ``scored`` items whose excess over ``expected_rate``
    has one-sided binomial p-value below ``p`` (the line the batch must stay under)."""
    if scored <= 0:
        return float("nan")
    k = np.arange(scored + 1)
    tail = binom.sf(k - 1, scored, expected_rate)  # P(X >= k)
    above = np.flatnonzero(tail < p)
    return float(above[0] / scored) if len(above) else float("nan")


def trend_point(summary: dict, mean_score: float) -> dict[str, float]:
    """The monitoring metrics of one scored batch (a :func:`batch_summary` dict and its mean score)."""
    return {"anomaly_rate": summary["anomaly_rate"], "mean_score": mean_score,
            "expected_rate": summary["expected_rate"],
            "alert_rate": alert_rate(summary["scored"], summary["expected_rate"]),
            "alert": float(summary["alert"]), "scored": float(summary["scored"])}


def trend_figure(trend: pd.DataFrame):
    """Anomaly rate per batch (red where an alert fired) with the expected rate and the alert line;
    the mean score per batch below."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 4.6), sharex=True)
    step = trend["step"].to_numpy()
    top.plot(step, trend["anomaly_rate"], marker="o", color="tab:blue", label="anomaly rate")
    alerts = trend["alert"].to_numpy() > 0
    top.scatter(step[alerts], trend["anomaly_rate"].to_numpy()[alerts], color="tab:red", zorder=3, s=60, label="alert")
    top.plot(step, trend["expected_rate"], color="black", linestyle="--", label="expected (calibrated)")
    top.step(step, trend["alert_rate"], where="mid", color="tab:red", linestyle=":", label="alert line")
    top.set_ylabel("share flagged")
    top.set_ylim(bottom=0)
    top.legend(fontsize=7, loc="upper left")
    bottom.plot(step, trend["mean_score"], marker="o", color="tab:green")
    bottom.set_ylabel("mean score")
    bottom.set_xlabel("scored batch")
    labels = trend.get("batch_id")
    if labels is not None and len(step) <= 20:
        bottom.set_xticks(step, labels.astype(str), rotation=30, ha="right", fontsize=7)
    fig.tight_layout()
    return fig
