"""The model registry: ganpipe's fitted estimators as MLflow pyfunc models, registered versions,
aliases, and loading them back by ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.

Nothing is pickled. An estimator is stored as the artifact folder ``estimator`` with
:func:`~pipelines.tracking.safe_state.save_state`: its ``state_dict()`` (weights as plain tensors,
calibration and settings as JSON), the estimator's dotted class name (one of :data:`ESTIMATORS`) and
the output the model gives (:data:`OUTPUTS`, with its settings such as the class names). The pyfunc
model is logged from code (``logged_detector.py`` or ``logged_generator.py``, whose ``predict`` is
typed), so MLflow writes no ``python_model.pkl``.
:func:`load_estimator` reads only that folder and never runs code from the store; this module
names the estimator classes only as strings, so it knows no GAN family.
"""

from __future__ import annotations

import importlib
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipelines.errors import GanpipeError
from pipelines.evaluation.anomaly_report import score_table
from pipelines.tracking.safe_state import load_state, save_state
from pipelines.tracking.runs import TrackedRun, client

# the only classes a stored estimator may name; each has state_dict() and from_state_dict(state)
ESTIMATORS = ("anomaly.detector.GANAnomalyDetector", "gan_aug.sampler.GANOverSampler")
MODEL_CODE = Path(__file__).with_name("logged_model.py")
ARTIFACT = "estimator"


class EstimatorModel:
    """What a registered model's ``predict`` returns for its estimator; ``settings()`` (JSON values)
    are stored beside the estimator and rebuild it as ``type(self)(**settings)``. ``code`` is the
    model-from-code file (beside this module) whose typed ``predict`` serves it."""

    code = "logged_model.py"
    summary = ""  # the registered model's description (what it is, how to call it), set when it has none

    def settings(self) -> dict:
        return {}

    def answer(self, estimator, model_input):
        raise NotImplementedError


class GeneratorModel(EstimatorModel):
    """Input: a DataFrame with ``class_name`` (str) and ``seed`` (int) per row. Output: the images,
    an array ``(N, C, H, W)`` float32 in [0, 1] (the signature is an image tensor), one per input row.
    Wraps a fitted generator with ``generate(labels, seed) -> (M, C, H, W)`` whose labels index
    ``class_names``."""

    code = "logged_generator.py"
    summary = ("Class-conditional GAN generator registered by `ganpipe augment`. Input: a table with `class_name` "
               "and `seed` per row; output: one image per row, `(N, C, H, W)` float32 in [0, 1]. Each version "
               "carries its training data (`data`, `train_digest`) and seed as tags; the alias `current` is the "
               "latest. `ganpipe compare --generator models:/NAME@current` reuses it for the seeds it was trained for.")

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = [str(name) for name in class_names]

    def settings(self) -> dict:
        return {"class_names": self.class_names}

    def answer(self, generator, model_input: pd.DataFrame) -> np.ndarray:
        names = self.class_names
        unknown = sorted(set(model_input["class_name"].astype(str)) - set(names))
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}; known: {names}")
        rows = [generator.generate(np.array([names.index(name)]), seed=int(seed))[0]
                for name, seed in zip(model_input["class_name"].astype(str), model_input["seed"].astype(int))]
        return np.stack(rows).astype(np.float32)


class DetectorModel(EstimatorModel):
    """Input: images ``(N, C, H, W)`` float32 in [0, 1]. Output: one row per image with the score
    used to flag, the component scores computed on the way, the p-value and the flag (1 = anomalous); see
    :func:`~pipelines.evaluation.anomaly_report.score_table`."""

    code = "logged_detector.py"
    summary = ("f-AnoGAN anomaly detector registered by `ganpipe train-detector`. Input: images `(N, C, H, W)` "
               "float32 in [0, 1]; output: one row per image with the flagging score, the other scores, the "
               "p-value and the flag (1 = anomalous). The alias `champion` is the version with the best validation "
               "AUROC on images neither version trained on; `ganpipe score` and `serve` use it by default.")

    def answer(self, detector, model_input: np.ndarray) -> pd.DataFrame:
        return score_table(detector, np.asarray(model_input, dtype=np.float32))


