"""Real processes on loopback: a Prefect server, an MLflow server, `ganpipe serve`, a Dask cluster.
Every wait is bounded; every process is stopped by the fixture that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.inbox import claim, pending_batches
from flows.servers import start_mlflow_server, start_prefect_server, stop
from pipelines.data.sources import load_dataset
from tests.conftest import write_png

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    prefect, api = start_prefect_server(home=root / "prefect")
    try:
        mlflow, url = start_mlflow_server(backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
                                          artifacts=root / "artifacts", log_file=root / "mlflow.log")
    except BaseException:
        stop(prefect)
        raise
    yield {"root": root, "api": api, "mlflow": url}
    stop(mlflow)
    stop(prefect)


def _digit_batch(folder, n=6):
    ds = load_dataset("digits")
    for i, img in enumerate(ds.x[:n]):
        write_png(folder / f"{i}.png", (img[0] * 255).astype(np.uint8))


def test_pending_batches_skips_scored_hidden_and_fresh_entries(tmp_path):
    inbox, outbox = tmp_path / "in", tmp_path / "in" / "_scored"
    for name in ("a", "b", ".hidden"):
        (inbox / name).mkdir(parents=True)
    (inbox / "c.npz").write_bytes(b"")
    (inbox / "notes.txt").write_text("x")
    (outbox / "b").mkdir(parents=True)
    (outbox / "b" / "scores.csv").write_text("item_id\n")
    assert sorted(p.name for p in pending_batches(inbox, outbox, settle_seconds=0)) == ["a", "c.npz"]
    assert pending_batches(inbox, outbox, settle_seconds=3600) == []
    assert claim(outbox / "a") and not claim(outbox / "a")  # a second overlapping run cannot take it
    assert [p.name for p in pending_batches(inbox, outbox, settle_seconds=0)] == ["c.npz"]


def test_scheduled_inbox_run_scores_a_dropped_batch_and_logs_to_the_mlflow_server(servers, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", servers["mlflow"])
    from flows.detector import train_detector_flow
    from flows.params import TrainDetectorParams

    trained = train_detector_flow.fn(TrainDetectorParams(data="digits", normal="0", epochs=2, name="ops-detector",
                                                         out=str(tmp_path / "det")))
    assert trained["champion"]

    inbox = tmp_path / "inbox"
    env = {**os.environ, "PREFECT_API_URL": servers["api"], "MLFLOW_TRACKING_URI": servers["mlflow"],
           "PREFECT_HOME": str(servers["root"] / "client"), "GANPIPE_HOME": str(tmp_path / "home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--inbox", str(inbox), "--interval", "5",
                              "--model", "models:/ops-detector@champion"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Serving 3 deployments" not in (tmp_path / "serve.log").read_text() and time.monotonic() < deadline:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        _digit_batch(inbox / "batch-001")
        scores = inbox / "_scored" / "batch-001" / "scores.csv"
        deadline = time.monotonic() + 240
        while not scores.exists() and time.monotonic() < deadline:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(1)
        assert scores.exists(), (tmp_path / "serve.log").read_text()[-3000:]
        assert len(pd.read_csv(scores)) == 6
        flow_run = _finished_flow_run(servers, "batch-001", timeout=120)
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(10)
    output = (tmp_path / "serve.log").read_text()
    assert "ganpipe-score-inbox/score-inbox       every 5 s" in output and "Prefect UI:" in output

    client = MlflowClient(tracking_uri=servers["mlflow"])
    experiment = client.get_experiment_by_name("ganpipe-score")
    runs = client.search_runs([experiment.experiment_id], "tags.batch_id = 'batch-001'")
    assert len(runs) == 1 and runs[0].data.tags["prefect.flow_run_id"] == str(flow_run.id)
    assert flow_run.state.is_completed()
    assert flow_run.auto_scheduled  # created by the schedule, not by hand
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: servers["api"]}):
        with get_client(sync_client=True) as prefect:
            assert prefect.read_deployment(flow_run.deployment_id).name == "score-inbox"


def _finished_flow_run(servers, batch_id: str, timeout: float):
    """The Prefect flow run that logged ``batch_id`` to MLflow, once it has reached a final state."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    client = MlflowClient(tracking_uri=servers["mlflow"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("ganpipe-score")
        runs = client.search_runs([experiment.experiment_id], f"tags.batch_id = '{batch_id}'") if experiment else []
        if runs and runs[0].data.tags.get("prefect.flow_run_id"):
            with temporary_settings({PREFECT_API_URL: servers["api"]}):
                with get_client(sync_client=True) as prefect:
                    flow_run = prefect.read_flow_run(runs[0].data.tags["prefect.flow_run_id"])
            if flow_run.state.is_final():
                return flow_run
        time.sleep(1)
    raise AssertionError(f"no finished flow run for batch {batch_id} within {timeout} s")


def test_compare_on_a_dask_cluster_gives_the_same_table_as_threads(prefect_harness, mlflow_store, tmp_path):
    """The CNN and the GAN arms included: each model draws from generators of its own."""
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.compare import compare_flow
    from flows.params import CompareParams

    params = {"data": "digits", "minority": "3:5,8:5", "arms": "none,ros,gan", "seeds": 2, "classifier": "cnn",
              "epochs": 1, "gan_steps": 4, "gan": {"judge_steps": 20}}  # a short judge: it is in, and cheap
    dask = compare_flow.with_options(
        task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True, "threads_per_worker": 1})
    )(CompareParams(**params, out=str(tmp_path / "dask")))
    threads = compare_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
        CompareParams(**params, out=str(tmp_path / "t")))
    pd.testing.assert_frame_equal(dask["results"], threads["results"], check_exact=True)
