"""The compare experiment in MLflow: a nested run per arm, seed and sweep count under the open
parent run, with the classifier's params, the arm's metrics in sections, its epoch curves and
per-class table; on the parent, the summary, verdicts and figures that
:mod:`pipelines.evaluation.compare` computed, and the answer at a glance: per-arm metrics under
stable names (:func:`arm_metrics`), the winner and the GAN's gain as tags (:func:`answer_tags`) and
the verdict with the summary table as the run's description."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import pandas as pd

from pipelines.evaluation.compare import METRICS, PRIMARY, REGIME, SIGNIFICANCE, Comparison, best_arm, best_baseline
from pipelines.evaluation.plots import comparison_bars, confusion_figure, gain_figure, sweep_curves
from pipelines.text import markdown_table
from pipelines.tracking.runs import DESCRIPTION_TAG, TrackedRun, client, start_run, ui_base
from pipelines.tracking.views import grouped_chart_view

CHART_VIEW_TAG = "ganpipe.chart_view"  # the parent's link to its children as charts grouped by arm


def log_comparison(comparison: Comparison, parent: TrackedRun, class_names: Sequence[str], minority: str,
                   classifier: str, epochs: int, data: str = "", data_name: str = "data") -> str:
    """Into the open ``parent`` run: a nested run per arm, seed and count (with the arm's real start
    and end, and the ``classifier`` trained for ``epochs``), the summary, verdicts and charts, the
    per-arm metrics and answer tags; returns the parent's run id. Each child names the datasets it
    used (``<data_name>-train`` with the arm's synthetic items, ``-validation``, ``-test``) from the
    data spec ``data``."""
    for row in comparison.rows:
        name = f"{row['arm']}-seed{row['seed']}" + (f"-n{row['count']}" if row["count"] else "")
        tags = {"arm": row["arm"], "seed": row["seed"], **({"generator": row["_generator"]} if row.get("_generator") else {})}
        with start_run("compare", run_name=name, parent=parent, tags=tags,
                       start_time=row.get("_started"), end_time=row.get("_ended")) as child:
            child.log_params({"arm": row["arm"], "seed": row["seed"], "minority_count": row["count"] or minority,
                              "classifier": classifier, "epochs": epochs,
                              **{f"classifier.{k}": v for k, v in row.get("_classifier_params", {}).items()
                                 if v is not None}})
            child.log_metrics(sectioned_metrics(row))
            child.log_data_inputs(row.get("_inputs", []), data_name, data)
            log_curves(child, row.get("_history", []))
            child.log_table(row["_per_class"], "tables/per_class.csv")
    parent.log_table(comparison.summary, "tables/comparison.csv")
    if len(comparison.verdicts):
        parent.log_table(comparison.verdicts, "tables/gan_vs_best_baseline.csv")
    parent.log_text(comparison.text, "verdict.txt")
    # a saved view of the children as charts grouped by arm, kept on the experiment
    key, value, link = grouped_chart_view(parent.experiment_id, parent.run_id, "arm",
                                          [f"test/{m}" for m in METRICS], name=f"Arms of {parent.run_id[:8]}")
    parent.client.set_experiment_tag(parent.experiment_id, key, value)
    # the verdict, the link to the charts (relative, so it opens on whichever host serves the UI),
    # then the table the verdict rests on, is the run's description
    description = "\n\n".join([
        comparison.text, f"[See the arms side by side, as charts grouped by arm]({link})",
        markdown_table(description_table(comparison.summary)).rstrip(),
        "Mean over seeds on the test split (95% interval); every column with its interval is in "
        "tables/comparison.csv."])
    parent.set_tags({CHART_VIEW_TAG: f"{ui_base()}/{link}", DESCRIPTION_TAG: description,
                     **answer_tags(comparison)})
    parent.log_metrics(arm_metrics(comparison.headline))
    parent.client.log_table(parent.run_id, data=comparison.summary, artifact_file="tables/comparison.json")
    headline_rows = comparison.results
    if comparison.by_count:
        headline_rows = headline_rows[headline_rows["count"] == comparison.headline_count]
    parent.log_figure(comparison_bars(comparison.headline, METRICS, results=headline_rows), "figures/comparison.png")
    for row in comparison.rows:
        if row["seed"] == 0 and row["count"] == comparison.headline_count:
            parent.log_figure(confusion_figure(row["_true"], row["_pred"], class_names, f"{row['arm']} (seed 0)"),
                              f"figures/confusion_{arm_key(row['arm'])}.png")
    if comparison.by_count:
        for metric in (PRIMARY, "balanced_accuracy"):
            parent.log_figure(sweep_curves(comparison.summary, metric), f"figures/sweep_{metric}.png")
        if len(comparison.verdicts):
            parent.log_figure(gain_figure(comparison.verdicts), "figures/gan_gain.png")
    # the parent's own numbers: the verdict of each GAN arm (the arms side by side are its children)
    parent.log_metrics({f"{r['arm']}_vs_{r['versus']}_{r['metric']}": r["difference"]
                        for r in comparison.headline_verdicts.to_dict("records")} if len(comparison.headline_verdicts)
                       else {}, prefix="verdict/")
    return parent.run_id


def chart_view_url(run_id: str) -> str | None:
    """The link to the saved view of a compare parent's children as charts grouped by arm."""
    return client().get_run(run_id).data.tags.get(CHART_VIEW_TAG)


def description_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the parent's description shows it, narrow enough for the run page: per arm
    (and count) and its number of seeds, each metric's mean with its 95% interval in one cell, three decimals."""
    keys = [c for c in ("arm", "count", "seeds") if c in summary.columns and (c != "count" or summary[c].nunique() > 1)]
    table = summary[keys].copy()
    for metric in (m for m in METRICS if m in summary.columns):
        cells = [f"{value:.3f}" for value in summary[metric]]
        if {f"{metric}_low", f"{metric}_high"} <= set(summary.columns):
            cells = [cell if pd.isna(low) else f"{cell} ({low:.2f}-{high:.2f})"
                     for cell, low, high in zip(cells, summary[f"{metric}_low"], summary[f"{metric}_high"])]
        table[metric] = cells
    return table


def arm_key(arm: str) -> str:
    """``arm`` (or any label) as a part of an MLflow name, every character but letters, digits and
    ``_`` made ``_``: ``gan+albumentations`` -> ``gan_albumentations``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", arm)


def arm_metrics(headline: pd.DataFrame) -> dict[str, float]:
    """Per arm of the ``headline`` summary, the mean and 95% interval of each metric on the test split
    as ``arm/<arm>/<metric>``, ``arm/<arm>/<metric>_low`` and ``arm/<arm>/<metric>_high``: names that do
    not depend on which arm won, so parents can be charted and compared across runs."""
    return {f"arm/{arm_key(row['arm'])}/{metric}{end}": row[f"{metric}{end}"]
            for row in headline.to_dict("records") for metric in METRICS for end in ("", "_low", "_high")}


def answer_tags(comparison: Comparison) -> dict[str, str]:
    """The comparison's answer as tags to filter and sort on: ``best_arm`` (the verdict's best arm:
    highest mean primary metric on the test split of the headline), ``best_non_gan_arm`` (chosen on
    validation, the arm the GAN arms are tested against), and for the ``gan`` arm (else the first GAN
    arm) its paired difference from that arm on the primary metric, ``gan_gain``, and whether it is
    significant at :data:`SIGNIFICANCE`, ``gan_significant`` (``true``/``false``); the GAN arm chosen
    on validation, ``chosen_gan_arm``, its difference, ``chosen_gan_gain``, and
    ``chosen_gan_significant``."""
    results = comparison.results
    if comparison.by_count:
        results = results[results["count"] == comparison.headline_count]
    tags = {"best_arm": str(best_arm(comparison.headline)["arm"])}
    baseline = best_baseline(results, PRIMARY)
    if baseline is not None:
        tags["best_non_gan_arm"] = baseline
    verdicts = comparison.headline_verdicts
    primary = verdicts[verdicts["metric"] == PRIMARY].to_dict("records") if len(verdicts) else []
    if primary:
        gan = next((v for v in primary if v["arm"] == "gan"), primary[0])
        chosen = next((v for v in primary if v.get("chosen")), None)  # the GAN arm validation prefers
        for prefix, row in (("gan", gan), ("chosen_gan", chosen)):
            if row is not None:
                tags[f"{prefix}_gain"] = f"{row['difference']:+.3f}"
                tags[f"{prefix}_significant"] = "true" if row["p_value"] < SIGNIFICANCE else "false"
        if chosen is not None:
            tags["chosen_gan_arm"] = chosen["arm"]
    return tags


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
    ``val/`` (what made the choices) and ``train/`` (item count, synthetic share and weight, the regime's counts)."""
    out = {}
    for key, value in row.items():
        if key.startswith("_") or not isinstance(value, (int, float)) or isinstance(value, bool) or key in ("seed", "count"):
            continue
        if key.startswith("val_"):
            out[f"val/{key[4:]}"] = float(value)
        elif key in ("train_items", "synthetic_share", "synthetic_weight", *REGIME):
            out[f"train/{key}"] = float(value)
        else:
            out[f"test/{key}"] = float(value)
    return out
