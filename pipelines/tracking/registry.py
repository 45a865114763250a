"""The model registry: ganpipe's fitted estimators as MLflow pyfunc models, registered versions,
aliases, and loading them back by ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.

An estimator is stored whole with ``torch.save`` (its networks, calibration and settings) as the
artifact ``estimator``; the pyfunc wrappers only rely on the methods they call, so this module
knows no GAN family.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipelines.errors import GanpipeError
from pipelines.evaluation.anomaly_report import score_table
from pipelines.tracking.runs import TrackedRun, client


class EstimatorModel(mlflow.pyfunc.PythonModel):
    """A fitted estimator saved as the artifact ``estimator``; subclasses say what ``predict`` returns."""

    def load_context(self, context) -> None:
        import torch

        self.estimator = torch.load(context.artifacts["estimator"], map_location="cpu", weights_only=False)

    def frame(self, estimator, model_input) -> pd.DataFrame:
        raise NotImplementedError

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        return self.frame(self.estimator, model_input)


class GeneratorModel(EstimatorModel):
    """Input: a DataFrame with ``class_name`` (str) and ``seed`` (int) per row. Output: one row per
    input row with one float column per pixel (``C*H*W``, values in [0, 1]). Wraps a fitted
    generator with ``generate(labels, seed) -> (M, C, H, W)`` whose labels index ``class_names``."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)

    def frame(self, generator, model_input: pd.DataFrame) -> pd.DataFrame:
        names = self.class_names
        unknown = sorted(set(model_input["class_name"].astype(str)) - set(names))
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}; known: {names}")
        rows = [generator.generate(np.array([names.index(name)]), seed=int(seed))[0].reshape(-1)
                for name, seed in zip(model_input["class_name"].astype(str), model_input["seed"].astype(int))]
        return pd.DataFrame(np.stack(rows).astype(np.float64), columns=[f"p{i}" for i in range(len(rows[0]))])


class DetectorModel(EstimatorModel):
    """Input: images ``(N, C, H, W)`` float32 in [0, 1]. Output: one row per image with the score
    used to flag, the component scores computed on the way, the p-value and the flag (1 = anomalous); see
    :func:`~pipelines.evaluation.anomaly_report.score_table`."""

    def frame(self, detector, model_input) -> pd.DataFrame:
        return score_table(detector, np.asarray(model_input, dtype=np.float32))


def register_estimator(run: TrackedRun, python_model: EstimatorModel, estimator: Any, registered_model_name: str,
                       input_example, description: str = "") -> str:
    """Log ``estimator`` wrapped in ``python_model`` (with a signature from ``input_example``) into
    ``run`` and register it; returns the new version."""
    import torch
    from mlflow.models import infer_signature

    client()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "estimator.pt"
        torch.save(estimator, path)
        output_example = python_model.frame(estimator, input_example)
        with warnings.catch_warnings():  # integer inputs are intended: class index and seed
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            signature = infer_signature(input_example, output_example)
        with mlflow.start_run(run_id=run.run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                artifacts={"estimator": str(path)},
                signature=signature,
                input_example=input_example,
                registered_model_name=registered_model_name,
                pip_requirements=["ganpipe"],  # the package is installed where models are served
            )
    version = str(info.registered_model_version)
    if description:
        run.client.update_model_version(registered_model_name, version, description=description)
    return version


def resolve_model(uri: str) -> tuple[str, str, str]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, version, uri pinned to the version)."""
    from mlflow.exceptions import MlflowException

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


def load_estimator(uri: str) -> Any:
    """The fitted estimator inside a registered pyfunc model."""
    client()
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().estimator


def set_alias_if_better(name: str, version: str, alias: str, evaluate) -> bool:
    """Point ``alias`` at ``version`` when there is no holder yet, or when ``evaluate(uri)`` (higher
    is better, None = cannot evaluate) rates the new version above the current holder on the same
    data. When either cannot be evaluated the holder stays. Records the comparison as a version
    tag; returns whether the alias moved."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        holder = mlflow_client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        holder = None
    if holder is None or str(holder) == str(version):
        mlflow_client.set_registered_model_alias(name, alias, version)
        return True
    new_score = evaluate(f"models:/{name}/{version}")
    old_score = evaluate(f"models:/{name}/{holder}")
    mlflow_client.set_model_version_tag(name, version, f"{alias}_comparison",
                                        f"this version {new_score} vs version {holder} {old_score}")
    if new_score is not None and old_score is not None and new_score > old_score:
        mlflow_client.set_registered_model_alias(name, alias, version)
        return True
    return False
