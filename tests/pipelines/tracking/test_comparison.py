"""The compare parent answers at a glance: per-arm metrics under stable names, the winner and the
GAN's gain as tags, the verdict with its table as the description; the experiment is a
model-training one with a description; every run names the command and ganpipe version that made it.
Real rows (logistic regression on tiny digits), a real SQLite store."""

from __future__ import annotations

import shlex
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipelines.data.sources import load_dataset
from pipelines.evaluation import compare
from pipelines.evaluation.arms import NON_GAN_ARMS
from pipelines.tracking import runs as tracking
from pipelines.tracking.comparison import log_comparison

ARMS = ["none", "ros", "gan", "gan+albumentations"]


def copies_of_real_images(train, seed):
    """A stand-in GAN: noisy copies of the training images of each asked-for class."""
    rng = np.random.default_rng(seed)

    def synthesise(labels, draw_seed):
        picks = [rng.choice(np.flatnonzero(train.y == label)) for label in labels]
        return (train.x[picks] + rng.normal(0, 0.05, train.x[picks].shape)).astype(np.float32)

    return synthesise


@pytest.fixture(scope="module")
def comparison():
    dataset = load_dataset("digits")
    rows = [r for seed in (0, 1)
            for r in compare.run_seed(dataset, {"3": 5}, ARMS, seed, "logreg", 1, copies_of_real_images)]
    return dataset, compare.summarise_comparison(rows)


def test_compare_parent_carries_per_arm_metrics_the_answer_and_the_table(mlflow_store, comparison):
    dataset, result = comparison
    with tracking.start_run("compare", run_name="compare-test") as parent:
        log_comparison(result, parent, dataset.class_names, "3:5", "logreg", 1)
    client = MlflowClient(tracking_uri=mlflow_store)
    stored = client.get_run(parent.run_id)
    metrics, tags = stored.data.metrics, stored.data.tags

    # per arm, mean and interval of every metric under names that do not depend on the winner ('+' is not allowed)
    assert {k.split("/")[1] for k in metrics if k.startswith("arm/")} == {"none", "ros", "gan", "gan_albumentations"}
    for row in result.headline.to_dict("records"):
        key = row["arm"].replace("+", "_")
        for metric in compare.METRICS:
            for end in ("", "_low", "_high"):
                assert metrics[f"arm/{key}/{metric}{end}"] == pytest.approx(row[f"{metric}{end}"])

    # best_arm is the arm the verdict names; best_non_gan_arm has the best validation mean of the non-GAN arms
    assert result.text.startswith(f"Best arm on {compare.PRIMARY}: {tags['best_arm']} (")
    val_means = result.results.groupby("arm")[f"val_{compare.PRIMARY}"].mean()
    assert tags["best_non_gan_arm"] in NON_GAN_ARMS
    assert val_means[tags["best_non_gan_arm"]] == max(val_means[a] for a in ("none", "ros"))
    gan = result.headline_verdicts.query("arm == 'gan' and metric == @compare.PRIMARY").iloc[0]
    assert gan["versus"] == tags["best_non_gan_arm"]
    assert tags["gan_gain"] == f"{gan['difference']:+.3f}"
    assert tags["gan_significant"] == ("true" if gan["p_value"] < 0.05 else "false")
    chosen = max(("gan", "gan+albumentations"), key=lambda a: val_means[a])  # the GAN arm validation prefers
    verdict = result.headline_verdicts.query("arm == @chosen and metric == @compare.PRIMARY").iloc[0]
    assert tags["chosen_gan_arm"] == chosen and tags["chosen_gan_gain"] == f"{verdict['difference']:+.3f}"
    assert tags["chosen_gan_significant"] == ("true" if verdict["p_value"] < 0.05 else "false")

    # the description: the verdict, then the summary table, a cell per metric: mean at 3 decimals (interval)
    description = tags["mlflow.note.content"]
    link = f"#/experiments/{stored.info.experiment_id}/runs?viewStateShareKey=arm-{parent.run_id}"
    assert description.startswith(f"{result.text}\n\n[See the arms side by side, as charts grouped by arm]({link}")
    assert "\n\n| arm | seeds | minority_recall | balanced_accuracy |" in description
    first = result.summary.iloc[0]
    assert (f"| {first['minority_recall']:.3f} ({first['minority_recall_low']:.2f}-{first['minority_recall_high']:.2f}) |"
            in description)
    assert "_low" not in description

    children = client.search_runs([stored.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'")
    assert len(children) == 2 * len(ARMS)
    for child in children:
        assert child.data.params["classifier"] == "logreg" and child.data.params["epochs"] == "1"
        assert child.data.tags["arm"] == child.data.params["arm"]


def test_experiments_are_model_training_with_a_description_and_runs_name_command_and_version(mlflow_store):
    client = MlflowClient(tracking_uri=mlflow_store)
    old = client.create_experiment("ganpipe-score")  # made before experiments had kinds: gets the tags it lacks
    with tracking.start_run("score", run_name="t") as run:
        pass
    with tracking.start_run("compare", run_name="t") as other:
        pass
    for run_id, name in ((run.run_id, "ganpipe-score"), (other.run_id, "ganpipe-compare")):
        stored = client.get_run(run_id)
        experiment = client.get_experiment(stored.info.experiment_id)
        assert experiment.name == name
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        assert experiment.tags["mlflow.note.content"] == tracking.DESCRIPTIONS[name]
        assert stored.data.tags["ganpipe.command"] == shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        assert stored.data.tags["ganpipe.version"] == version("ganpipe")
        # the printed link opens the model-training view of the run
        assert tracking.run_url(run_id).endswith(f"/#/experiments/{experiment.experiment_id}/runs/{run_id}"
                                                 "?workflowType=machine_learning")
    assert client.get_run(run.run_id).info.experiment_id == old
    assert "did the GAN help" in tracking.DESCRIPTIONS["ganpipe-compare"]
