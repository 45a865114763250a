"""Anomaly flows: ``train-detector`` (train, calibrate, evaluate, register) and ``score`` (score a new
batch with a registered detector; every item ends in scores.csv or rejected.csv)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from anomaly.detector import SCORES, GANAnomalyDetector
from flows.common import call, prefect_tags, run_logger, validated
from flows.models import DetectorModel
from pipelines.anomaly_report import (
    anomaly_metrics,
    batch_summary,
    reconstruction_figure,
    roc_figure,
    score_histogram,
)
from pipelines.batches import read_batch
from pipelines.data import load_dataset
from pipelines.errors import GanpipeError
from pipelines.splits import stratified_split
from pipelines.tracking import find_runs, log_pyfunc_model, markdown_table, set_alias_if_better, start_run

DEFAULT_MODEL = "ganpipe-detector"


class TrainDetectorParams(BaseModel):
    data: str = Field("mnist5k", description="data source spec")
    normal: str = Field(..., description="normal classes, CLASS[,CLASS...]")
    epochs: float | None = Field(None, gt=0, le=10000, description="passes over the normal images per stage")
    seed: int = Field(0, ge=0)
    name: str = Field(DEFAULT_MODEL, min_length=1, description="registered model name")
    score: str = Field("ensemble", description=f"score used to flag: {', '.join(SCORES)}")
    target_fpr: float = Field(0.01, gt=0, lt=0.5, description="false positive rate the threshold aims for")
    image_size: int | None = Field(None, ge=8, le=64)
    out: str = Field("out/detector", description="folder for checkpoints")

    @field_validator("score")
    @classmethod
    def _known_score(cls, value: str) -> str:
        if value not in SCORES:
            raise ValueError(f"unknown score {value!r}; use one of: {', '.join(SCORES)}")
        return value


def normal_labels(dataset, normal: str) -> list[int]:
    names = [n.strip() for n in normal.split(",") if n.strip()]
    if not names:
        raise GanpipeError("no normal classes given; expected CLASS[,CLASS...]")
    return sorted({dataset.class_index(n) for n in names})


@task(name="train-detector", cache_policy=NO_CACHE)
def fit_detector(x_train: np.ndarray, x_calibration: np.ndarray, params: TrainDetectorParams) -> GANAnomalyDetector:
    logger = run_logger()
    steps = {} if params.epochs is None else {"gan_steps": max(1, int(params.epochs * len(x_train) / 64)),
                                              "encoder_steps": max(1, int(params.epochs * len(x_train) / 64))}

    def progress(stage: str, step: int, total: int, record: dict) -> None:
        logger.info("f-AnoGAN %s step %d/%d  elapsed %.0fs", stage, step, total, record["seconds"])

    detector = GANAnomalyDetector(score=params.score, target_fpr=params.target_fpr, **steps,
                                  random_state=params.seed, progress=progress,
                                  checkpoint_path=Path(params.out).expanduser() / "checkpoints" / "fanogan.pt")
    return detector.fit(x_train, x_calibration)


@flow(name="ganpipe-train-detector", log_prints=True)
def train_detector_flow(
    data: str = "mnist5k",
    normal: str = "0",
    epochs: float | None = None,
    seed: int = 0,
    name: str = DEFAULT_MODEL,
    score: str = "ensemble",
    target_fpr: float = 0.01,
    image_size: int | None = None,
    out: str = "out/detector",
) -> dict:
    """Load -> train f-AnoGAN on the normal classes' training images -> calibrate on their
    validation images -> evaluate on the test split -> register; alias ``champion`` only when the
    new version beats the current champion on this run's validation data."""
    params = validated(TrainDetectorParams, locals())
    dataset = load_dataset(params.data, image_size=params.image_size)
    normal_idx = normal_labels(dataset, params.normal)
    splits = stratified_split(dataset, seed=params.seed)
    is_normal = {part: np.isin(getattr(splits, part).y, normal_idx) for part in ("train", "val", "test")}
    with start_run("detector", run_name=f"detector-{params.data.split(':')[0]}-{params.normal}", tags=prefect_tags()) as run:
        run.log_params({**params.model_dump(), "normal_train_items": int(is_normal["train"].sum()),
                        "calibration_items": int(is_normal["val"].sum())})
        detector = call(fit_detector, splits.train.x[is_normal["train"]], splits.val.x[is_normal["val"]], params)
        for record in detector.model_.history:
            run.log_metrics({k: v for k, v in record.items() if k not in ("stage", "step", "seconds")}, step=record["step"])
        run.log_metrics({"train_seconds": detector.model_.seconds, "threshold": detector.threshold_})
        n_calibration = int(is_normal["val"].sum())
        if n_calibration < 1 / params.target_fpr:
            note = (f"only {n_calibration} held-out normal images calibrate the threshold: a false positive rate "
                    f"below {1 / (n_calibration + 1):.1%} cannot be told apart from {params.target_fpr:.1%}; "
                    "the threshold is the highest calibration score")
            run_logger().warning(note)
            run.set_tags({"calibration_warning": note})

        val_scores = detector.score_components(splits.val.x)
        val_metrics = anomaly_metrics(~is_normal["val"], val_scores[params.score], detector.threshold_)
        run.log_metrics(val_metrics, prefix="val_")
        results = {"val": val_metrics}
        test_scores = detector.score_components(splits.test.x)
        anomalous = ~is_normal["test"]
        if anomalous.any():
            test_metrics = anomaly_metrics(anomalous, test_scores[params.score], detector.threshold_)
            run.log_metrics(test_metrics, prefix="test_")
            run.log_metrics({f"test_auroc_{k}": anomaly_metrics(anomalous, test_scores[k], np.inf)["auroc"] for k in SCORES})
            run.log_figure(roc_figure(anomalous, {k: test_scores[k] for k in SCORES}), "figures/roc_test.png")
            results["test"] = test_metrics
        run.log_figure(score_histogram(test_scores[params.score], anomalous, detector.threshold_, params.score),
                       "figures/score_histogram_test.png")
        picks = np.concatenate([np.flatnonzero(~anomalous)[:8], np.flatnonzero(anomalous)[:8]])
        with torch.no_grad():
            model = detector.model_
            rec = (model.generator(model.encoder(torch.from_numpy(splits.test.x[picks]) * 2 - 1)) + 1) / 2
        run.log_figure(reconstruction_figure(splits.test.x[picks], rec.numpy(), anomalous[picks]), "figures/reconstructions.png")

        version = _register(run, detector, params.name, params)
        champion = set_alias_if_better(
            params.name, version, "champion",
            lambda uri: _val_auroc(uri, splits.val.x, ~is_normal["val"]),
        )
        run.set_tags({"registered_model": params.name, "model_version": version, "champion": champion})
        run_id = run.run_id
    return {"run_id": run_id, "version": version, "champion": champion, "metrics": results,
            "threshold": detector.threshold_, "seconds": detector.model_.seconds, "detector": detector}