OUTPUTS = {kind.__name__: kind for kind in (GeneratorModel, DetectorModel)}


def save_estimator(estimator: Any, output: EstimatorModel, folder: str | Path) -> Path:
    """Write ``estimator`` (a class of :data:`ESTIMATORS`) and the ``output`` its model gives to ``folder``."""
    name = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if name not in ESTIMATORS:
        raise GanpipeError(f"cannot store a {name}: only {', '.join(ESTIMATORS)} can be registered")
    return save_state({"estimator": name, "output": type(output).__name__, "settings": output.settings(),
                       "state": estimator.state_dict()}, folder)


def read_estimator(folder: str | Path) -> tuple[Any, EstimatorModel]:
    """The estimator and its output written by :func:`save_estimator`. Only classes named in
    :data:`ESTIMATORS` and :data:`OUTPUTS` are built; any other name or a file that is not plain
    data -> GanpipeError."""
    stored = load_state(folder)
    name, output = stored.get("estimator"), stored.get("output")
    if name not in ESTIMATORS:
        raise GanpipeError(f"refusing to load {folder}: estimator class {name!r} is not one of {', '.join(ESTIMATORS)}")
    if output not in OUTPUTS:
        raise GanpipeError(f"refusing to load {folder}: model output {output!r} is not one of {', '.join(OUTPUTS)}")
    module, _, class_name = name.rpartition(".")
    # by name at load time: pipelines may not import the GAN families
    estimator = getattr(importlib.import_module(module), class_name).from_state_dict(stored["state"])
    return estimator, OUTPUTS[output](**stored["settings"])


class _StoredEstimator:
    """Reads the ``estimator`` artifact folder with :func:`read_estimator` when MLflow loads the model."""

    def load_context(self, context) -> None:
        self.estimator, self.output = read_estimator(context.artifacts[ARTIFACT])


class LoggedDetector(_StoredEstimator, mlflow.pyfunc.PythonModel):
    """The pyfunc model of a detector (``logged_detector.py``): images in, a score table out."""

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        return self.output.answer(self.estimator, model_input)


