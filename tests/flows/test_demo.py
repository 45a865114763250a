from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main


@pytest.mark.slow
def test_demo_quick_end_to_end_under_prefect(prefect_harness, mlflow_store, capsys, tmp_path):
    """`ganpipe demo --quick`: real Prefect flow runs (augment and compare as subflows), a real
    SQLite MLflow store, the tables printed, the runs linked to their Prefect flow runs."""
    assert main(["demo", "--quick", "--device", "cpu", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "== augment: digits" in out and "== compare: 2 seeds" in out
    assert "| arm | seeds | minority_recall |" in out and "Best arm on minority_recall" in out
    assert "mlflow ui --backend-store-uri " + mlflow_store in out
    assert (tmp_path / "demo" / "augment" / "synthetic.npz").is_file()
    assert (tmp_path / "demo" / "compare" / "comparison.csv").is_file()

    augment_id = out.split("MLflow runs: augment ")[1].split(",")[0]
    compare_id = out.split(", compare ")[1].split()[0]
    client = MlflowClient(tracking_uri=mlflow_store)
    for run_id in (augment_id, compare_id):  # links to the runs' pages in the UI
        experiment = client.get_run(run_id).info.experiment_id
        assert f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}" in out
    from prefect.client.orchestration import get_client

    for run_id, name in ((augment_id, "augment-digits-seed0"), (compare_id, "compare-digits-seeds2")):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == name
        assert run.data.params["device"] == "cpu"  # --device reaches both jobs
        with get_client(sync_client=True) as prefect:
            flow_run = prefect.read_flow_run(run.data.tags["prefect.flow_run_id"])
            assert flow_run.state.is_completed() and flow_run.name == name  # named after the job, not random words
    assert client.list_artifacts(augment_id, "figures") and client.list_artifacts(compare_id, "figures")
    # compare reused the generator augment registered for seed 0 (its training split) and trained its own for seed 1
    parent = client.get_run(compare_id)
    assert parent.data.tags["generator_seeds"] == "0" and parent.data.tags["generator"].startswith("models:/ganpipe-demo-cgan/")
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{compare_id}'")
    reused = {c.data.tags["seed"] for c in children if c.data.tags["arm"] == "gan" and c.data.tags.get("generator")}
    assert reused == {"0"}
    assert "8x8 digits" in out
    # what the MLflow pages show (issue 25): the answer on the parent, the kind of each experiment,
    # what each arm trained on
    arms = ["none", "ros", "smote", "gan"]  # the quick demo's arms
    for arm in arms:
        assert {f"arm/{arm}/minority_recall", f"arm/{arm}/minority_recall_low", f"arm/{arm}/balanced_accuracy_high"} \
            <= set(parent.data.metrics)
    assert not any(k.startswith("test/") for k in parent.data.metrics)  # per-arm numbers live under arm/<arm>/
    assert parent.data.tags["best_arm"] in arms and parent.data.tags["best_non_gan_arm"] in arms[:3]
    assert parent.data.tags["gan_significant"] in ("true", "false") and float(parent.data.tags["gan_gain"]) == float(
        parent.data.tags["gan_gain"])
    assert "| arm |" in parent.data.tags["mlflow.note.content"]
    for run_id in (augment_id, compare_id):
        experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development" and experiment.tags["mlflow.note.content"]
    for child in children:
        contexts = {next(t.value for t in d.tags if t.key == "mlflow.data.context") for d in child.inputs.dataset_inputs}
        assert contexts == {"train", "validation", "test"}
    flow_run_url = parent.data.tags["prefect.flow_run_url"]
    assert flow_run_url.endswith("/runs/flow-run/" + parent.data.tags["prefect.flow_run_id"])