def _val_auroc(model_uri: str, x_val: np.ndarray, anomalous: np.ndarray) -> float | None:
    """AUROC of a registered detector on this run's validation data (None when it cannot score it)."""
    import mlflow.pyfunc

    if not anomalous.any() or anomalous.all():
        return None
    detector = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().detector
    if tuple(detector.image_shape_) != tuple(x_val.shape[1:]):
        return None
    return anomaly_metrics(anomalous, detector.score_samples(x_val), np.inf)["auroc"]


def _register(run, detector: GANAnomalyDetector, name: str, params: TrainDetectorParams) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detector.pt"
        torch.save(detector.state_dict(), path)
        example = np.zeros((2, *detector.image_shape_), dtype=np.float32)
        output = DetectorModel.frame(detector, example)
        return log_pyfunc_model(run, DetectorModel(), "detector", name, {"detector": str(path)}, example, output,
                                description=f"f-AnoGAN detector, normal classes {params.normal} of {params.data}")


class ScoreParams(BaseModel):
    batch: str = Field(..., description="folder of images, .npz or .csv of image paths")
    out: str = Field(..., description="output folder for scores.csv and rejected.csv")
    model: str = Field(f"models:/{DEFAULT_MODEL}@champion", description="registered model URI")
    batch_id: str | None = Field(None, description="id of the batch (default: a digest of its content)")


