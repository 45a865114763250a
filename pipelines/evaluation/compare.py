"""The compare experiment: the same classifier trained under every remedy (and the GAN), over
several seeds with identical splits, judged on the untouched test split with intervals and paired
tests of each GAN arm against the best non-GAN arm.

The GAN comes in as a callable (:data:`TrainGAN`), so this module knows no GAN family.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from pipelines.data.sources import ImageDataset, content_digest
from pipelines.data.specs import check_gan_side, parse_class_spec, parse_counts
from pipelines.data.splits import Splits, make_imbalanced, require_two_classes, stratified_split
from pipelines.errors import GanpipeError
from pipelines.evaluation.classifier import make_classifier
from pipelines.evaluation.metrics import classification_report
from pipelines.evaluation.arms import GAN_ARMS, NON_GAN_ARMS, parse_arms
from pipelines.evaluation.remedies import Synthesise, apply_arm
from pipelines.evaluation.statistics import paired_difference, summarise
from pipelines.stopping import check_stop
from pipelines.text import markdown_table, progress_bar

METRICS = ["minority_recall", "balanced_accuracy", "macro_f1", "g_mean", "minority_pr_auc"]
PRIMARY = "minority_recall"
SIGNIFICANCE = 0.05  # a paired difference with a p-value below this is called significant
TrainGAN = Callable[[ImageDataset, int], Synthesise]  # (training split, seed) -> (labels, seed) -> images
Progress = Callable[[str], None]  # hears one line per finished step
# shares of synthetic items among the added ones that the gan arm tries; the validation split picks
# one per seed. Below half, the arm would be mostly random over-sampling, so it is not offered.
SYNTHETIC_SHARES = (0.5, 0.75, 1.0)
# the loss weights of synthetic items that gan+balanced_softmax tries (1: worth a real item)
SYNTHETIC_WEIGHTS = (0.1, 0.25, 0.5, 1.0)
# the settings the validation split picks, per seed, for the arms that have them
CHOICES = {"gan": [{"synthetic_share": s} for s in SYNTHETIC_SHARES],
           "gan+albumentations": [{"synthetic_share": s} for s in SYNTHETIC_SHARES],
           "gan+mixup": [{"synthetic_share": s} for s in SYNTHETIC_SHARES],
           "gan+balanced_softmax": [{"synthetic_weight": w} for w in SYNTHETIC_WEIGHTS]}
REGIME = ("minority_min", "minority_max", "majority")  # the columns of regime_of in every row


def sweep_counts(text: str | None) -> list[int | None]:
    """``"5,10"`` -> ``[5, 10]``; no sweep -> ``[None]``."""
    return parse_counts(text) if text else [None]


def check_experiment(dataset: ImageDataset, minority: str, arms: str, sweep: str | None
                     ) -> tuple[dict[str, int], list[str], list[int | None]]:
    """Everything a user can get wrong, checked before any training: -> (counts, arms, sweep counts)."""
    require_two_classes(dataset, "a comparison needs at least two classes (one sub-folder each)")
    arm_list = parse_arms(arms)
    counts = parse_class_spec(minority, counts="required")
    sweep_list = sweep_counts(sweep)
    probe = stratified_split(dataset, seed=0)
    for count in sweep_list:
        make_imbalanced(probe, {k: count or n for k, n in counts.items()}, seed=0)  # raises on bad classes/counts
    if any(a in GAN_ARMS for a in arm_list):
        check_gan_side(*dataset.x.shape[2:], dataset.source)
    return counts, arm_list, sweep_list


def seed_splits(dataset: ImageDataset, counts: Mapping[str, int], seed: int, sweep_count: int | None = None
                ) -> tuple[Splits, list[int], dict[int, int]]:
    """The split of one seed with the minority classes cut, their indices and their target counts."""
    minority = {k: sweep_count or n for k, n in counts.items()}
    splits = make_imbalanced(stratified_split(dataset, seed=seed), minority, seed=seed)
    minority_idx = [splits.train.class_index(k) for k in minority]
    majority = int(np.bincount(splits.train.y).max())
    return splits, minority_idx, {k: majority for k in minority_idx}


def evaluate_arms(splits: Splits, minority_idx: list[int], targets: dict[int, int], arms: Sequence[str],
                  classifier: str, epochs: int, seed: int, synthesise: Synthesise | None = None,
                  sweep_count: int | None = None, progress: Progress | None = None,
                  device: str = "auto") -> list[dict]:
    """Train the classifier (on ``device``) under each arm on the training split; metrics on the test split (the
    report) and, as ``val_<metric>``, on the validation split, which makes every choice: the best
    arm, and the settings of the arms in :data:`CHOICES` (synthetic share, synthetic weight). ``progress(line)``
    hears after each arm how long it took and how long the seed has left; each row keeps its arm's
    wall-clock start and end (``_started``, ``_ended``, seconds since the epoch) for its MLflow run."""
    train = splits.train
    shifted = None if synthesise is None else (lambda labels, s: synthesise(labels, s + 1))
    held_out = [data_input(splits.val.x, splits.val.y, "validation"), data_input(splits.test.x, splits.test.y, "test")]
    rows = []
    regime = regime_of(train.y, minority_idx)
    seed_started = time.time()
    for done, arm in enumerate(arms, start=1):
        started = time.time()
        fits = []
        for choice in CHOICES.get(arm, [{}]):
            check_stop()
            x, y, options = apply_arm(arm, train, targets, seed, shifted, **choice)
            weights = options.pop("sample_weight", None)
            model = make_classifier(classifier, epochs=epochs, random_state=seed, device=device, **options)
            model.fit(x, y, n_classes=len(train.class_names), validation=(splits.val.x, splits.val.y),
                      **({} if weights is None else {"sample_weight": weights}))
            val_summary, _ = classification_report(splits.val.y, model.predict_proba(splits.val.x),
                                                   train.class_names, minority_idx)
            fits.append((val_summary[PRIMARY], choice, len(y), model, val_summary, data_input(x, y, "train")))
        _, choice, n_items, model, val_summary, trained_on = max(fits, key=lambda fit: fit[0])  # first choice wins ties
        proba = model.predict_proba(splits.test.x)
        summary, per_class = classification_report(splits.test.y, proba, train.class_names, minority_idx)
        rows.append({"arm": arm, "seed": seed, "count": sweep_count, "train_items": n_items, **regime, **summary,
                     **{f"val_{k}": v for k, v in val_summary.items()},
                     **choice,
                     **{f"recall_{r['class']}": r["recall"] for r in per_class.to_dict("records")},
                     "_pred": proba.argmax(axis=1), "_true": splits.test.y, "_per_class": per_class,
                     "_history": getattr(model, "history_", []), "_inputs": [trained_on, *held_out],
                     "_classifier_params": classifier_params(model),
                     "_started": started, "_ended": time.time()})
        if progress is not None:
            spent = time.time() - seed_started
            where = f"seed {seed}" + (f", {sweep_count} per minority class" if sweep_count else "")
            progress(f"{where}: arms {progress_bar(done, len(arms), spent)}  ({arm} in {time.time() - started:.0f} s, "
                     f"validation {PRIMARY} {val_summary[PRIMARY]:.3f})")
    return rows


def regime_of(y: np.ndarray, minority_idx: Sequence[int]) -> dict[str, int]:
    """The regime a seed's training split is in: the fewest and most real training items of a
    minority class (``minority_min``, ``minority_max``) and the items of its largest class
    (``majority``)."""
    counts = np.bincount(y)
    minority = [int(counts[k]) if k < len(counts) else 0 for k in minority_idx]
    return dict(zip(REGIME, (min(minority), max(minority), int(counts.max()))))


def regime_text(results: pd.DataFrame) -> str:
    """``"minority classes at 10 real training images against 275 for the largest class (imbalance 28:1)"``,
    over the seeds of ``results`` (ranges where they differ)."""
    def span(values) -> str:
        low, high = int(np.min(values)), int(np.max(values))
        return f"{low}" if low == high else f"{low}-{high}"

    smallest, largest, majority = results["minority_min"], results["minority_max"], results["majority"]
    items = span(np.concatenate([smallest, largest]))
    ratio = majority / smallest.clip(lower=1)
    imbalance = f"{ratio.min():.0f}:1" if round(ratio.min()) == round(ratio.max()) else f"{ratio.min():.0f}-{ratio.max():.0f}:1"
    return (f"minority classes at {items} real training images against {span(majority)} for the largest class "
            f"(imbalance {imbalance})")


def classifier_params(model) -> dict:
    """The constructor settings of a fitted classifier (its public attributes without a trailing
    underscore: epochs, batch size, learning rate, class weight, ...), as its run logs them."""
    return {k: v for k, v in vars(model).items() if not k.startswith("_") and not k.endswith("_")}


def data_input(x: np.ndarray, y: np.ndarray, context: str) -> dict:
    """What an arm's run says of one dataset it used: its ``context`` (train: the arm's training set,
    real and synthetic; validation; test), digest, item count and image shape."""
    return {"context": context, "digest": content_digest(x, y), "items": int(len(x)), "shape": list(x.shape[1:])}


def run_seed(dataset: ImageDataset, counts: Mapping[str, int], arms: Sequence[str], seed: int, classifier: str,
             epochs: int, train_gan: TrainGAN | None = None, sweep_count: int | None = None,
             progress: Progress | None = None, device: str = "auto") -> list[dict]:
    """All arms for one seed (and one sweep count): same split, same imbalance, same classifier (on
    ``device``); the GAN of the GAN arms is trained on the training split only."""
    splits, minority_idx, targets = seed_splits(dataset, counts, seed, sweep_count)
    synthesise = None
    if train_gan is not None and any(a in GAN_ARMS for a in arms):
        started = time.time()
        synthesise = train_gan(splits.train, seed)
        if progress is not None:
            progress(f"seed {seed}: GAN trained in {time.time() - started:.0f} s")
    rows = evaluate_arms(splits, minority_idx, targets, arms, classifier, epochs, seed, synthesise, sweep_count,
                         progress, device)
    source = getattr(synthesise, "source", None)  # a registered generator rather than one trained here
    for row in rows:
        if source and row["arm"] in GAN_ARMS:
            row["_generator"] = source
    return rows


def best_on_validation(results: pd.DataFrame, metric: str, arms: Sequence[str]) -> str | None:
    """The arm of ``arms`` with the best mean ``metric`` on the validation split (``val_<metric>``;
    arms whose mean is undefined are passed over, the first of ``arms`` wins ties): the choice never
    sees the test split. ``None`` when none of them ran."""
    means = results[results["arm"].isin(arms)].groupby("arm")[f"val_{metric}"].mean().dropna()
    present = [a for a in arms if a in means.index]
    return max(present, key=lambda a: means[a]) if present else None


def best_baseline(results: pd.DataFrame, metric: str) -> str | None:
    """The non-GAN arm with the best validation mean (:func:`best_on_validation`)."""
    return best_on_validation(results, metric, NON_GAN_ARMS)


def best_gan_arm(results: pd.DataFrame, metric: str) -> str | None:
    """The GAN arm with the best validation mean, chosen by the rule that chooses the best non-GAN
    arm (:func:`best_baseline`), so both sides of a verdict are chosen alike."""
    return best_on_validation(results, metric, GAN_ARMS)


def gan_verdicts(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each GAN arm against the best non-GAN arm (chosen on validation), paired by seed on test;
    ``chosen`` marks the GAN arm validation prefers on ``metric`` (:func:`best_gan_arm`; the rows of
    another metric may mark another arm)."""
    present = set(results["arm"])
    best = best_baseline(results, metric)
    rows = []
    if best is None:
        return pd.DataFrame(rows)
    chosen = best_gan_arm(results, metric)
    reference = results[results.arm == best].set_index("seed")[metric]
    for arm in (a for a in GAN_ARMS if a in present):
        values = results[results.arm == arm].set_index("seed")[metric]
        seeds = sorted(set(values.index) & set(reference.index))
        rows.append({"arm": arm, "versus": best, "metric": metric, "chosen": arm == chosen,
                     **paired_difference(values.loc[seeds].to_numpy(), reference.loc[seeds].to_numpy(), bounds=(-1.0, 1.0))})
    return pd.DataFrame(rows)