class LoggedGenerator(_StoredEstimator, mlflow.pyfunc.PythonModel):
    """The pyfunc model of a generator (``logged_generator.py``): a request table in, images out."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.output.answer(self.estimator, model_input)


# the code of versions registered before the rename imports these names
LoggedImages, LoggedTable = LoggedDetector, LoggedGenerator


class LoggedEstimator(_StoredEstimator, mlflow.pyfunc.PythonModel):
    """The untyped pyfunc model that versions registered before the typed ones name (``logged_model.py``)."""

    _skip_type_hint_validation = True  # serves both kinds of input; MLflow's type-hint check does not apply

    def predict(self, context, model_input, params=None):
        return self.output.answer(self.estimator, model_input)


def register_estimator(run: TrackedRun, python_model: EstimatorModel, estimator: Any, registered_model_name: str,
                       input_example, description: str = "", tags: dict[str, str] | None = None,
                       name: str = "model",
                       linked: Sequence[tuple[Mapping[str, float], str, str]] = ()) -> str:
    """Log ``estimator`` as the run's model ``name`` (what it is: ``generator``, ``detector``) with the
    output ``python_model`` gives (with a signature from ``input_example``) and register it; returns
    the new version, which carries ``description``, the run's git commit and ``tags`` as version tags.
    Each ``(metrics, dataset name, dataset digest)`` of ``linked`` is logged as the model's metrics on
    that dataset (a dataset the run logged), which is how MLflow's model page names the datasets a
    model was trained and measured on."""
    from mlflow.models import infer_signature

    client()
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_estimator(estimator, python_model, Path(tmp) / ARTIFACT)
        output_example = python_model.answer(estimator, input_example)
        with warnings.catch_warnings():  # integer inputs are intended: class index and seed
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            signature = infer_signature(input_example, output_example)
        with mlflow.start_run(run_id=run.run_id):
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(MODEL_CODE.with_name(python_model.code)),
                artifacts={ARTIFACT: str(folder)},
                signature=signature,
                input_example=input_example,
                registered_model_name=registered_model_name,
                pip_requirements=["ganpipe"],  # the package is installed where models are served
            )
    version = str(info.registered_model_version)
    for metrics, dataset_name, digest in linked:
        for key, value in metrics.items():
            if value is not None and value == value:
                run.client.log_metric(run.run_id, key, float(value), dataset_name=dataset_name, dataset_digest=digest,
                                      model_id=info.model_id)
    registered = run.client.get_registered_model(registered_model_name)
    if python_model.summary and not registered.description:  # a description a user wrote is kept
        run.client.update_registered_model(registered_model_name, description=python_model.summary)
    run.client.set_registered_model_tag(registered_model_name, "ganpipe.kind", name)
    if description:
        run.client.update_model_version(registered_model_name, version, description=description)
    commit = run.client.get_run(run.run_id).data.tags.get("mlflow.source.git.commit")
    for key, value in {**({"git_commit": commit} if commit else {}), **(tags or {})}.items():
        run.client.set_model_version_tag(registered_model_name, version, key, str(value))
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
        raise GanpipeError(f"model {uri} not found in the registry; 'ganpipe train-detector' registers detectors, 'ganpipe augment' generators") from None
    return name, str(version), f"models:/{name}/{version}"


def version_tags(name: str, version: str) -> dict[str, str]:
    """The tags of a registered model version (``train_digest``, ``git_commit``, ...)."""
    return dict(client().get_model_version(name, version).tags)


def load_estimator(uri: str) -> Any:
    """The fitted estimator inside a registered model, read from its ``estimator`` artifact folder
    only: no pickle is loaded and none of the model's code runs."""
    import mlflow.artifacts
    from mlflow.models import Model

    client()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        artifacts = Model.load(local / "MLmodel").flavors["python_function"].get("artifacts", {})
        folder = local / artifacts.get(ARTIFACT, {}).get("path", ARTIFACT)
        if not folder.is_dir():
            raise GanpipeError(f"model {uri} has no '{ARTIFACT}' folder of plain data (a ganpipe before safe loading "
                               "stored it as a pickle, which is not loaded); train and register it again")
        try:
            return read_estimator(folder)[0]
        except GanpipeError as error:  # e.g. a detector saved before a score it needs: say which model
            raise GanpipeError(f"model {uri}: {error}") from None


def set_alias_if_better(name: str, version: str, alias: str, compare) -> bool:
    """Point ``alias`` at ``version`` when there is no holder yet, or when ``compare(new_uri, holder_uri)``
    -> ``(new_score, holder_score, note)`` (higher is better, None = cannot evaluate) rates the new
    version above the current holder; ``compare`` picks the data both are scored on (images neither
    trained on) and says which in ``note``. When either cannot be evaluated the holder stays. Records
    the comparison as the version tag ``<alias>_comparison``; returns whether the alias moved."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        holder = mlflow_client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        holder = None
    if holder is None or str(holder) == str(version):
        mlflow_client.set_registered_model_alias(name, alias, version)
        return True
    new_score, old_score, note = compare(f"models:/{name}/{version}", f"models:/{name}/{holder}")
    mlflow_client.set_model_version_tag(name, version, f"{alias}_comparison",
                                        f"this version {new_score} vs version {holder} {old_score} {note}".strip())
    if new_score is not None and old_score is not None and new_score > old_score:
        mlflow_client.set_registered_model_alias(name, alias, version)
        return True
    return False
