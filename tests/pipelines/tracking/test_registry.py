"""The registry stores estimators as plain data and refuses anything that could run code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from anomaly import GANAnomalyDetector
from gan_aug import GANOverSampler
from pipelines.data.sources import load_dataset
from pipelines.errors import GanpipeError
from pipelines.evaluation.anomaly_report import score_table
from pipelines.tracking.safe_state import STATE_FILE, TENSORS_FILE
from pipelines.tracking.registry import DetectorModel, GeneratorModel, load_estimator, register_estimator
from pipelines.tracking.runs import project_home, start_run
from tests.conftest import write_code_pickle

IMAGES = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
CLASS_NAMES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def detector():
    return GANAnomalyDetector(gan_steps=3, encoder_steps=3, critic_steps=1, width=4, latent_dim=4, batch_size=16).fit(IMAGES)


@pytest.fixture(scope="module")
def sampler():
    ds = load_dataset("digits")
    keep = np.flatnonzero(ds.y < 3)[:60]
    settings = {"width": 8, "z_dim": 16, "batch_size": 16, "judge_steps": 5, "filter_candidates": 2}
    return GANOverSampler(steps=2, **settings, random_state=1).fit(ds.x[keep], ds.y[keep])


def register_detector(detector) -> str:
    with start_run("detector", run_name="t") as run:
        version = register_estimator(run, DetectorModel(), detector, "det", np.zeros((2, 1, 8, 8), np.float32))
    return f"models:/det/{version}"


def stored_model():
    """The logged model's folder in the test's own store (one model per test)."""
    (mlmodel,) = project_home().rglob("MLmodel")
    return mlmodel.parent


def test_detector_round_trips_through_the_registry_with_identical_scores(mlflow_store, detector):
    import mlflow.pyfunc

    uri = register_detector(detector)
    loaded = load_estimator(uri)
    assert type(loaded) is GANAnomalyDetector and loaded is not detector
    np.testing.assert_array_equal(loaded.score_samples(IMAGES), detector.score_samples(IMAGES))
    assert loaded.threshold_ == detector.threshold_ and loaded.get_params() == {**detector.get_params(), "progress": None}
    served = mlflow.pyfunc.load_model(uri)
    pd.testing.assert_frame_equal(served.predict(IMAGES[:5]), score_table(detector, IMAGES[:5]))


def test_over_sampler_round_trips_with_identical_images_for_a_seed(mlflow_store, sampler):
    import mlflow.pyfunc

    with start_run("augment", run_name="t") as run:
        version = register_estimator(run, GeneratorModel(CLASS_NAMES), sampler, "gen",
                                     pd.DataFrame({"class_name": ["zero"], "seed": [0]}))
    loaded = load_estimator(f"models:/gen/{version}")
    labels = np.array([0, 2, 2, 1])
    np.testing.assert_array_equal(loaded.generate(labels, seed=5), sampler.generate(labels, seed=5))
    assert loaded.gan_.judge is not None
    request = pd.DataFrame({"class_name": ["two", "zero"], "seed": [3, 4]})
    served = mlflow.pyfunc.load_model(f"models:/gen/{version}").predict(request)
    assert served.shape == (2, *sampler.gan_.image_shape) and served.dtype == np.float32  # an image tensor
    np.testing.assert_array_equal(served, GeneratorModel(CLASS_NAMES).answer(sampler, request))
    stored = json.loads((stored_model() / "artifacts" / "estimator" / STATE_FILE).read_text())["state"]
    assert stored["output"] == "GeneratorModel" and stored["settings"] == {"class_names": CLASS_NAMES}


def test_logged_model_is_code_and_plain_data_without_pickles(mlflow_store, detector):
    from mlflow.models import Model

    register_detector(detector)
    folder = stored_model()
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert not any(name.endswith((".pkl", ".pickle")) for name in files), files
    assert {"logged_detector.py", "artifacts/estimator/state.json", "artifacts/estimator/tensors.pt"} <= files
    flavor = Model.load(folder / "MLmodel").flavors["python_function"]
    assert "python_model" not in flavor and flavor["model_code_path"].endswith("logged_detector.py")
    tensors = torch.load(folder / "artifacts" / "estimator" / TENSORS_FILE, weights_only=True)
    assert tensors and all(isinstance(t, torch.Tensor) for t in tensors.values())


@pytest.mark.parametrize("torch_format", [True, False], ids=["torch-zip", "bare-pickle"])
def test_tampered_estimator_artifact_is_refused_and_runs_no_code(mlflow_store, detector, tmp_path, torch_format):
    import mlflow.pyfunc

    uri = register_detector(detector)
    marker = tmp_path / "marker"
    write_code_pickle(stored_model() / "artifacts" / "estimator" / TENSORS_FILE, marker, torch_format)
    with pytest.raises(GanpipeError, match=r"tensors\.pt: not plain tensors \(possible code in a pickle\)"):
        load_estimator(uri)
    with pytest.raises(GanpipeError, match="possible code in a pickle"):
        mlflow.pyfunc.load_model(uri)
    assert not marker.exists()


@pytest.mark.parametrize("field, name, message", [
    ("estimator", "os.system", "estimator class 'os.system' is not one of"),
    ("estimator", "sklearn.linear_model.LogisticRegression", "is not one of anomaly.detector.GANAnomalyDetector"),
    ("output", "os.system", "model output 'os.system' is not one of"),
])
def test_a_class_name_outside_the_allowlist_is_refused(mlflow_store, detector, field, name, message):
    import mlflow.pyfunc

    uri = register_detector(detector)
    path = stored_model() / "artifacts" / "estimator" / STATE_FILE
    document = json.loads(path.read_text())
    document["state"][field] = name
    path.write_text(json.dumps(document))
    with pytest.raises(GanpipeError, match=message):
        load_estimator(uri)
    with pytest.raises(GanpipeError, match=message):
        mlflow.pyfunc.load_model(uri)


def test_a_model_whose_estimator_is_a_pickle_is_refused(mlflow_store, detector, tmp_path):
    uri = register_detector(detector)
    folder = stored_model() / "artifacts" / "estimator"
    shutil.rmtree(folder)
    marker = tmp_path / "marker"
    write_code_pickle(folder, marker, torch_format=True)  # as a ganpipe before safe loading stored it
    with pytest.raises(GanpipeError, match=r"stored it as a pickle, which is not loaded\); train and register it again"):
        load_estimator(uri)
    assert not marker.exists()


def test_only_ganpipe_estimators_are_registered(mlflow_store):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(GanpipeError, match="cannot store a sklearn.linear_model._logistic.LogisticRegression"):
        with start_run("detector", run_name="t") as run:
            register_estimator(run, DetectorModel(), LogisticRegression(), "lr", np.zeros((2, 1, 8, 8), np.float32))


def test_importing_the_model_code_prints_no_mlflow_type_hint_warning():
    """`predict` is typed (images for detectors, a request table for generators): MLflow has nothing
    to warn about when the registry or a model's code is imported."""
    import subprocess
    import sys

    code = "import pipelines.tracking.logged_detector, pipelines.tracking.logged_generator, pipelines.tracking.logged_model"
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "type hint" not in proc.stderr.lower(), proc.stderr