def best_arm(summary: pd.DataFrame) -> pd.Series:
    """The summary row (one arm) with the highest mean :data:`PRIMARY` on the test split: the arm the
    verdict reports as best (a report, not a choice: no step of the experiment depends on it)."""
    return summary.sort_values(PRIMARY, ascending=False).iloc[0]


def verdict_text(summary: pd.DataFrame, verdicts: pd.DataFrame, regime: str | None = None) -> str:
    best = best_arm(summary)
    lines = [f"Best arm on {PRIMARY}: {best['arm']} ({best[PRIMARY]:.3f}, 95% interval "
             f"[{best[f'{PRIMARY}_low']:.3f}, {best[f'{PRIMARY}_high']:.3f}])."]
    if regime:
        lines.append(f"Measured with {regime}.")
    for row in (verdicts[verdicts.metric == PRIMARY].to_dict("records") if len(verdicts) else []):
        better = "better" if row["difference"] > 0 else "worse"
        significant = "significant" if row["p_value"] < SIGNIFICANCE else "not significant"
        preferred = " (the GAN arm validation prefers)" if row.get("chosen") else ""
        lines.append(f"{row['arm']}{preferred} vs best non-GAN arm {row['versus']} (chosen on validation): "
                     f"{row['difference']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}], paired t-test "
                     f"p={row['p_value']:.3g}: {better}, {significant} at {SIGNIFICANCE}.")
    return "\n".join(lines)


