from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.tracking import runs as tracking


def test_default_store_lives_under_the_project_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("GANPIPE_HOME", str(tmp_path))
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"
    assert "http://127.0.0.1:5999" in tracking.ui_command()


def test_run_logs_params_metrics_tables_and_figures(mlflow_store, tmp_path):
    with tracking.start_run("demo", run_name="t", tags={"prefect.flow_run_id": "abc"}) as run:
        run.log_params({"epochs": 3, "data": "digits"})
        run.log_metrics({"balanced_accuracy": 0.9, "skipped": float("nan")})
        run.log_metrics({"loss": 1.5}, step=2, prefix="train/")
        run.log_table(pd.DataFrame({"class": ["a|b"], "recall": [0.5]}), "tables/per_class.csv")
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        run.log_figure(fig, "figures/line.png")
    client = MlflowClient(tracking_uri=mlflow_store)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"epochs": "3", "data": "digits"}
    assert stored.data.metrics == {"balanced_accuracy": 0.9, "train/loss": 1.5}
    assert stored.data.tags["prefect.flow_run_id"] == "abc"
    assert client.get_experiment(stored.info.experiment_id).name == "ganpipe-demo"
    files = {f.path for folder in ("tables", "figures") for f in client.list_artifacts(run.run_id, folder)}
    assert files == {"tables/per_class.csv", "tables/per_class.md", "figures/line.png"}
    # artifacts of the local store land under <home>/mlflow/artifacts
    home = tracking.project_home()
    assert list((home / "mlflow" / "artifacts" / "ganpipe-demo").rglob("line.png"))
    md = (next((home / "mlflow" / "artifacts").rglob("per_class.md"))).read_text()
    assert "| a\\|b | 0.500 |" in md


def test_failed_block_marks_the_run_failed_with_the_reason(mlflow_store):
    with pytest.raises(RuntimeError):
        with tracking.start_run("demo", run_name="boom") as run:
            raise RuntimeError("disk\nfull")
    stored = MlflowClient(tracking_uri=mlflow_store).get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["ganpipe.error"] == "RuntimeError: disk full"
    assert "disk full" in stored.data.tags["mlflow.note.content"]


def test_runs_carry_user_source_and_commit_tags(mlflow_store):
    import getpass
    import subprocess

    with tracking.start_run("demo", run_name="tagged") as run:
        pass
    tags = MlflowClient(tracking_uri=mlflow_store).get_run(run.run_id).data.tags
    assert tags["mlflow.user"] == getpass.getuser() and tags["mlflow.source.type"] == "JOB" and tags["mlflow.source.name"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(tracking.__file__).resolve().parents[2]).stdout.strip()
    if head:  # a source checkout (CI clones one): the run names the commit
        assert tags["mlflow.source.git.commit"] == head


def test_nested_run_points_at_its_parent(mlflow_store):
    with tracking.start_run("compare", run_name="parent") as parent:
        with tracking.start_run("compare", run_name="child", parent=parent) as child:
            pass
    tags = MlflowClient(tracking_uri=mlflow_store).get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id


def test_long_runs_log_system_metrics_while_they_run(mlflow_store, monkeypatch):
    import time

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    with tracking.start_run("demo", run_name="long", system_metrics=True) as run:
        time.sleep(1.0)
    metrics = MlflowClient(tracking_uri=mlflow_store).get_run(run.run_id).data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in metrics), metrics


def test_runs_whose_process_died_are_ended_killed_by_the_next_command(mlflow_store, monkeypatch):
    import json
    import socket
    import subprocess
    import sys

    import psutil

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(gone.pid).create_time()
    gone.wait()
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = tracking.experiment_id("ganpipe-compare")
    owners = {
        "dead": {"host": socket.gethostname(), "pid": gone.pid, "started": started},
        "alive": json.loads(tracking._owner_tag()),  # this process
        "other host": {"host": socket.gethostname() + "-elsewhere", "pid": gone.pid, "started": started},
    }
    ids = {name: client.create_run(experiment, tags={tracking.OWNER_TAG: json.dumps(owner)}).info.run_id
           for name, owner in owners.items()}
    monkeypatch.setattr(tracking, "_swept", [])
    assert tracking.end_orphaned_runs() == 1
    states = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert states == {"dead": "KILLED", "alive": "RUNNING", "other host": "RUNNING"}
    assert "Killed" in client.get_run(ids["dead"]).data.tags["mlflow.note.content"]
    with tracking.start_run("compare", run_name="next") as run:  # a new run records its owner
        pass
    assert json.loads(client.get_run(run.run_id).data.tags[tracking.OWNER_TAG])["pid"] == owners["alive"]["pid"]


def test_a_run_stopped_by_a_signal_ends_killed(mlflow_store):
    from pipelines.stopping import Stopped

    with pytest.raises(Stopped):
        with tracking.start_run("compare", run_name="stopped") as run:
            raise Stopped("SIGTERM")
    assert MlflowClient(tracking_uri=mlflow_store).get_run(run.run_id).info.status == "KILLED"
