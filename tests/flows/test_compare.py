from __future__ import annotations

import pickle
import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

import flows.compare as compare
import pipelines.evaluation.compare as experiment
from flows.cli import main
from pipelines.errors import GanpipeError
from flows.params import CompareParams
from gan_aug import GANOverSampler
from pipelines.data.sources import load_dataset
from pipelines.data.splits import stratified_split
from pipelines.evaluation.arms import ARMS
from pipelines.tracking.runs import dataset_digest
from pipelines.tracking.views import view_state

# a short class judge (800 steps by default): the GAN arms' GAN settings reach the GAN (see the device test)
FAST = {"data": "digits", "minority": "3:5,8:5", "classifier": "logreg", "gan_steps": 3, "epochs": 1,
        "gan": {"judge_steps": 20}}


def test_compare_runs_every_arm_and_never_shows_test_items_to_resamplers(mlflow_store, tmp_path, monkeypatch):
    seen = []
    real_apply, real_gan = experiment.apply_arm, compare.train_gan_for_arms
    monkeypatch.setattr(experiment, "apply_arm", lambda arm, train, *a, **k: (seen.append(train), real_apply(arm, train, *a, **k))[1])
    monkeypatch.setattr(compare, "train_gan_for_arms", lambda train, *a, **k: (seen.append(train), real_gan(train, *a, **k))[1])

    # the CNN (2 epochs) rather than logreg: its child runs get per-epoch curves
    result = compare.compare_flow.fn(CompareParams(**{**FAST, "classifier": "cnn", "epochs": 2}, seeds=2, out=str(tmp_path / "cmp")))
    summary = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(summary["arm"]) == list(ARMS)
    assert {"minority_recall", "minority_recall_low", "minority_recall_high", "balanced_accuracy", "g_mean"} <= set(summary.columns)
    assert (tmp_path / "cmp" / "comparison.md").read_text().startswith("# Comparison on digits")
    assert re.search(r"^gan( \(the GAN arm validation prefers\))? vs best non-GAN arm", result["text"], re.M)
    assert result["text"].count("(the GAN arm validation prefers)") == 1  # one GAN arm is named for the user

    dataset = load_dataset("digits")
    test_ids = {seed: set(stratified_split(dataset, seed=seed).test.item_ids) for seed in (0, 1)}
    # the arms with choices try each (synthetic share or weight), plus the GAN itself
    per_seed = len(ARMS) + sum(len(c) - 1 for c in experiment.CHOICES.values()) + 1
    assert len(seen) == 2 * per_seed
    for train in seen:
        assert any(not (set(train.item_ids) & ids) for ids in test_ids.values())
        assert len(train) < len(dataset) * 0.6
    for seed in (0, 1):
        for train in seen[seed * per_seed:(seed + 1) * per_seed]:
            assert not set(train.item_ids) & test_ids[seed]

    client = MlflowClient(tracking_uri=mlflow_store)
    parent = client.get_run(result["run_id"])
    assert parent.data.params["device"] == parent.data.tags["device"] and parent.data.tags["device_name"]
    assert "None" not in parent.data.params.values()  # options left unset are not logged as the text "None"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result['run_id']}'")
    assert len(children) == 2 * len(ARMS)
    gan_child = next(c for c in children if c.data.tags["arm"] == "gan")
    assert {"test/minority_recall", "val/minority_recall", "train/synthetic_share", "train/train_items"} <= set(gan_child.data.metrics)
    # per-epoch curves of the chosen classifier: one point per epoch, in order, at the epoch's end time
    curve = client.get_metric_history(gan_child.info.run_id, "epoch/val_balanced_accuracy")
    assert [m.step for m in curve] == [1, 2]
    assert all(0 <= m.value <= 1 for m in curve)
    assert [m.timestamp for m in curve] == sorted(m.timestamp for m in curve)
    assert len(client.get_metric_history(gan_child.info.run_id, "epoch/train_loss")) == 2
    assert parent.data.tags["mlflow.note.content"].startswith(result["text"] + "\n\n[See the arms")  # verdict, link, table
    assert "\n\n| arm |" in parent.data.tags["mlflow.note.content"]
    assert {"arm/gan/minority_recall", "arm/gan/minority_recall_low", "arm/ros/minority_recall_high"} <= set(parent.data.metrics)
    assert parent.data.tags["best_non_gan_arm"] in ARMS and parent.data.tags["gan_significant"] in ("true", "false")
    assert gan_child.data.params["classifier"] == "cnn" and gan_child.data.params["epochs"] == "2"
    assert gan_child.data.params["classifier.learning_rate"] == "0.001" and gan_child.data.params["classifier.batch_size"] == "64"
    # each child names what it trained on (real + synthetic for the gan arm) and what measured it
    for child in children:
        inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset for d in child.inputs.dataset_inputs}
        assert set(inputs) == {"train", "validation", "test"} and inputs["train"].name == "digits-train"
    same_seed = [c for c in children if c.data.tags["seed"] == gan_child.data.tags["seed"]]
    digests = {c.data.tags["arm"]: {d.dataset.name: d.dataset.digest for d in c.inputs.dataset_inputs} for c in same_seed}
    assert len({d["digits-test"] for d in digests.values()}) == 1  # one test split per seed
    assert digests["gan"]["digits-train"] != digests["none"]["digits-train"]  # synthetic items change the training set
    # real durations: the parent opened before the first arm started; each arm's run spans its training
    assert parent.info.start_time <= min(c.info.start_time for c in children)
    assert all(c.info.end_time >= c.info.start_time for c in children)
    assert max(c.info.end_time for c in children) <= parent.info.end_time
    assert any(k.startswith("verdict/gan_vs_") for k in parent.data.metrics)
    # the description's table has one cell per metric, mean and interval together
    description = parent.data.tags["mlflow.note.content"]
    assert "minority_recall_low" not in description and re.search(r"\| \d\.\d{3} \(\d\.\d{2}-\d\.\d{2}\) \|", description)
    # the parent links to a saved view of its children as bar charts grouped by arm, kept on the experiment
    share_key = parse_qs(urlparse(parent.data.tags["ganpipe.chart_view"]).fragment.partition("?")[2])["viewStateShareKey"][0]
    state = view_state(client.get_experiment(parent.info.experiment_id).tags[f"mlflow.sharedViewState.{share_key}"])
    assert state["searchFilter"] == f"tags.mlflow.parentRunId = '{result['run_id']}'"
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "arm"}]
    assert [c["metricKey"] for c in state["compareRunCharts"]][0] == "test/minority_recall"
    artifacts = {f.path for d in ("figures", "tables") for f in client.list_artifacts(result["run_id"], d)}
    assert {"figures/comparison.png", "figures/confusion_gan.png", "tables/comparison.csv",
            "tables/gan_vs_best_baseline.csv", "tables/comparison.json"} <= artifacts


