from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from anomaly import CRITIC_ONLY, GANAnomalyDetector
from anomaly.names import SCORES
from anomaly.scores import TABLE, Gaussian, Score, _check_table
from pipelines.tracking.safe_state import load_state, save_state
from tests.anomaly.test_detector import blobs

SMALL = {"gan_steps": 4, "encoder_steps": 4, "critic_steps": 1, "width": 4, "latent_dim": 4, "batch_size": 16}

# a toy score, as a new score is added: one entry (here registered from the test, nothing else edited).
# |mean pixel - mean training pixel| in units of its spread on the calibration images
TOY = Score(
    measure=lambda batch: (batch.x.flatten(1).mean(1) - batch.fitted["toy_brightness"]).abs(),
    fit=lambda images, fitted: {"toy_brightness": float(images.X.mean() * 2 - 1)},
    fit_state={"toy_brightness": float},
    calibrate=lambda measured, scores: {"toy_spread": float(measured.std() + 1e-12)},
    combine=lambda measured, scores, fitted: measured / fitted["toy_spread"],
    calibration_state={"toy_spread": float},
)


def toy_score(x: np.ndarray, brightness: float, spread: float) -> np.ndarray:
    return np.abs((x * 2 - 1).reshape(len(x), -1).mean(1) - brightness) / spread


def test_a_score_is_one_entry_of_the_table(monkeypatch, tmp_path):
    monkeypatch.setitem(TABLE, "toy", TOY)
    train, calibration, x = blobs(40, 0), blobs(30, 1), np.concatenate([blobs(5, 2), np.ones((5, 1, 8, 8), np.float32)])
    detector = GANAnomalyDetector(score="toy", **SMALL).fit(train, calibration)
    # fitted on the normal training images, calibrated on the held-out ones
    assert detector.toy_brightness_ == pytest.approx(float((train * 2 - 1).mean()))
    raw = np.abs((calibration * 2 - 1).reshape(30, -1).mean(1) - detector.toy_brightness_)
    assert detector.toy_spread_ == pytest.approx(float(raw.std()), rel=1e-3)  # float32 sums
    expected = toy_score(x, detector.toy_brightness_, detector.toy_spread_)
    np.testing.assert_allclose(detector.score_samples(x), expected, rtol=1e-3)
    assert detector.threshold_ == np.quantile(detector.calibration_scores_["toy"], 1 - detector.target_fpr, method="higher")
    # needs no reconstruction: computed beside the critic-only scores, from the critic's pass alone
    assert set(detector.set_params(score="critic").score_components(x, every_component=False)) == {
        *CRITIC_ONLY, "toy", "p_value"} - {"multi_critic_distance", "critic_map"}
    detector.set_params(score="toy")
    # saved and loaded through state_dict as plain data
    state = detector.state_dict()
    assert {"toy_brightness", "toy_spread"} <= set(state)
    again = GANAnomalyDetector.from_state_dict(load_state(save_state(state, tmp_path)))
    np.testing.assert_array_equal(again.score_samples(x), detector.score_samples(x))
    # a detector saved before the score existed scores without it, and cannot select it
    old = {k: v for k, v in state.items() if not k.startswith("toy_")}
    parts = GANAnomalyDetector.from_state_dict({**old, "params": {**old["params"], "score": "critic"}}).score_components(x)
    assert "toy" not in parts and "critic" in parts
    with pytest.raises(ValueError, match="train it again"):
        GANAnomalyDetector.from_state_dict(old)


def test_the_torch_free_names_are_read_from_the_table_source(tmp_path):
    from anomaly.names import _table_keys

    source = tmp_path / "scores.py"
    source.write_text("import torch\nTABLE: dict = {\n    'a': Score(),\n    'toy': Score(needs=X),\n}\n")
    assert _table_keys(source) == ("a", "toy")
    source.write_text("TABLE = dict(a=1)\n")
    with pytest.raises(ImportError, match="no dict literal"):
        _table_keys(source)


def test_the_table_and_the_torch_free_names_agree(monkeypatch):
    assert tuple(TABLE) == SCORES
    assert CRITIC_ONLY == ("critic", "critic_feature_distance", "critic_feature_knn", "multi_critic_distance",
                           "critic_map")
    _check_table()
    monkeypatch.setitem(TABLE, "toy", TOY)
    with pytest.raises(ImportError, match="must list the scores"):
        _check_table()


def test_an_input_must_be_a_score_whose_passes_it_needs_too(monkeypatch):
    monkeypatch.setattr("anomaly.scores.SCORES", (*SCORES, "toy"))
    monkeypatch.setitem(TABLE, "toy", Score(inputs=("residual",), combine=lambda measured, scores, fitted: scores["residual"]))
    with pytest.raises(ImportError, match="inputs"):
        _check_table()


def test_gaussian_distance_is_the_mahalanobis_distance_of_the_ledoit_wolf_fit():
    rng = np.random.default_rng(0)
    features = (rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6))).astype(np.float32)
    gaussian = Gaussian.fit(features)
    density = LedoitWolf().fit(features.astype(np.float64))
    x = rng.normal(size=(7, 6)).astype(np.float32)
    centred = x - density.location_
    expected = np.sqrt(np.einsum("nf,fg,ng->n", centred, density.precision_, centred))
    np.testing.assert_allclose(gaussian.distance(torch.from_numpy(x)).numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(gaussian.whiten(x), gaussian.whiten(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
