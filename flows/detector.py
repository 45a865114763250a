"""Anomaly flows: ``train-detector`` (train, calibrate, evaluate, register) and ``score`` (score a new
batch with a registered detector; every item ends in scores.csv or rejected.csv)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from anomaly import GANAnomalyDetector
from flows.common import call, load_data, prefect_tags, run_logger
from flows.params import ScoreParams, TrainDetectorParams
from pipelines.data.batches import Batch, read_batch
from pipelines.data.sources import ImageDataset
from pipelines.data.splits import parse_class_spec, stratified_split
from pipelines.evaluation.anomaly_report import (
    batch_summary,
    calibration_note,
    detector_report,
    score_histogram,
    score_table,
    validation_auroc,
)
from pipelines.tracking.registry import DetectorModel, load_estimator, register_estimator, resolve_model, set_alias_if_better
from pipelines.tracking.runs import find_runs, markdown_table, start_run


def normal_classes(params: TrainDetectorParams) -> tuple[ImageDataset, list[int]]:
    """The dataset and the indices of its normal classes (unknown classes fail here, before training)."""
    dataset = load_data(params.data, params.image_size)
    return dataset, sorted({dataset.class_index(k) for k in parse_class_spec(params.normal, counts="none")})


@task(name="train-detector", cache_policy=NO_CACHE)
def fit_detector(x_train: np.ndarray, x_calibration: np.ndarray, params: TrainDetectorParams) -> GANAnomalyDetector:
    logger = run_logger()

    def progress(stage: str, step: int, total: int, record: dict) -> None:
        logger.info("f-AnoGAN %s step %d/%d  elapsed %.0fs", stage, step, total, record["seconds"])

    detector = GANAnomalyDetector(score=params.score, target_fpr=params.target_fpr, epochs=params.epochs,
                                  random_state=params.seed, progress=progress,
                                  checkpoint_path=Path(params.out).expanduser() / "checkpoints" / "fanogan.pt")
    return detector.fit(x_train, x_calibration)


@flow(name="ganpipe-train-detector", log_prints=True)
def train_detector_flow(params: TrainDetectorParams = TrainDetectorParams()) -> dict:
    """Load -> train f-AnoGAN on the normal classes' training images -> calibrate on their
    validation images -> evaluate on the test split -> register; alias ``champion`` only when the
    new version beats the current champion on this run's validation data."""
    dataset, normal = normal_classes(params)
    splits = stratified_split(dataset, seed=params.seed)
    is_normal = {part: np.isin(getattr(splits, part).y, normal) for part in ("train", "val", "test")}
    with start_run("detector", run_name=f"detector-{params.data.split(':')[0]}-{params.normal}", tags=prefect_tags()) as run:
        run.log_params({**params.model_dump(), "normal_train_items": int(is_normal["train"].sum()),
                        "calibration_items": int(is_normal["val"].sum())})
        detector = call(fit_detector, splits.train.x[is_normal["train"]], splits.val.x[is_normal["val"]], params)
        for record in detector.model_.history:
            run.log_metrics({k: v for k, v in record.items() if k not in ("stage", "step", "seconds")}, step=record["step"])
        run.log_metrics({"train_seconds": detector.model_.seconds, "threshold": detector.threshold_})
        note = calibration_note(int(is_normal["val"].sum()), params.target_fpr)
        if note:
            run_logger().warning(note)
            run.set_tags({"calibration_warning": note})
        results, metrics, figures = detector_report(detector, splits.val.x, ~is_normal["val"], splits.test.x,
                                                    ~is_normal["test"])
        run.log_metrics(metrics)
        for path, figure in figures.items():
            run.log_figure(figure, path)
        version = register_estimator(run, DetectorModel(), detector, params.name,
                                     np.zeros((2, *detector.image_shape_), dtype=np.float32),
                                     description=f"f-AnoGAN detector, normal classes {params.normal} of {params.data}")
        champion = set_alias_if_better(params.name, version, "champion", lambda uri: validation_auroc(
            load_estimator(uri), splits.val.x, ~is_normal["val"]))
        run.set_tags({"registered_model": params.name, "model_version": version, "champion": champion})
    return {"run_id": run.run_id, "version": version, "champion": champion, "metrics": results,
            "threshold": detector.threshold_, "seconds": detector.model_.seconds, "detector": detector}


def record_scores(data: Batch, out_dir: Path, scores: pd.DataFrame, summary: dict, detector, model: tuple[str, str, str]) -> str:
    """One MLflow run (and a Prefect artifact inside a flow run) for a scored batch; returns its id."""
    name, version, pinned_uri = model
    tags = {**prefect_tags(), "batch_id": data.batch_id, "model_name": name, "model_version": version}
    with start_run("score", run_name=f"score-{data.batch_id}", tags=tags) as run:
        run.log_params({"batch": data.source, "model": pinned_uri, "threshold": detector.threshold_,
                        "score": detector.score, "target_fpr": detector.target_fpr_})
        run.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        run.log_artifact(out_dir / "scores.csv", "results")
        run.log_artifact(out_dir / "rejected.csv", "results")
        if len(scores):
            run.log_figure(score_histogram(scores["score"].to_numpy(), None, detector.threshold_, detector.score),
                           "figures/score_histogram.png")
    if tags.get("prefect.flow_run_id"):
        create_markdown_artifact(
            markdown=f"# Batch {data.batch_id}\n\n{summary['message']}\n\n" + markdown_table(
                pd.DataFrame({"metric": list(summary), "value": [str(v) for v in summary.values()]})),
            key=re.sub(r"[^a-z0-9-]", "-", f"score-{data.batch_id}".lower())[:100],
            description=f"scores of batch {data.batch_id} with {name} v{version}",
        )
    return run.run_id


@flow(name="ganpipe-score", log_prints=True)
def score_flow(params: ScoreParams) -> dict:
    """Read and validate every item -> score the valid ones -> write scores.csv and rejected.csv ->
    log the summary. The same batch id and model version is scored once: a repeat reuses that run."""
    model = resolve_model(params.model)
    detector = load_estimator(model[2])
    data = read_batch(params.batch, tuple(detector.image_shape_), params.batch_id)
    out_dir = Path(params.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = pd.concat([pd.DataFrame({"item_id": list(data.ids)}), score_table(detector, data.x)], axis=1)
    scores.to_csv(out_dir / "scores.csv", index=False)
    pd.DataFrame(list(data.rejected), columns=["item_id", "reason"]).to_csv(out_dir / "rejected.csv", index=False)
    summary = batch_summary(len(scores), len(data.rejected), int(scores["flag"].sum()), detector.target_fpr_)
    previous = find_runs("score", {"batch_id": data.batch_id, "model_name": model[0], "model_version": model[1]})
    run_id = previous[0] if previous else record_scores(data, out_dir, scores, summary, detector, model)
    return {"run_id": run_id, "repeated": bool(previous), "batch_id": data.batch_id, "model_version": model[1],
            "summary": summary, "out": str(out_dir)}
