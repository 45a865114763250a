"""The trend of a model's scored batches: one point per batch (anomaly rate, mean score) beside the
rate expected at the calibrated threshold, and the rate above which a batch of that size raises an
alert. Kept in one MLflow run per registered model (experiment ``ganpipe-monitoring``) as metrics
over steps, a table and a plot, so the UI shows drift across batches without opening each one."""

from __future__ import annotations

import threading

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import binom  # noqa: E402

ALERT_P = 1e-3  # the one-sided binomial test of batch_summary: an alert below this p-value
TREND_METRICS = ("anomaly_rate", "mean_score", "expected_rate", "alert_rate", "alert", "scored")
_lock = threading.Lock()  # inbox flows score batches on threads: one trend update at a time


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


def update_trend(model_name: str, batch_id: str, point: dict[str, float], tags: dict[str, str] | None = None) -> str:
    """Add one batch to the model's monitoring run (created on its first batch): metrics at the next
    step, ``tables/trend.csv`` and ``figures/trend.png`` rewritten. Returns the monitoring run id."""
    from pipelines.tracking.runs import EXPERIMENTS, TrackedRun, client, experiment_id, source_tags

    with _lock:
        mlflow_client = client()
        exp = experiment_id(EXPERIMENTS["monitoring"])
        found = mlflow_client.search_runs([exp], filter_string=f"tags.`model_name` = '{model_name}'",
                                          order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = mlflow_client.create_run(exp, run_name=f"monitor-{model_name}", tags={
                **source_tags(), "model_name": model_name, **(tags or {}),
                "mlflow.note.content": f"Anomaly rate and mean score of every batch scored with `{model_name}`, "
                                       "beside the rate expected at the calibrated threshold."}).info.run_id
            mlflow_client.set_terminated(run_id, status="FINISHED")
        step = len(mlflow_client.get_metric_history(run_id, "monitor/anomaly_rate"))
        run = TrackedRun(mlflow_client, run_id, exp)
        run.log_metrics(point, step=step, prefix="monitor/")
        rows = []
        for key in TREND_METRICS:
            for m in mlflow_client.get_metric_history(run_id, f"monitor/{key}"):
                rows.append({"step": m.step, "metric": key, "value": m.value})
        trend = pd.DataFrame(rows).pivot_table(index="step", columns="metric", values="value")
        trend = trend.reindex(columns=list(TREND_METRICS)).reset_index()  # a metric never logged (NaN) stays a column
        mlflow_client.set_tag(run_id, f"batch.{step}", batch_id)  # the x-axis labels of the plot
        tags_now = mlflow_client.get_run(run_id).data.tags
        trend["batch_id"] = trend["step"].map(lambda s: tags_now.get(f"batch.{int(s)}", ""))
        run.log_table(trend, "tables/trend.csv")
        run.log_figure(trend_figure(trend), "figures/trend.png")
        return run_id

