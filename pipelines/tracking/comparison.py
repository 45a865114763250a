"""The compare experiment in MLflow: a nested run per arm, seed and sweep count under the open
parent run, with the arm's metrics in sections, its epoch curves and per-class table; on the parent,
the summary, verdicts and figures that :mod:`pipelines.evaluation.compare` computed."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from pipelines.evaluation.compare import METRICS, PRIMARY, Comparison
from pipelines.evaluation.plots import comparison_bars, confusion_figure, sweep_curves
from pipelines.tracking.runs import TrackedRun, start_run


def log_comparison(comparison: Comparison, parent: TrackedRun, class_names: Sequence[str], minority: str) -> str:
    """Into the open ``parent`` run: a nested run per arm, seed and count (with the arm's real start
    and end), the summary, verdicts and charts; returns the parent's run id."""
    for row in comparison.rows:
        name = f"{row['arm']}-seed{row['seed']}" + (f"-n{row['count']}" if row["count"] else "")
        tags = {"arm": row["arm"], "seed": row["seed"], **({"generator": row["_generator"]} if row.get("_generator") else {})}
        with start_run("compare", run_name=name, parent=parent, tags=tags,
                       start_time=row.get("_started"), end_time=row.get("_ended")) as child:
            child.log_params({"arm": row["arm"], "seed": row["seed"],
                              "minority_count": row["count"] or minority})
            child.log_metrics(sectioned_metrics(row))
            log_curves(child, row.get("_history", []))
            child.log_table(row["_per_class"], "tables/per_class.csv")
    parent.log_table(comparison.summary, "tables/comparison.csv")
    if len(comparison.verdicts):
        parent.log_table(comparison.verdicts, "tables/gan_vs_best_baseline.csv")
    parent.log_text(comparison.text, "verdict.txt")
    parent.set_tags({"mlflow.note.content": comparison.text})  # the verdict is the run's description
    parent.client.log_table(parent.run_id, data=comparison.summary, artifact_file="tables/comparison.json")
    parent.log_figure(comparison_bars(comparison.headline, METRICS), "figures/comparison.png")
    for row in comparison.rows:
        if row["seed"] == 0 and row["count"] == comparison.headline_count:
            parent.log_figure(confusion_figure(row["_true"], row["_pred"], class_names, f"{row['arm']} (seed 0)"),
                              f"figures/confusion_{row['arm'].replace('+', '_')}.png")
    if comparison.by_count:
        for metric in (PRIMARY, "balanced_accuracy"):
            parent.log_figure(sweep_curves(comparison.summary, metric), f"figures/sweep_{metric}.png")
    # the parent's own numbers: the verdict of each GAN arm (the arms side by side are its children)
    parent.log_metrics({f"{r['arm']}_vs_{r['versus']}_{r['metric']}": r["difference"]
                        for r in comparison.headline_verdicts.to_dict("records")} if len(comparison.headline_verdicts)
                       else {}, prefix="verdict/")
    return parent.run_id


CURVES = {"loss": "epoch/train_loss", "val_loss": "epoch/val_loss", "val_balanced_accuracy": "epoch/val_balanced_accuracy"}


def log_curves(run: TrackedRun, history: Sequence[Mapping[str, float]]) -> None:
    """The classifier's per-epoch curves (step = epoch, at the time the epoch ended), so the child run
    shows training loss, validation loss and validation balanced accuracy over epochs (section ``epoch/``)."""
    for record in history:
        for key, name in CURVES.items():
            if key in record:
                run.log_metrics({name: record[key]}, step=record["epoch"], timestamp=record.get("time"))


def sectioned_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """One arm-and-seed row as MLflow metrics in sections the UI groups: ``test/`` (the report),
    ``val/`` (what made the choices) and ``train/`` (item count, synthetic share)."""
    out = {}
    for key, value in row.items():
        if key.startswith("_") or not isinstance(value, (int, float)) or isinstance(value, bool) or key in ("seed", "count"):
            continue
        if key.startswith("val_"):
            out[f"val/{key[4:]}"] = float(value)
        elif key in ("train_items", "synthetic_share"):
            out[f"train/{key}"] = float(value)
        else:
            out[f"test/{key}"] = float(value)
    return out
