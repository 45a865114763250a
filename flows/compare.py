"""The compare flow: the same classifier trained under every remedy (and the GAN), over several
seeds, judged on the untouched test split with intervals and paired tests."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from flows.common import fan_out, prefect_tags, task_runner, validated
from gan_aug.train import GANConfig, train_conditional_gan
from pipelines.classifier import make_classifier
from pipelines.data import ImageDataset, load_dataset
from pipelines.errors import GanpipeError
from pipelines.metrics import classification_report
from pipelines.plots import comparison_bars, confusion_figure, sweep_curves
from pipelines.remedies import ARMS, GAN_ARMS, apply_arm, gan_verdicts, parse_arms, summarise
from pipelines.splits import make_imbalanced, parse_class_counts, stratified_split
from pipelines.tracking import markdown_table, start_run

METRICS = ["minority_recall", "balanced_accuracy", "macro_f1", "g_mean", "minority_pr_auc"]
PRIMARY = "minority_recall"


class CompareParams(BaseModel):
    data: str = Field("mnist5k", description="data source spec")
    minority: str = Field("2:10,5:10,8:10", description="CLASS:N,...: training images kept per minority class")
    arms: str = Field(",".join(ARMS), description="comma-separated arms")
    seeds: int = Field(3, ge=1, le=50, description="seeds (splits, imbalance, models)")
    epochs: int = Field(15, ge=1, le=500, description="classifier training epochs")
    gan_steps: int = Field(1500, ge=1, le=100000, description="generator steps of the GAN arms")
    classifier: Literal["cnn", "logreg"] = "cnn"
    sweep: str | None = Field(None, description="minority counts to sweep, e.g. 5,10,20,50")
    image_size: int | None = Field(None, ge=8, le=64)
    out: str = Field("out/compare", description="output folder")

    @field_validator("seeds")
    @classmethod
    def _interval_needs_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"{value} seed cannot give an interval or a paired test; use --seeds 2 or more")
        return value


def sweep_counts(text: str | None) -> list[int | None]:
    if not text:
        return [None]
    try:
        counts = sorted({int(c) for c in text.split(",") if c.strip()})
    except ValueError:
        raise GanpipeError(f"bad sweep {text!r}; expected counts like 5,10,20,50") from None
    if not counts or counts[0] < 1:
        raise GanpipeError(f"bad sweep {text!r}; counts must be whole numbers >= 1")
    return counts


def plan(params: CompareParams) -> tuple[ImageDataset, dict[str, int], list[str], list[int | None]]:
    """Check everything a user can get wrong before any training."""
    arms = parse_arms(params.arms)
    counts = parse_class_counts(params.minority)
    dataset = load_dataset(params.data, image_size=params.image_size)
    sweep = sweep_counts(params.sweep)
    probe = stratified_split(dataset, seed=0)
    for count in sweep:
        make_imbalanced(probe, {k: count or n for k, n in counts.items()}, seed=0)  # raises on bad classes/counts
    if any(a in GAN_ARMS for a in arms) and not 8 <= dataset.x.shape[2] <= 64:
        raise GanpipeError(f"the GAN arms need images from 8x8 to 64x64, got {dataset.x.shape[2]}; pass --image-size")
    return dataset, counts, arms, sweep


def seed_splits(dataset: ImageDataset, counts: dict[str, int], seed: int, sweep_count: int | None = None):
    """The split of one seed with the minority classes cut, their indices and their target counts."""
    minority = {k: sweep_count or n for k, n in counts.items()}
    splits = make_imbalanced(stratified_split(dataset, seed=seed), minority, seed=seed)
    minority_idx = [splits.train.class_index(k) for k in minority]
    majority = int(np.bincount(splits.train.y).max())
    return splits, minority_idx, {k: majority for k in minority_idx}


def evaluate_arms(splits, minority_idx: list[int], targets: dict[int, int], arms: list[str], params: CompareParams,
                  seed: int, gan=None, sweep_count: int | None = None) -> list[dict]:
    """Train the classifier under each arm on the training split; metrics on the test split."""
    train = splits.train
    synthesise = None if gan is None else (lambda labels, s: gan.sample(labels, seed=s + 1))
    rows = []
    for arm in arms:
        x, y, class_weight = apply_arm(arm, train, targets, seed, synthesise)
        model = make_classifier(params.classifier, class_weight=class_weight, epochs=params.epochs, random_state=seed)
        model.fit(x, y, n_classes=len(train.class_names))
        proba = model.predict_proba(splits.test.x)
        summary, per_class = classification_report(splits.test.y, proba, train.class_names, minority_idx)
        rows.append({"arm": arm, "seed": seed, "count": sweep_count, "train_items": len(y), **summary,
                     **{f"recall_{r['class']}": r["recall"] for r in per_class.to_dict("records")},
                     "_pred": proba.argmax(axis=1), "_true": splits.test.y, "_per_class": per_class})
    return rows


@task(name="compare-seed", cache_policy=NO_CACHE)
def run_seed(dataset: ImageDataset, counts: dict[str, int], arms: list[str], seed: int, params: CompareParams,
             sweep_count: int | None = None) -> list[dict]:
    """All arms for one seed (and one sweep count): same split, same imbalance, same classifier."""
    splits, minority_idx, targets = seed_splits(dataset, counts, seed, sweep_count)
    gan = train_gan_for_arms(splits.train, params.gan_steps, seed) if any(a in GAN_ARMS for a in arms) else None
    return evaluate_arms(splits, minority_idx, targets, arms, params, seed, gan, sweep_count)


def train_gan_for_arms(train: ImageDataset, steps: int, seed: int):
    """The GAN of the GAN arms: trained on the training split only (a separate function so tests can spy on it)."""
    return train_conditional_gan(train.x, train.y, len(train.class_names), GANConfig(steps=steps, seed=seed),
                                 log_every=max(1, steps // 10))


def verdict_text(summary: pd.DataFrame, verdicts: pd.DataFrame) -> str:
    best = summary.sort_values(PRIMARY, ascending=False).iloc[0]
    lines = [f"Best arm on {PRIMARY}: {best['arm']} ({best[PRIMARY]:.3f}, 95% interval "
             f"[{best[f'{PRIMARY}_low']:.3f}, {best[f'{PRIMARY}_high']:.3f}])."]
    for row in (verdicts[verdicts.metric == PRIMARY].to_dict("records") if len(verdicts) else []):
        better = "better" if row["difference"] > 0 else "worse"
        significant = "significant" if row["p_value"] < 0.05 else "not significant"
        lines.append(f"{row['arm']} vs best non-GAN arm {row['versus']}: {row['difference']:+.3f} "
                     f"[{row['low']:+.3f}, {row['high']:+.3f}], paired t-test p={row['p_value']:.3g}: "
                     f"{better}, {significant} at 0.05.")
    return "\n".join(lines)


@flow(name="ganpipe-compare", log_prints=True, task_runner=task_runner())
def compare_flow(
    data: str = "mnist5k",
    minority: str = "2:10,5:10,8:10",
    arms: str = ",".join(ARMS),
    seeds: int = 3,
    epochs: int = 15,
    gan_steps: int = 1500,
    classifier: str = "cnn",
    sweep: str | None = None,
    image_size: int | None = None,
    out: str = "out/compare",
) -> dict:
    """For each seed (and sweep count): split, cut the minority classes, train the classifier under
    every arm, evaluate on the untouched test split -> summary with intervals, paired tests of the
    GAN arms against the best non-GAN arm, charts -> MLflow (parent + nested runs) and files."""
    params = validated(CompareParams, locals())
    dataset, counts, arm_list, sweep_list = plan(params)
    calls = [(dataset, counts, arm_list, seed, params, count) for count in sweep_list for seed in range(params.seeds)]
    rows = [row for seed_rows in fan_out(run_seed, calls) for row in seed_rows]
    results = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])

    group_keys = ["count"] if params.sweep else []
    summaries, verdicts = [], []
    for key, part in (results.groupby(group_keys, sort=True) if group_keys else [(None, results)]):
        count = key[0] if isinstance(key, tuple) else key
        summaries.append(summarise(part, METRICS).assign(**({"count": count} if params.sweep else {})))
        for metric in (PRIMARY, "balanced_accuracy"):
            verdicts.append(gan_verdicts(part, metric).assign(**({"count": count} if params.sweep else {})))
    summary = pd.concat(summaries, ignore_index=True)
    verdict = pd.concat(verdicts, ignore_index=True) if verdicts else pd.DataFrame()
    headline = summary[summary["count"] == summary["count"].max()] if params.sweep else summary
    headline_verdicts = verdict[verdict["count"] == verdict["count"].max()] if params.sweep and len(verdict) else verdict
    text = verdict_text(headline, headline_verdicts)

    out_dir = Path(params.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out_dir / "comparison.csv", index=False)
    report = [f"# Comparison on {params.data}, minority {params.minority}, {params.seeds} seeds\n",
              markdown_table(summary), "\n" + text + "\n"]
    if len(verdict):
        report += ["\n## GAN arms against the best non-GAN arm (paired by seed)\n", markdown_table(verdict)]
    (out_dir / "comparison.md").write_text("\n".join(report))
    results.to_csv(out_dir / "runs.csv", index=False)

    with start_run("compare", run_name=f"compare-{params.data.split(':')[0]}", tags=prefect_tags()) as parent:
        parent.log_params(params.model_dump())
        for row in rows:
            name = f"{row['arm']}-seed{row['seed']}" + (f"-n{row['count']}" if row["count"] else "")
            with start_run("compare", run_name=name, parent=parent,
                           tags={"arm": row["arm"], "seed": row["seed"]}) as child:
                child.log_params({"arm": row["arm"], "seed": row["seed"], "minority_count": row["count"] or params.minority})
                child.log_metrics({k: v for k, v in row.items() if isinstance(v, float)})
                child.log_table(row["_per_class"], "tables/per_class.csv")
        parent.log_table(summary, "tables/comparison.csv")
        if len(verdict):
            parent.log_table(verdict, "tables/gan_vs_best_baseline.csv")
        parent.log_text(text, "verdict.txt")
        parent.log_figure(comparison_bars(headline, METRICS), "figures/comparison.png")
        names = dataset.class_names
        for row in rows:
            if row["seed"] == 0 and row["count"] == (max(sweep_list) if params.sweep else None):
                parent.log_figure(confusion_figure(row["_true"], row["_pred"], names, f"{row['arm']} (seed 0)"),
                                  f"figures/confusion_{row['arm'].replace('+', '_')}.png")
        if params.sweep:
            for metric in (PRIMARY, "balanced_accuracy"):
                parent.log_figure(sweep_curves(summary, metric), f"figures/sweep_{metric}.png")
        parent.log_metrics({f"{r['arm']}.{m}": r[m] for r in headline.to_dict("records") for m in METRICS})
        run_id = parent.run_id
    if prefect_tags():
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=headline.round(4).to_dict("records"), key="ganpipe-comparison", description=text)
    return {"run_id": run_id, "summary": summary, "verdicts": verdict, "text": text, "out": str(out_dir),
            "results": results}
