from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone

from anomaly import CRITIC_ONLY, DEFAULT_SCORE, SCORES, GANAnomalyDetector
from anomaly.networks import AnoGenerator, Critic, Encoder
from anomaly.scores import KNN, network_input
from anomaly.train import FAnoGANConfig, train_fanogan
from pipelines.tracking.safe_state import load_state, save_state

TINY = {"gan_steps": 40, "encoder_steps": 60, "critic_steps": 2, "width": 8, "latent_dim": 8, "batch_size": 32}


def blobs(n: int, seed: int, size: int = 8) -> np.ndarray:
    """Normal data: one soft bright blob per image at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(2, size - 3, (n, 2))
    images = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 3.0)
    return images[:, None].astype(np.float32)


@torch.inference_mode()
def critic_features(detector: GANAnomalyDetector, x: np.ndarray) -> np.ndarray:
    """``f(x)``: the final critic's features ``(N, F)`` of images ``x: (N, C, H, W)`` in [0, 1]."""
    return detector.model_.critic.body(network_input(x)).numpy()


@pytest.fixture(scope="module")
def fitted():
    return GANAnomalyDetector(score="combined", target_fpr=0.1, random_state=0, **TINY).fit(blobs(300, 0), blobs(200, 1))


@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32), (3, 64), (3, 128), (1, 256)])
def test_networks_shapes(channels, size):
    g, c, e = AnoGenerator(8, channels, size, 4), Critic(channels, size, 4), Encoder(8, channels, size, 4)
    g.eval()
    z = e(torch.rand(2, channels, size, size) * 2 - 1)
    assert z.shape == (2, 8) and z.abs().max() <= 1
    x = g(z)
    assert x.shape == (2, channels, size, size)
    assert c(x).shape == (2,) and c.features(x).shape == (2, c.feature_dim)
    if size >= 64:  # 64 px and above: the widest layer is width * WIDEST (8), pooled to 4x4
        assert c.feature_dim == 4 * 8 * 16


def test_anomalies_score_higher_than_normals(fitted):
    normal = blobs(100, 2)
    noise = np.random.default_rng(3).random((100, 1, 8, 8)).astype(np.float32)
    for name in ("combined", "residual", "critic_feature_distance", "critic_feature_knn", "multi_critic_distance", "ensemble"):
        parts = fitted.score_components(np.concatenate([normal, noise]))
        assert parts[name][100:].mean() > parts[name][:100].mean(), name
    assert fitted.predict(noise).mean() > 0.9
    assert (fitted.decision_function(noise) > fitted.threshold_).mean() > 0.9


def test_decision_function_is_the_raw_score_and_predict_compares_it_with_the_threshold(fitted):
    x = np.concatenate([blobs(20, 8), np.random.default_rng(9).random((20, 1, 8, 8)).astype(np.float32)])
    decision = fitted.decision_function(x)
    np.testing.assert_array_equal(decision, fitted.score_samples(x))
    np.testing.assert_array_equal(fitted.predict(x), (decision > fitted.threshold_).astype(np.int64))
    assert decision[20:].mean() > decision[:20].mean()  # higher = more anomalous, as in PyOD


def test_clone_keeps_every_setting_and_calibrate_keeps_the_hyperparameter(fitted):
    settings = {"score": "critic", "target_fpr": 0.05, "calibration_fraction": 0.3, "epochs": 2.0, "gan_steps": 7,
                "encoder_steps": 9, "critic_steps": 3, "latent_dim": 5, "width": 6, "batch_size": 12, "kappa": 0.5,
                "checkpoint_path": "x.pt", "random_state": 4, "device": "cuda:1"}
    detector = GANAnomalyDetector(**settings)
    assert clone(detector).get_params() == detector.get_params() == {**settings, "progress": None}
    again = fitted
    before = again.threshold_
    again.calibrate(blobs(200, 1), target_fpr=0.2)
    assert again.target_fpr == 0.1 and again.target_fpr_ == 0.2 and again.threshold_ < before
    again.calibrate(blobs(200, 1))
    assert again.target_fpr_ == 0.1 and again.threshold_ == before


def test_reconstruct_keeps_shape_and_range(fitted):
    x = blobs(5, 10)
    rec = fitted.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1


def test_calibrated_false_positive_rate_holds_on_fresh_normal_data(fitted):
    fresh = blobs(1000, 4)
    fpr = fitted.predict(fresh).mean()
    assert 0.05 <= fpr <= 0.16  # target 0.10, 200 calibration images
    assert fitted.threshold_ == pytest.approx(np.quantile(fitted.calibration_scores_["combined"], 0.9, method="higher"))


