"""A registered model's monitoring run: one MLflow run per model (experiment ``ganpipe-monitoring``)
that gains a point per scored batch, with the trend table and figure of
:mod:`pipelines.evaluation.monitoring` rewritten each time."""

from __future__ import annotations

import threading

import pandas as pd

from pipelines.evaluation.monitoring import TREND_METRICS, trend_figure
from pipelines.tracking.runs import EXPERIMENTS, TrackedRun, client, experiment_id, source_tags

_lock = threading.Lock()  # inbox flows score batches on threads: one trend update at a time


def update_trend(model_name: str, batch_id: str, point: dict[str, float], tags: dict[str, str] | None = None) -> str:
    """Add one batch to the model's monitoring run (created on its first batch): metrics at the next
    step, ``tables/trend.csv`` and ``figures/trend.png`` rewritten. Returns the monitoring run id."""
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

