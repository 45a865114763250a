from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from flows.demo import demo_flow


def test_demo_flow_fn_reports_minority_metrics(mlflow_store):
    result = demo_flow.fn(data="digits", minority="3:4", epochs=2, seed=1)
    assert set(result["summary"]) >= {"balanced_accuracy", "macro_f1", "g_mean", "minority_recall", "minority_pr_auc"}
    assert result["train_counts"]["3"] == 4
    assert result["per_class"].loc[3, "minority"]
    run = MlflowClient(tracking_uri=mlflow_store).get_run(result["run_id"])
    assert run.data.params["minority"] == "3:4"


def test_invalid_flow_parameters_are_reported_plainly(mlflow_store):
    from pipelines.errors import GanpipeError

    with pytest.raises(GanpipeError, match="invalid parameters: epochs: Input should be greater than or equal to 1"):
        demo_flow.fn(data="digits", epochs=0)


@pytest.mark.slow
def test_demo_quick_end_to_end_under_prefect(prefect_harness, mlflow_store, capsys):
    """`ganpipe demo --quick`: a real Prefect flow run, a real SQLite MLflow store."""
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "| metric | value |" in out and "balanced_accuracy" in out and "minority_recall" in out
    assert "mlflow ui --backend-store-uri " + mlflow_store in out
    run_id = out.split("MLflow run id: ")[1].split()[0]
    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["data"] == "digits" and run.data.params["epochs"] == "3"
    assert 0.5 < run.data.metrics["balanced_accuracy"] <= 1.0
    assert run.data.tags["prefect.flow_run_id"]  # linked to the Prefect flow run
    figures = {f.path for f in client.list_artifacts(run_id, "figures")}
    assert {"figures/confusion.png", "figures/train_class_counts.png", "figures/classes.png"} <= figures

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(run.data.tags["prefect.flow_run_id"])
    assert flow_run.state.is_completed()