def test_p_values_are_valid_and_follow_the_score(fitted):
    x = np.concatenate([blobs(50, 5), np.random.default_rng(6).random((50, 1, 8, 8)).astype(np.float32)])
    parts = fitted.score_components(x)
    p = parts["p_value"]
    assert ((p > 0) & (p <= 1)).all()
    order = np.argsort(parts["combined"])
    assert (np.diff(p[order]) <= 1e-12).all()  # higher score, smaller p-value
    assert p[50:].max() == pytest.approx(1 / 201)  # noise beats every calibration score


def test_state_saved_as_plain_data_gives_identical_scores(fitted, tmp_path):
    x = blobs(20, 7)
    again = GANAnomalyDetector.from_state_dict(load_state(save_state(fitted.state_dict(), tmp_path)))
    for key in (*SCORES, "p_value"):
        np.testing.assert_allclose(again.score_components(x)[key], fitted.score_components(x)[key], rtol=1e-6)
    assert again.threshold_ == fitted.threshold_


def test_bad_inputs(fitted):
    with pytest.raises(ValueError, match=r"images must be \(1, 8, 8\), got \(1, 9, 9\)"):
        fitted.score_samples(np.zeros((2, 1, 9, 9), np.float32))
    bad = blobs(2, 0)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.score_samples(bad)
    with pytest.raises(ValueError, match="not fitted"):
        GANAnomalyDetector().score_samples(blobs(2, 0))
    with pytest.raises(ValueError, match="'score' parameter of GANAnomalyDetector must be a str among"):
        GANAnomalyDetector(score="magic").fit(blobs(10, 0))


def test_hyperparameters_are_validated_as_scikit_learn_does_before_training():
    from sklearn.utils.estimator_checks import check_param_validation

    check_param_validation("GANAnomalyDetector", GANAnomalyDetector())
    with pytest.raises(ValueError, match=r"'target_fpr' parameter of GANAnomalyDetector must be a float in the range "
                                         r"\(0.0, 1.0\). Got 1.5 instead"):
        GANAnomalyDetector(target_fpr=1.5).fit(blobs(10, 0))
    with pytest.raises(ValueError, match=r"'gan_steps' parameter of GANAnomalyDetector must be an int in the range \[1, inf\)"):
        GANAnomalyDetector(gan_steps=0).fit(blobs(10, 0))


def test_critic_feature_distance_is_the_mahalanobis_distance_to_the_training_features(fitted):
    train = blobs(300, 0)  # the images the fixture trained on
    features = critic_features(fitted, train).astype(np.float64)
    np.testing.assert_allclose(fitted.feature_mean_, features.mean(0), rtol=1e-4, atol=1e-5)
    x = np.concatenate([blobs(5, 11), np.random.default_rng(12).random((5, 1, 8, 8)).astype(np.float32)])
    centred = critic_features(fitted, x).astype(np.float64) - fitted.feature_mean_
    precision = fitted.feature_whitening_.astype(np.float64) @ fitted.feature_whitening_.T
    expected = np.sqrt(np.einsum("nf,fg,ng->n", centred, precision, centred))
    np.testing.assert_allclose(fitted.score_components(x)["critic_feature_distance"], expected, rtol=1e-3)


def test_critic_feature_knn_is_the_mean_whitened_distance_to_the_nearest_training_images(fitted):
    train = blobs(300, 0)  # the images the fixture trained on
    whitened = lambda x: (critic_features(fitted, x).astype(np.float64) - fitted.feature_mean_) @ \
        fitted.feature_whitening_.astype(np.float64)  # noqa: E731
    np.testing.assert_allclose(fitted.feature_reference_, whitened(train), rtol=1e-3, atol=1e-3)
    x = np.concatenate([blobs(5, 11), np.random.default_rng(12).random((5, 1, 8, 8)).astype(np.float32)])
    distances = np.sqrt(((whitened(x)[:, None] - whitened(train)[None]) ** 2).sum(-1))
    expected = np.sort(distances, axis=1)[:, :KNN].mean(1)
    knn = fitted.score_components(x)["critic_feature_knn"]
    np.testing.assert_allclose(knn, expected, rtol=1e-3)
    assert knn[5:].min() > knn[:5].max()  # noise is farther from the normal images than new normal ones


