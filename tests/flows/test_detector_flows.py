from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from anomaly import CRITIC_ONLY, SCORES
from flows.cli import main
from flows.detector import score_flow, train_detector_flow
from flows.params import ScoreParams, TrainDetectorParams
from pipelines.data.sources import load_dataset
from pipelines.devices import resolve_device
from tests.conftest import write_png


@pytest.fixture(scope="module")
def trained(tmp_path_factory, migrated_mlflow_db):
    """A tiny detector (digits, class 0 normal) registered twice, same split, in a module-wide store."""
    import os
    import shutil

    home = tmp_path_factory.mktemp("home")
    (home / "mlflow").mkdir()
    shutil.copy(migrated_mlflow_db, home / "mlflow" / "mlflow.db")
    old = {k: os.environ.get(k) for k in ("GANPIPE_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["GANPIPE_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    first = train_detector_flow.fn(TrainDetectorParams(data="digits", normal="0", epochs=8, seed=0, target_fpr=0.05,
                                                       out=str(home / "det"), name="digits-zero"))
    second = train_detector_flow.fn(TrainDetectorParams(data="digits", normal="0", epochs=2, seed=0, target_fpr=0.05,
                                                        out=str(home / "det2"), name="digits-zero"))
    yield {"home": home, "first": first, "second": second, "uri": os.environ["MLFLOW_TRACKING_URI"]}
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_train_detector_logs_metrics_figures_and_registers(trained):
    first = trained["first"]
    assert first["version"] == "1" and first["champion"]
    test = first["metrics"]["test"]
    assert 0.5 < test["auroc"] <= 1 and test["anomaly_base_rate"] == pytest.approx(0.9, abs=0.01)
    client = MlflowClient(tracking_uri=trained["uri"])
    run = client.get_run(first["run_id"])
    assert {"test_auroc", "test_aupr", "test_fpr_at_threshold", "val_auroc", "threshold"} <= set(run.data.metrics)
    assert 0 <= run.data.metrics["val_fpr_held_out"] <= 1  # calibration normals that did not set the threshold
    figures = {f.path for f in client.list_artifacts(first["run_id"], "figures")}
    assert {"figures/roc_test.png", "figures/score_histogram_test.png", "figures/reconstructions.png"} <= figures
    device = str(first["detector"].device_)  # --device auto: the device it trained on
    assert run.data.params["device"] == run.data.tags["device"] == device and run.data.tags["device_name"]
    registered = client.get_registered_model("digits-zero")
    assert "f-AnoGAN anomaly detector" in registered.description and registered.tags["ganpipe.kind"] == "detector"


def test_champion_moves_only_to_a_better_version(trained):
    client = MlflowClient(tracking_uri=trained["uri"])
    second = trained["second"]
    holder = str(client.get_model_version_by_alias("digits-zero", "champion").version)
    first_auroc, second_auroc = trained["first"]["metrics"]["val"]["auroc"], second["metrics"]["val"]["auroc"]
    assert second["champion"] == (second_auroc > first_auroc)
    assert holder == ("2" if second["champion"] else "1")
    # both trained on the same split: the whole validation split is unseen by both
    from pipelines.data.splits import stratified_split

    n_val = len(stratified_split(load_dataset("digits"), seed=0).val)
    assert f"on {n_val} images neither trained on" in client.get_model_version("digits-zero", "2").tags["champion_comparison"]


def test_registered_model_scores_like_the_in_memory_one(trained):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/digits-zero/1")
    x = load_dataset("digits").x[:20]
    from_registry = model.predict(x)
    in_memory = trained["first"]["detector"]
    np.testing.assert_allclose(from_registry["score"], in_memory.score_samples(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_registry["p_value"], in_memory.p_values(x))
    needed = CRITIC_ONLY if in_memory.score in CRITIC_ONLY else SCORES  # no G(E(x)) unless needed,
    # nor the snapshots' or the maps' passes
    fast = [k for k in needed if k not in ("multi_critic_distance", "critic_map") or in_memory.score == k]
    assert list(from_registry.columns) == ["score", *fast, "p_value", "flag"]
    assert model.unwrap_python_model().estimator.image_shape_ == (1, 8, 8)


def _mixed_batch(root):
    ds = load_dataset("digits")
    normals, anomalies = ds.x[ds.y == 0][:5], ds.x[ds.y == 7][:5]
    for i, img in enumerate(np.concatenate([normals, anomalies])):
        write_png(root / f"item{i:02d}.png", (img[0] * 255).astype(np.uint8))
    (root / "truncated.png").write_bytes((root / "item00.png").read_bytes()[:30])
    (root / "notes.txt").write_text("not an image")
    write_png(root / "colour.png", np.stack([np.zeros((8, 8)), np.full((8, 8), 255), np.zeros((8, 8))], -1).astype(np.uint8))
    write_png(root / "wide.png", np.zeros((8, 20), np.uint8))
    write_png(root / "sub" / "big.png", np.zeros((16, 16), np.uint8))  # square: resized to 8x8
    return 15


def test_score_batch_accounts_for_every_item_and_is_idempotent(trained, tmp_path):
    batch = tmp_path / "batch"
    n_items = _mixed_batch(batch)
    result = score_flow.fn(ScoreParams(batch=str(batch), out=str(tmp_path / "out"), model="models:/digits-zero/1"))
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert len(scores) + len(rejected) == n_items
    assert not set(scores["item_id"]) & set(rejected["item_id"])
    reasons = dict(zip(rejected["item_id"], rejected["reason"]))
    assert reasons["notes.txt"] == "not an image file (.txt)"
    assert "unreadable image" in reasons["truncated.png"]
    assert reasons["colour.png"] == "wrong channel count: image has 3, expected 1"
    assert "cannot be resized to 8x8" in reasons["wide.png"]
    assert "sub/big.png" in set(scores["item_id"])
    assert set(scores.columns) >= {"item_id", "score", *(set(CRITIC_ONLY) - {"multi_critic_distance", "critic_map"}), "p_value", "flag"}
    assert result["summary"]["scored"] == 11 and result["summary"]["rejected"] == 4 and not result["repeated"]

    again = score_flow.fn(ScoreParams(batch=str(batch), out=str(tmp_path / "out2"), model="models:/digits-zero/1"))
    assert again["repeated"] and again["run_id"] == result["run_id"]
    client = MlflowClient(tracking_uri=trained["uri"])
    experiment = client.get_experiment_by_name("ganpipe-score")
    runs = client.search_runs([experiment.experiment_id], f"tags.batch_id = '{result['batch_id']}'")
    assert len(runs) == 1
    assert runs[0].data.params["device"] == runs[0].data.tags["device"] == str(resolve_device("auto"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out2" / "scores.csv"), scores)


def test_score_npz_with_nan_items_and_default_champion(trained, tmp_path):
    x = load_dataset("digits").x[:6].copy()
    x[2, 0, 3, 3] = np.nan
    np.savez(tmp_path / "b.npz", x=x, ids=np.array([f"id{i}" for i in range(6)]))
    result = score_flow.fn(ScoreParams(batch=str(tmp_path / "b.npz"), out=str(tmp_path / "o"),
                                      model="models:/digits-zero@champion"))
    rejected = pd.read_csv(tmp_path / "o" / "rejected.csv")
    assert rejected.to_dict("records") == [{"item_id": "id2", "reason": "contains NaN or infinite values"}]
    assert result["summary"]["scored"] == 5


def test_an_anomalous_batch_raises_an_alert(trained, tmp_path):
    ds = load_dataset("digits")
    np.savez(tmp_path / "sevens.npz", x=ds.x[ds.y == 7][:60])
    result = score_flow.fn(ScoreParams(batch=str(tmp_path / "sevens.npz"), out=str(tmp_path / "o"), model="models:/digits-zero/1"))
    assert result["summary"]["alert"] and result["summary"]["message"].startswith("ALERT")


def test_each_scored_batch_adds_a_point_to_the_models_trend(trained, tmp_path):
    from pipelines.evaluation.monitoring import alert_rate

    ds = load_dataset("digits")
    client = MlflowClient(tracking_uri=trained["uri"])

    def history(run_id):
        return {k: [m.value for m in sorted(client.get_metric_history(run_id, f"monitor/{k}"), key=lambda m: m.step)]
                for k in ("anomaly_rate", "alert", "expected_rate", "alert_rate", "mean_score")}

    def score(name, x):
        np.savez(tmp_path / f"{name}.npz", x=x)
        return score_flow.fn(ScoreParams(batch=str(tmp_path / f"{name}.npz"), out=str(tmp_path / name),
                                         model="models:/digits-zero/1", batch_id=name))

    normal = score("trend-zeros", ds.x[ds.y == 0][-40:])
    experiment = client.get_experiment_by_name("ganpipe-monitoring")
    (monitor,) = client.search_runs([experiment.experiment_id], "tags.model_name = 'digits-zero'")
    before = history(monitor.info.run_id)
    anomalous = score("trend-sevens", ds.x[ds.y == 7][:60])
    score("trend-sevens", ds.x[ds.y == 7][:60])  # the same batch again: reused, no new point
    after = history(monitor.info.run_id)
    assert len(after["anomaly_rate"]) == len(before["anomaly_rate"]) + 1
    assert after["anomaly_rate"][-1] == pytest.approx(anomalous["summary"]["anomaly_rate"]) and after["alert"][-1] == 1.0
    assert before["anomaly_rate"][-1] == pytest.approx(normal["summary"]["anomaly_rate"])
    assert after["expected_rate"][-1] == pytest.approx(trained["first"]["detector"].target_fpr_)
    assert after["alert_rate"][-1] == pytest.approx(alert_rate(60, trained["first"]["detector"].target_fpr_))
    assert after["alert"][-1] == float(after["anomaly_rate"][-1] >= after["alert_rate"][-1])
    artifacts = {f.path for d in ("figures", "tables") for f in client.list_artifacts(monitor.info.run_id, d)}
    assert {"figures/trend.png", "tables/trend.csv"} <= artifacts


def test_alert_rate_is_the_binomial_line_of_the_batch_size():
    from scipy.stats import binomtest

    from pipelines.evaluation.monitoring import alert_rate

    for n, p in ((60, 0.01), (1000, 0.05), (7, 0.2)):
        line = alert_rate(n, p)
        k = round(line * n)
        assert binomtest(k, n, p, alternative="greater").pvalue < 1e-3 <= binomtest(k - 1, n, p, alternative="greater").pvalue


@pytest.mark.parametrize(
    "argv, message",
    [
        (["score", "/no/such/batch", "--out", "o", "--model", "models:/digits-zero/1"], "batch not found: /no/such/batch"),
        (["score", ".", "--out", "o", "--model", "models:/nobody@champion"], "model models:/nobody@champion not found"),
        (["train-detector", "--data", "digits", "--normal", "eleven"], "unknown class 'eleven'"),
        (["train-detector", "--data", "digits", "--normal", "0", "--score", "magic"], "unknown score 'magic'"),
    ],
)
def test_detector_cli_errors(trained, argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize("argv", [["train-detector", "--data", "digits", "--normal", "0"],
                                  ["score", ".", "--out", "o", "--model", "models:/digits-zero/1"]])
def test_a_device_that_is_not_there_fails_in_one_line_before_any_work(trained, argv, capsys, monkeypatch):
    import flows.cli

    monkeypatch.setattr(flows.cli, "run_flow", lambda *a: pytest.fail("a flow started"))
    monkeypatch.setattr("flows.detector.load_data", lambda *a: pytest.fail("the data was read"))
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda: no CUDA GPU is available" in err and len(err.splitlines()) == 1


def test_a_stale_registered_detector_is_one_line_naming_the_model(trained, tmp_path, monkeypatch, capsys):
    """A detector registered before the critic-feature scores existed (its state lacks their density)."""
    from anomaly import GANAnomalyDetector

    current = GANAnomalyDetector.state_dict
    monkeypatch.setattr(GANAnomalyDetector, "state_dict", lambda self: {
        k: v for k, v in current(self).items() if k not in ("feature_mean", "feature_whitening", "feature_reference")})
    train_detector_flow.fn(TrainDetectorParams(data="digits", normal="0", epochs=1, seed=0, out=str(tmp_path / "det"),
                                               name="digits-stale"))
    monkeypatch.undo()
    batch = tmp_path / "batch"
    batch.mkdir()
    write_png(batch / "a.png", np.zeros((8, 8), dtype=np.uint8))
    capsys.readouterr()  # the training's output
    assert main(["score", str(batch), "--out", str(tmp_path / "o"), "--model", "models:/digits-stale/1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "models:/digits-stale/1" in err and "train it again" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_champion_is_compared_on_images_neither_version_trained_on(trained, tmp_path):
    """Version 2 splits with another seed: the champion (seed 0) trained on some of its validation images."""
    import re

    from pipelines.data.splits import stratified_split

    client = MlflowClient(tracking_uri=trained["uri"])
    for seed in (0, 1):
        train_detector_flow.fn(TrainDetectorParams(data="digits", normal="0", epochs=1, seed=seed,
                                                   out=str(tmp_path / f"d{seed}"), name="digits-seeds"))
    note = client.get_model_version("digits-seeds", "2").tags["champion_comparison"]
    dataset = load_dataset("digits")
    seen_by_first = set(stratified_split(dataset, seed=0).train.item_ids)
    val = stratified_split(dataset, seed=1).val.item_ids
    unseen = sum(item not in seen_by_first for item in val)
    assert 0 < unseen < len(val)
    assert re.search(rf"on {unseen} images neither trained on", note)

    # a champion trained on other data: nothing is known to be unseen by both, so it stays
    train_detector_flow.fn(TrainDetectorParams(data="digits", normal="0", epochs=1, seed=0, image_size=12,
                                               out=str(tmp_path / "big"), name="digits-sizes"))
    result = train_detector_flow.fn(TrainDetectorParams(data="digits", normal="0", epochs=1, seed=0,
                                                        out=str(tmp_path / "small"), name="digits-sizes"))
    assert result["champion"] is False
    assert "not compared" in client.get_model_version("digits-sizes", "2").tags["champion_comparison"]


def test_score_writes_a_map_for_every_flagged_item_and_a_gallery(trained, tmp_path):
    ds = load_dataset("digits")
    x = np.concatenate([ds.x[ds.y == 0][:20], ds.x[ds.y == 7][:20]])
    np.savez(tmp_path / "b.npz", x=x, ids=np.array([f"item/{i}" for i in range(40)]))
    result = score_flow.fn(ScoreParams(batch=str(tmp_path / "b.npz"), out=str(tmp_path / "o"), model="models:/digits-zero/1"))
    scores = pd.read_csv(tmp_path / "o" / "scores.csv", dtype={"item_id": str})
    flagged = scores.loc[scores["flag"] == 1, "item_id"].tolist()
    assert flagged  # sevens among zeros
    from pipelines.data.maps import png_name

    assert sorted(p.name for p in (tmp_path / "o" / "maps").iterdir()) == sorted(png_name(i) for i in flagged)
    with np.load(tmp_path / "o" / "maps.npz") as npz:
        assert npz["maps"].shape == (len(flagged), 8, 8) and npz["item_ids"].tolist() == flagged
        detector = trained["first"]["detector"]
        index = [int(i.split("/")[1]) for i in flagged]
        np.testing.assert_allclose(npz["maps"], detector.anomaly_map(x[index]), rtol=1e-2, atol=1e-2)  # float16
    assert not (tmp_path / "o" / ".maps.partial").exists()
    client = MlflowClient(tracking_uri=trained["uri"])
    artifacts = {f.path for d in ("figures", "maps") for f in client.list_artifacts(result["run_id"], d)}
    assert "figures/top_anomalies.png" in artifacts and any(a.startswith("maps/") for a in artifacts)

    score_flow.fn(ScoreParams(batch=str(tmp_path / "b.npz"), out=str(tmp_path / "all"), model="models:/digits-zero/1",
                              maps="all", batch_id="again-all"))
    with np.load(tmp_path / "all" / "maps.npz") as npz:
        assert npz["maps"].shape == (40, 8, 8)
    score_flow.fn(ScoreParams(batch=str(tmp_path / "b.npz"), out=str(tmp_path / "none"), model="models:/digits-zero/1",
                              maps="none", batch_id="again-none"))
    assert not (tmp_path / "none" / "maps").exists() and not (tmp_path / "none" / "maps.npz").exists()