def resolve_model(uri: str) -> tuple[str, str, str]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, version, uri pinned to the version)."""
    from mlflow.exceptions import MlflowException

    from pipelines.tracking import client

    if not uri.startswith("models:/"):
        raise GanpipeError(f"model must be models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    body = uri[len("models:/"):]
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            version = client().get_model_version_by_alias(name, alias).version
        else:
            name, version = body.rsplit("/", 1)
            client().get_model_version(name, version)
    except (MlflowException, ValueError):
        raise GanpipeError(f"model {uri} not found in the registry; train one with 'ganpipe train-detector'") from None
    return name, str(version), f"models:/{name}/{version}"


@flow(name="ganpipe-score", log_prints=True)
def score_flow(batch: str, out: str, model: str = f"models:/{DEFAULT_MODEL}@champion", batch_id: str | None = None) -> dict:
    """Read and validate every item -> score the valid ones -> write scores.csv and rejected.csv ->
    log the summary. The same batch id and model version is scored once: a repeat reuses that run."""
    import mlflow.pyfunc

    params = validated(ScoreParams, locals())
    name, version, pinned_uri = resolve_model(params.model)
    detector: GANAnomalyDetector = mlflow.pyfunc.load_model(pinned_uri).unwrap_python_model().detector
    data = read_batch(params.batch, tuple(detector.image_shape_), params.batch_id)
    out_dir = Path(params.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)

    frame = DetectorModel.frame(detector, data.x)
    scores = pd.concat([pd.DataFrame({"item_id": list(data.ids)}), frame], axis=1)
    rejected = pd.DataFrame(list(data.rejected), columns=["item_id", "reason"])
    scores.to_csv(out_dir / "scores.csv", index=False)
    rejected.to_csv(out_dir / "rejected.csv", index=False)
    summary = batch_summary(len(scores), len(rejected), int(frame["flag"].sum()), detector.target_fpr)

    previous = find_runs("score", {"batch_id": data.batch_id, "model_name": name, "model_version": version})
    if previous:
        run_id, repeated = previous[0], True
    else:
        tags = {**prefect_tags(), "batch_id": data.batch_id, "model_name": name, "model_version": version}
        with start_run("score", run_name=f"score-{data.batch_id}", tags=tags) as run:
            run.log_params({"batch": data.source, "model": pinned_uri, "threshold": detector.threshold_,
                            "score": detector.score, "target_fpr": detector.target_fpr})
            run.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
            run.log_artifact(out_dir / "scores.csv", "results")
            run.log_artifact(out_dir / "rejected.csv", "results")
            if len(scores):
                run.log_figure(score_histogram(frame["score"].to_numpy(), None, detector.threshold_, detector.score),
                               "figures/score_histogram.png")
            run_id, repeated = run.run_id, False
        if tags.get("prefect.flow_run_id"):
            create_markdown_artifact(
                markdown=f"# Batch {data.batch_id}\n\n{summary['message']}\n\n" + markdown_table(
                    pd.DataFrame({"metric": list(summary), "value": [str(v) for v in summary.values()]})),
                key=re.sub(r"[^a-z0-9-]", "-", f"score-{data.batch_id}".lower())[:100],
                description=f"scores of batch {data.batch_id} with {name} v{version}",
            )
    return {"run_id": run_id, "repeated": repeated, "batch_id": data.batch_id, "model_version": version,
            "summary": summary, "out": str(out_dir)}
