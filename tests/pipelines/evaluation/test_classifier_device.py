"""The downstream classifier's ``device``: the network, its buffers and every batch are on the device
asked for, predictions come back to the host, and a device that is not there is one line."""

from __future__ import annotations

from itertools import chain

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from pipelines.errors import GanpipeError
from pipelines.evaluation.classifier import CNNClassifier, make_classifier
from tests.anomaly.test_devices import default_device


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None][:400], data.target[:400]


def devices_of(model: CNNClassifier) -> set[str]:
    return {str(t.device) for t in chain(model.model_.parameters(), model.model_.buffers())}


def test_nothing_is_made_on_the_default_device_when_another_is_asked_for(digits):
    x, y = digits
    settings = {"epochs": 1, "class_weight": "balanced", "width": 8, "random_state": 3, "device": "cpu"}
    reference = CNNClassifier(**settings).fit(x[:300], y[:300], validation=(x[300:], y[300:]))
    with default_device("meta"):
        model = CNNClassifier(**settings).fit(x[:300], y[:300], validation=(x[300:], y[300:]))
        proba, features = model.predict_proba(x[300:]), model.embed(x[300:])
    assert model.device_ == torch.device("cpu") and devices_of(model) == {"cpu"}
    assert model.model_.dropout.generator.device == torch.device("cpu")
    np.testing.assert_array_equal(proba, reference.predict_proba(x[300:]))  # the meta default changed nothing
    np.testing.assert_array_equal(features, reference.embed(x[300:]))
    assert model.history_[0]["loss"] == reference.history_[0]["loss"]


def test_make_classifier_passes_the_device_to_the_cnn_only():
    assert make_classifier("cnn", device="cuda:1").device == "cuda:1"
    assert not hasattr(make_classifier("logreg", device="cuda:1"), "device")  # logistic regression runs on the CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_a_device_that_is_not_there_is_one_line(digits):
    with pytest.raises(GanpipeError, match="--device cuda: no CUDA GPU is available") as caught:
        CNNClassifier(epochs=1, device="cuda").fit(*digits)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_it_trains_there_and_predicts_on_the_host(digits):
    x, y = digits
    model = CNNClassifier(epochs=2, width=8, random_state=3, device="cuda").fit(x[:300], y[:300])
    assert model.device_.type == "cuda" and devices_of(model) == {str(model.device_)}
    proba = model.predict_proba(x[300:])
    assert isinstance(proba, np.ndarray) and np.allclose(proba.sum(1), 1, atol=1e-5)
    on_cpu = CNNClassifier(epochs=2, width=8, random_state=3, device="cpu").fit(x[:300], y[:300])
    # same seed, same draws (dropout masks, order) on both devices: only floating-point order differs
    assert (proba.argmax(1) == on_cpu.predict(x[300:])).mean() > 0.9
