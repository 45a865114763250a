"""The detector's ``device``: everything it makes is on the device asked for, its state is device-free,
and a device that is not there is one line. The CUDA tests run only where a GPU is."""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from itertools import chain

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from anomaly import SCORES, GANAnomalyDetector
from pipelines.errors import GanpipeError
from pipelines.tracking.safe_state import load_state, save_state
from tests.anomaly.test_detector import blobs

SMALL = {"gan_steps": 3, "encoder_steps": 3, "critic_steps": 2, "width": 4, "latent_dim": 4, "batch_size": 16,
         "calibration_fraction": 0.25, "score": "ensemble"}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@contextmanager
def default_device(device: str):
    """torch's default device set to ``device`` (``meta``: a tensor made without ``device=`` is an empty shell)."""
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(None)


def tensors_of(value) -> list[torch.Tensor]:
    """Every tensor in a nested state (dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_of(v)]
    return [t for v in value for t in tensors_of(v)] if isinstance(value, (list, tuple)) else []


def devices_of(detector: GANAnomalyDetector) -> set[str]:
    return {str(t.device) for net in detector.model_.nets for t in chain(net.parameters(), net.buffers())}


def test_nothing_is_made_on_the_default_device_when_another_is_asked_for(tmp_path):
    x, mixed = blobs(40, 0), np.concatenate([blobs(8, 1), np.random.default_rng(2).random((8, 1, 8, 8), np.float32)])
    reference = GANAnomalyDetector(device="cpu", **SMALL).fit(x)
    with default_device("meta"):
        detector = GANAnomalyDetector(device="cpu", checkpoint_path=tmp_path / "f.pt", **SMALL).fit(x)
        resumed = GANAnomalyDetector(device="cpu", checkpoint_path=tmp_path / "f.pt", **SMALL).fit(x)
        components = detector.score_components(mixed)
        scores, reconstruction = detector.score_samples(mixed), detector.reconstruct(mixed[:4])
        anomaly_maps = detector.anomaly_map(mixed[:4], kind="combined")
        loaded = GANAnomalyDetector.from_state_dict(detector.state_dict(), device="cpu")
        loaded_scores = loaded.score_samples(mixed)
    assert detector.device_ == loaded.device_ == torch.device("cpu")
    assert devices_of(detector) == devices_of(resumed) == devices_of(loaded) == {"cpu"}
    assert {str(t.device) for t in tensors_of(detector.state_dict())} == {"cpu"}
    # the meta default changed nothing: the same numbers as without it
    expected = reference.score_components(mixed)
    for name in (*SCORES, "p_value"):
        np.testing.assert_array_equal(components[name], expected[name])
    np.testing.assert_array_equal(scores, reference.score_samples(mixed))
    np.testing.assert_array_equal(resumed.score_samples(mixed), scores)
    np.testing.assert_array_equal(loaded_scores, scores)
    np.testing.assert_array_equal(reconstruction, reference.reconstruct(mixed[:4]))
    np.testing.assert_array_equal(anomaly_maps, reference.anomaly_map(mixed[:4], kind="combined"))


def test_the_state_is_device_free_and_the_device_is_not_saved():
    detector = GANAnomalyDetector(device="cpu", **SMALL).fit(blobs(40, 0))
    state = detector.state_dict()
    assert {str(t.device) for t in tensors_of(state)} == {"cpu"} and "device" not in state["params"]
    loaded = GANAnomalyDetector.from_state_dict(state)
    assert loaded.device == "auto" and loaded.device_ == torch.device("cpu")  # built on the CPU; scores where auto says
    assert GANAnomalyDetector.from_state_dict(state, device="cpu").get_params()["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_a_device_that_is_not_there_is_one_line():
    with pytest.raises(GanpipeError, match="--device cuda: no CUDA GPU is available") as caught:
        GANAnomalyDetector(device="cuda", **SMALL).fit(blobs(40, 0))
    assert "\n" not in str(caught.value)
    loaded = GANAnomalyDetector.from_state_dict(GANAnomalyDetector(device="cpu", **SMALL).fit(blobs(40, 0)).state_dict())
    with pytest.raises(GanpipeError, match="no CUDA GPU"):  # scoring resolves the device it is told
        loaded.set_params(device="cuda:0").score_samples(blobs(2, 0))


def test_an_unknown_device_is_refused_by_the_parameter_check():
    with pytest.raises(InvalidParameterError, match="'device' parameter"):
        GANAnomalyDetector(device="gpu", **SMALL).fit(blobs(40, 0))
    assert GANAnomalyDetector(device=torch.device("cpu"), **SMALL).fit(blobs(40, 0)).device_ == torch.device("cpu")


@CUDA
def test_trained_on_a_gpu_it_loads_and_scores_on_the_cpu(tmp_path):
    x, mixed = blobs(60, 0), np.concatenate([blobs(8, 1), np.random.default_rng(2).random((8, 1, 8, 8), np.float32)])
    detector = GANAnomalyDetector(device="cuda", **SMALL).fit(x)
    assert detector.device_.type == "cuda" and devices_of(detector) == {str(detector.device_)}
    on_gpu = detector.score_components(mixed)
    state = load_state(save_state(detector.state_dict(), tmp_path))
    assert {str(t.device) for t in tensors_of(detector.state_dict())} == {"cpu"}
    on_cpu = GANAnomalyDetector.from_state_dict(state, device="cpu")
    unpickled = pickle.loads(pickle.dumps(detector))  # a pickle holds CPU tensors too
    assert devices_of(on_cpu) == devices_of(unpickled) == {"cpu"}
    for name in SCORES:
        np.testing.assert_allclose(on_cpu.score_components(mixed)[name], on_gpu[name], rtol=1e-2, atol=1e-2)
    assert devices_of(on_cpu) == {"cpu"}


@CUDA
def test_trained_on_the_cpu_it_scores_on_a_gpu():
    x, mixed = blobs(60, 0), np.concatenate([blobs(8, 1), np.random.default_rng(2).random((8, 1, 8, 8), np.float32)])
    detector = GANAnomalyDetector(device="cpu", **SMALL).fit(x)
    on_cpu = detector.score_components(mixed)
    on_gpu = GANAnomalyDetector.from_state_dict(detector.state_dict(), device="cuda")
    scored = on_gpu.score_components(mixed)
    assert on_gpu.device_.type == "cuda" and devices_of(on_gpu) == {str(on_gpu.device_)}
    for name in SCORES:
        assert isinstance(scored[name], np.ndarray)
        np.testing.assert_allclose(scored[name], on_cpu[name], rtol=1e-2, atol=1e-2)