@dataclass(frozen=True)
class Comparison:
    """Per-run ``rows`` (with the private ``_pred``/``_true``/``_per_class``), their public ``results``
    table, the ``summary`` (mean and interval per arm, per sweep count), the ``verdicts``, and the
    ``headline`` rows (the largest sweep count, or all) with their verdicts and ``text``."""

    rows: list[dict]
    results: pd.DataFrame
    summary: pd.DataFrame
    verdicts: pd.DataFrame
    headline: pd.DataFrame
    headline_verdicts: pd.DataFrame
    text: str
    by_count: bool

    @property
    def headline_count(self) -> int | None:
        return max(r["count"] for r in self.rows) if self.by_count else None


def summarise_comparison(rows: list[dict], by_count: bool = False) -> Comparison:
    """Summaries, paired verdicts (on the primary metric and balanced accuracy) and the verdict text;
    ``by_count``: one summary per sweep count."""
    results = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    count_of = (lambda c: {"count": c}) if by_count else (lambda c: {})
    summaries, verdicts = [], []
    for key, part in (results.groupby(["count"], sort=True) if by_count else [(None, results)]):
        count = key[0] if isinstance(key, tuple) else key
        summaries.append(summarise(part, METRICS, bounds=(0.0, 1.0)).assign(**count_of(count)))
        for metric in (PRIMARY, "balanced_accuracy"):
            verdicts.append(gan_verdicts(part, metric).assign(**count_of(count)))
    summary = pd.concat(summaries, ignore_index=True)
    verdict = pd.concat(verdicts, ignore_index=True) if verdicts else pd.DataFrame()
    headline = summary[summary["count"] == summary["count"].max()] if by_count else summary
    headline_verdicts = verdict[verdict["count"] == verdict["count"].max()] if by_count and len(verdict) else verdict
    headline_results = results[results["count"] == results["count"].max()] if by_count else results
    regime = regime_text(headline_results) if "minority_min" in results else None
    return Comparison(rows, results, summary, verdict, headline, headline_verdicts,
                      verdict_text(headline, headline_verdicts, regime), by_count)


def write_comparison(out_dir: Path, comparison: Comparison, title: str) -> None:
    """``comparison.csv`` (summary), ``comparison.md`` (summary, verdict, paired tests) and ``runs.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison.summary.to_csv(out_dir / "comparison.csv", index=False)
    report = [f"# {title}\n", markdown_table(comparison.summary), "\n" + comparison.text + "\n"]
    if len(comparison.verdicts):
        report += ["\n## GAN arms against the best non-GAN arm (paired by seed)\n", markdown_table(comparison.verdicts)]
    (out_dir / "comparison.md").write_text("\n".join(report))
    comparison.results.to_csv(out_dir / "runs.csv", index=False)