def test_sweep_gives_one_row_per_count_and_arm(mlflow_store, tmp_path):
    result = compare.compare_flow.fn(CompareParams(**{**FAST, "minority": "3:5"}, arms="none,ros,gan", seeds=2,
                                                   sweep="3,6", out=str(tmp_path / "s")))
    summary = result["summary"]
    assert sorted(zip(summary["count"], summary["arm"])) == [(3, "gan"), (3, "none"), (3, "ros"), (6, "gan"), (6, "none"),
                                                             (6, "ros")]
    client = MlflowClient(tracking_uri=mlflow_store)
    figures = {f.path for f in client.list_artifacts(result["run_id"], "figures")}
    # the gain figure: the GAN minus the best non-GAN arm at each count, as the regime benchmark draws it
    assert {"figures/sweep_minority_recall.png", "figures/sweep_balanced_accuracy.png", "figures/gan_gain.png"} <= figures
    # the verdict (of the largest count) names its regime
    regime = re.search(r"Measured with minority classes at 6 real training images against (\d+)(?:-(\d+))? for the "
                       r"largest class \(imbalance (\d+)(?:-\d+)?:1\)", result["text"])
    assert regime, result["text"]
    assert 90 <= int(regime.group(1)) <= 110 and int(regime.group(3)) == round(int(regime.group(1)) / 6)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arms", "none,magic"], "unknown arm(s) magic"),
        (["--minority", "3:900"], "cannot keep 900"),
        (["--seeds", "1"], "1 seed cannot give an interval"),
        (["--sweep", "5,x"], "--sweep: bad counts '5,x'"),
        pytest.param(["--device", "cuda"], "--device cuda: no CUDA GPU is available",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")),
    ],
)
def test_bad_compare_parameters(argv, message, capsys, tmp_path):
    assert main(["compare", "--data", "digits", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("settings", [{"judge_steps": -1}, {"no_such_setting": 1}])
def test_bad_gan_settings_fail_in_the_plan_before_training(settings):
    with pytest.raises(GanpipeError, match=re.escape(f"invalid GAN settings {settings}")):
        compare.plan.prepare(CompareParams(**{**FAST, "gan": settings}))


def test_the_device_reaches_every_seeds_classifier_and_gan(mlflow_store, tmp_path, monkeypatch):
    classifiers, gans = [], []
    real_make, real_gan = experiment.make_classifier, compare.train_gan_for_arms
    monkeypatch.setattr(experiment, "make_classifier", lambda *a, **k: (classifiers.append(k["device"]), real_make(*a, **k))[1])
    monkeypatch.setattr(compare, "train_gan_for_arms", lambda *a, **k: (gans.append(k["device"]), real_gan(*a, **k))[1])
    samplers = []
    real_sampler = compare.GANOverSampler
    monkeypatch.setattr(compare, "GANOverSampler", lambda **k: (samplers.append(k), real_sampler(**k))[1])
    result = compare.compare_flow.fn(CompareParams(**FAST, arms="none,gan", seeds=2, device="cpu", out=str(tmp_path / "d")))
    assert set(classifiers) == set(gans) == {"cpu"} and len(gans) == 2
    trained = [k for k in samplers if "progress" in k]  # the seeds' GANs (the plan checks the settings once)
    assert sorted((k["judge_steps"], k["steps"], k["random_state"]) for k in trained) == [(20, 3, 0), (20, 3, 1)]
    params = MlflowClient(tracking_uri=mlflow_store).get_run(result["run_id"]).data.params
    assert params["device"] == "cpu" and params["device_name"] == "cpu" and params["gan.judge_steps"] == "20"


def test_a_registered_generator_travels_to_workers_as_plain_cpu_data_and_samples_where_the_seed_runs():
    train = stratified_split(load_dataset("digits"), seed=0).train
    registered = compare.Registered.__new__(compare.Registered)  # what __init__ reads from the registry
    registered.source, registered.train_digest = "models:/g/1", dataset_digest(train.x, train.y)
    registered.sampler = GANOverSampler(steps=4, width=4, z_dim=8, batch_size=16, judge_steps=2, novelty_draws=1,
                                        autoencoder_steps=2, device="cpu", random_state=0).fit(train.x, train.y)
    labels = np.array([3, 8, 3])
    expected = compare.train_gan_for_arms(train, seed=0, steps=4, registered=registered, device="cpu")(labels, 7)

    state = registered.__getstate__()
    assert isinstance(state["sampler"], dict) and not isinstance(state["sampler"], GANOverSampler)
    tensors = [v for v in state["sampler"]["gan"]["generator"].values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    worker = pickle.loads(pickle.dumps(registered))  # what a Dask worker receives
    assert (worker.source, worker.train_digest) == (registered.source, registered.train_digest)
    synthesise = compare.train_gan_for_arms(train, seed=0, steps=4, registered=worker, device="cpu")
    assert worker.sampler.device_ == torch.device("cpu")
    assert synthesise.source == "models:/g/1"  # the seeds it served name it (compare's generator_seeds tag)
    np.testing.assert_array_equal(synthesise(labels, 7), expected)