def test_a_state_saved_before_critic_feature_knn_scores_without_it(fitted):
    old = {k: v for k, v in fitted.state_dict().items() if k != "feature_reference"}
    again = GANAnomalyDetector.from_state_dict(old)
    parts = again.score_components(blobs(4, 3))
    assert "critic_feature_knn" not in parts and "critic_feature_distance" in parts
    with pytest.raises(ValueError, match="train it again"):
        GANAnomalyDetector.from_state_dict({**old, "params": {**old["params"], "score": "critic_feature_knn"}})


def test_nothing_is_fitted_on_calibration_anomalous_or_scored_images(fitted):
    density = fitted.feature_mean_.copy(), fitted.feature_whitening_.copy()
    detector = copy.deepcopy(fitted)
    noise = np.random.default_rng(13).random((50, 1, 8, 8)).astype(np.float32)
    detector.calibrate(np.concatenate([blobs(100, 9), noise]))  # even a contaminated calibration set
    detector.score_components(noise)
    np.testing.assert_array_equal(detector.feature_mean_, density[0])
    np.testing.assert_array_equal(detector.feature_whitening_, density[1])
    np.testing.assert_array_equal(detector.feature_reference_, fitted.feature_reference_)
    for before, after in zip(fitted.layer_means_ + fitted.layer_whitenings_, detector.layer_means_ + detector.layer_whitenings_):
        np.testing.assert_array_equal(before, after)
    # with no calibration set, the held-out share never reaches the feature density
    small = GANAnomalyDetector(calibration_fraction=0.25, **{**TINY, "gan_steps": 2, "encoder_steps": 2})
    images = blobs(40, 0)
    small.fit(images)
    held_out = np.random.default_rng(small.random_state).permutation(40)[:10]
    trained_on = np.delete(images, held_out, axis=0)
    np.testing.assert_allclose(small.feature_mean_, critic_features(small, trained_on).mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("score", SCORES)
def test_fast_path_gives_the_full_path_scores(fitted, score):
    x = np.concatenate([blobs(10, 8), np.random.default_rng(9).random((10, 1, 8, 8)).astype(np.float32)])
    detector = copy.deepcopy(fitted).set_params(score=score).calibrate(blobs(200, 1))
    full = detector.score_components(x)
    fast = detector.score_components(x, every_component=False)
    needed = CRITIC_ONLY if score in CRITIC_ONLY else SCORES
    # the snapshot critics' passes, and the per-location maps, only when their score is the selected one
    expected_keys = [k for k in needed if k not in ("multi_critic_distance", "critic_map") or score == k] + ["p_value"]
    assert list(fast) == expected_keys
    for key in fast:
        np.testing.assert_allclose(fast[key], full[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(detector.score_samples(x), full[score], rtol=1e-5, atol=1e-6)


def test_a_state_saved_before_the_critic_feature_scores_gives_a_clear_error(fitted):
    old = {k: v for k, v in fitted.state_dict().items() if k not in ("feature_mean", "feature_whitening")}
    with pytest.raises(ValueError, match="saved before the critic-feature scores"):
        GANAnomalyDetector.from_state_dict(old)
    unpickled = copy.deepcopy(fitted)  # an estimator pickled whole (the registry) before the change
    del unpickled.feature_mean_, unpickled.feature_whitening_
    with pytest.raises(ValueError, match="train it again"):
        unpickled.score_samples(blobs(2, 0))


def test_fit_holds_out_a_calibration_share_when_none_is_given():
    detector = GANAnomalyDetector(calibration_fraction=0.25, **{**TINY, "gan_steps": 2, "encoder_steps": 2}).fit(blobs(40, 0))
    assert len(detector.calibration_scores_["combined"]) == 10


@pytest.mark.parametrize("stop_at", [3, 10])  # in stage 1 (between critic snapshots), in stage 2
def test_interrupted_training_resumes_to_the_same_networks(tmp_path, stop_at):
    config = FAnoGANConfig(gan_steps=6, encoder_steps=6, critic_steps=1, width=4, latent_dim=4, batch_size=8,
                           checkpoint_every=2, seed=1)
    x = blobs(40, 0)
    reference = train_fanogan(x, config)

    class Interrupt(Exception):
        pass

    def stop(stage, step, total, record):
        if step == stop_at:
            raise Interrupt

    path = tmp_path / "f.pt"
    with pytest.raises(Interrupt):
        train_fanogan(x, config, checkpoint_path=path, progress=stop, log_every=1)
    resumed = train_fanogan(x, config, checkpoint_path=path)
    for name, tensor in reference.encoder.state_dict().items():
        torch.testing.assert_close(resumed.encoder.state_dict()[name], tensor)
    assert len(resumed.critics) == len(reference.critics) == config.snapshots
    for kept, again in zip(reference.snapshots, resumed.snapshots):
        for name, tensor in kept.state_dict().items():
            torch.testing.assert_close(again.state_dict()[name], tensor)


def test_snapshots_are_the_critic_at_evenly_spaced_steps():
    from anomaly.train import snapshot_steps

    assert snapshot_steps(FAnoGANConfig(gan_steps=500, snapshots=5)) == [100, 200, 300, 400]
    assert snapshot_steps(FAnoGANConfig(gan_steps=500, snapshots=1)) == []
    config = FAnoGANConfig(gan_steps=4, encoder_steps=1, critic_steps=1, width=4, latent_dim=4, batch_size=8, snapshots=2)
    model = train_fanogan(blobs(20, 0), config)
    assert len(model.critics) == 2
    first, final = (c.state_dict() for c in model.critics)
    assert any(not torch.equal(first[k], final[k]) for k in first)  # the critic moved on after the copy


def test_multi_critic_distance_is_the_mean_standardised_mahalanobis_distance_over_critics_and_depths(fitted):
    train, calibration = blobs(300, 0), blobs(200, 1)  # what the fixture trained and calibrated on
    x = np.concatenate([blobs(5, 11), np.random.default_rng(12).random((5, 1, 8, 8)).astype(np.float32)])

    def distances(images):
        out = []
        with torch.inference_mode():
            for critic in fitted.model_.critics:
                for depth, view in enumerate(critic.layer_features(torch.from_numpy(images) * 2 - 1)):
                    view = view.numpy().astype(np.float64)
                    fit_on = critic.layer_features(torch.from_numpy(train) * 2 - 1)[depth].numpy().astype(np.float64)
                    from sklearn.covariance import LedoitWolf

                    density = LedoitWolf().fit(fit_on)  # on the training images only
                    centred = view - density.location_
                    out.append(np.sqrt(np.einsum("nf,fg,ng->n", centred, density.precision_, centred)))
        return np.stack(out, axis=1)

    assert distances(x).shape[1] == 2 * FAnoGANConfig.snapshots
    reference = distances(calibration)
    expected = ((distances(x) - reference.mean(0)) / reference.std(0)).mean(1)
    score = fitted.score_components(x)["multi_critic_distance"]
    np.testing.assert_allclose(score, expected, rtol=2e-3, atol=2e-3)
    assert score[5:].min() > score[:5].max()  # noise is farther from the normal images than new normal ones


def test_a_state_saved_before_the_snapshot_ensemble_scores_without_it(fitted):
    old = {k: v for k, v in fitted.state_dict().items() if not k.startswith("layer_")}
    old["model"] = {k: v for k, v in old["model"].items() if k != "critic_snapshots"}
    again = GANAnomalyDetector.from_state_dict(old)
    parts = again.score_components(blobs(4, 3))
    assert "multi_critic_distance" not in parts and "critic_feature_distance" in parts
    with pytest.raises(ValueError, match="train it again"):
        GANAnomalyDetector.from_state_dict({**old, "params": {**old["params"], "score": "multi_critic_distance"}})


def test_held_out_fpr_scores_calibration_images_against_a_threshold_they_did_not_set():
    detector = GANAnomalyDetector(random_state=0)
    detector.target_fpr_ = 0.05
    detector.calibration_scores_ = {DEFAULT_SCORE: np.random.default_rng(0).normal(size=4000)}
    assert 0.04 <= detector.held_out_fpr() <= 0.06
    detector.calibration_scores_ = {DEFAULT_SCORE: np.full(40, 2.0)}  # ties: nothing strictly above
    assert detector.held_out_fpr() == 0.0


def test_training_records_plain_numbers_at_the_log_steps_only():
    # the updates hand back tensors (no wait for a GPU each step); what is recorded are Python floats
    config = FAnoGANConfig(gan_steps=4, encoder_steps=3, critic_steps=2, width=4, latent_dim=4, batch_size=8, seed=0)
    seen = []
    model = train_fanogan(blobs(20, 0), config, progress=lambda stage, step, total, record: seen.append(step),
                          log_every=2)
    assert seen == [2, 4, 6, 7] and [r["step"] for r in model.history] == seen
    gan, encoder = model.history[1], model.history[-1]
    assert set(gan) == {"stage", "step", "critic_loss", "gradient_penalty", "generator_loss", "seconds"}
    assert set(encoder) == {"stage", "step", "encoder_loss", "image_residual", "feature_residual", "seconds"}
    assert all(type(value) is float for record in model.history for key, value in record.items()
               if key not in ("stage", "step"))
