from __future__ import annotations

import logging
import re
from dataclasses import fields

import numpy as np
import pytest
import torch
from imblearn.pipeline import Pipeline
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from gan_aug import GANOverSampler
import gan_aug.train as gan_train
from gan_aug.train import GANConfig, class_probabilities, train_conditional_gan
from pipelines.data.sources import load_dataset
from pipelines.tracking.safe_state import load_state, save_state

TINY = {"width": 8, "z_dim": 16, "batch_size": 16, "judge_steps": 10}


@pytest.fixture(scope="module")
def imbalanced_digits():
    ds = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(ds.y == k)[: (6 if k == 3 else 40)] for k in range(4)])
    return ds.x[keep], ds.y[keep]


def test_class_probabilities_interpolate_between_natural_and_balanced():
    y = np.array([0] * 90 + [1] * 10)
    np.testing.assert_allclose(class_probabilities(y, 3, 1.0), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(class_probabilities(y, 3, 0.0), [0.9, 0.1, 0.0])
    assert class_probabilities(y, 3, 0.5)[1] == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(90)))


def test_fit_resample_balances_classes_and_keeps_real_items_first(imbalanced_digits):
    x, y = imbalanced_digits
    sampler = GANOverSampler(steps=5, **TINY, random_state=0)
    x_res, y_res = sampler.fit_resample(x, y)
    assert x_res.shape[1:] == x.shape[1:]
    assert np.bincount(y_res).tolist() == [40, 40, 40, 40]
    np.testing.assert_array_equal(x_res[: len(x)], x)
    synthetic = x_res[len(x):]
    assert synthetic.min() >= 0 and synthetic.max() <= 1
    assert sampler.sample(3, 7).shape == (7, 1, 8, 8)


def test_clone_keeps_every_setting():
    settings = {"sampling_strategy": {3: 30}, "epochs": 1.5, "steps": 7, "image_shape": (1, 8, 8), **TINY,
                "loss": "wgan-gp", "guide_augment": False, "synthetic_share": 0.75, "checkpoint_path": "g.pt",
                "progress": print, "preview": print, "random_state": 3}
    sampler = GANOverSampler(**settings)
    assert clone(sampler).get_params() == sampler.get_params() == {**GANOverSampler().get_params(), **settings}


def test_every_gan_setting_is_a_parameter_with_its_config_default():
    params = GANOverSampler().get_params()
    for setting in fields(GANConfig):
        if setting.name != "seed":  # the sampler's random_state
            assert params[setting.name] == setting.default, setting.name
    assert set(params) - {f.name for f in fields(GANConfig)} == {
        "sampling_strategy", "epochs", "image_shape", "synthetic_share", "checkpoint_path", "progress", "preview",
        "random_state", "device"}
    assert GANOverSampler(epochs=2.0, batch_size=16, random_state=5, loss="wgan-gp").gan_config(40) == \
        GANConfig(steps=5, batch_size=16, seed=5, loss="wgan-gp")


@pytest.mark.parametrize("setting, message", [
    ({"steps": 0}, "'steps' parameter of GANOverSampler must be an int in the range [1, inf)"),
    ({"loss": "lsgan"}, "'loss' parameter of GANOverSampler must be a str among"),
    ({"novelty_quantile": 1.0}, "'novelty_quantile' parameter of GANOverSampler must be a float in the range [0.0, 1.0)"),
    ({"judge_loss": "focal"}, "'judge_loss' parameter of GANOverSampler must be a str among"),
    ({"guide_augment": "yes"}, "'guide_augment' parameter of GANOverSampler must be an instance of 'bool'"),
    ({"random_state": None}, "'random_state' parameter of GANOverSampler must be an int in the range [0, inf)"),
])
def test_bad_settings_are_refused_before_training(imbalanced_digits, monkeypatch, setting, message):
    monkeypatch.setattr(gan_train, "train_judge", lambda *a, **k: pytest.fail("training started"))
    x, y = imbalanced_digits
    sampler = GANOverSampler(**{**TINY, **setting})
    for call in (lambda: sampler.fit(x, y), lambda: sampler.fit_resample(x, y), lambda: sampler.gan_config(len(y))):
        with pytest.raises(InvalidParameterError, match=re.escape(message)):
            call()


def test_fit_then_generate_matches_fit_resample(imbalanced_digits):
    x, y = imbalanced_digits
    fitted = GANOverSampler({3: 40}, steps=4, **TINY, random_state=1).fit(x, y)
    resampled = GANOverSampler({3: 40}, steps=4, **TINY, random_state=1).fit_resample(x, y)[0]
    np.testing.assert_array_equal(fitted.sample(3, 34, seed=2), resampled[len(x):])
    with pytest.raises(ValueError, match="unknown class 9"):
        fitted.generate(np.array([9]))


def test_flattened_input_with_image_shape_inside_an_imblearn_pipeline(imbalanced_digits):
    x, y = imbalanced_digits
    flat = x.reshape(len(x), -1)
    pipe = Pipeline([
        ("gan", GANOverSampler(sampling_strategy={3: 30}, steps=5, image_shape=(1, 8, 8), **TINY)),
        ("clf", LogisticRegression(max_iter=200)),
    ])
    pipe.fit(flat, y)
    assert pipe.predict(flat[:5]).shape == (5,)
    x_res, y_res = pipe.named_steps["gan"].fit_resample(flat, y)
    assert x_res.shape == (len(x) + 24, 64) and (y_res == 3).sum() == 30


def test_flattened_input_without_image_shape_is_refused(imbalanced_digits):
    x, y = imbalanced_digits
    with pytest.raises(ValueError, match="pass image_shape"):
        GANOverSampler(steps=2, **TINY).fit_resample(x.reshape(len(x), -1), y)
    with pytest.raises(ValueError, match="needs 49"):
        GANOverSampler(steps=2, **TINY, image_shape=(1, 7, 7)).fit_resample(x.reshape(len(x), -1), y)


def test_same_seed_gives_the_same_samples_on_cpu(imbalanced_digits):
    x, y = imbalanced_digits
    a = GANOverSampler(steps=6, **TINY, random_state=4).fit_resample(x, y)[0]
    b = GANOverSampler(steps=6, **TINY, random_state=4).fit_resample(x, y)[0]
    c = GANOverSampler(steps=6, **TINY, random_state=5).fit_resample(x, y)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[len(x):], c[len(x):])


def test_interrupted_training_resumes_from_the_last_checkpoint(imbalanced_digits, tmp_path, caplog):
    x, y = imbalanced_digits
    config = GANConfig(steps=12, checkpoint_every=4, seed=2, **TINY)
    reference = train_conditional_gan(x, y, 4, config)

    class Interrupt(Exception):
        pass

    def stop_after_nine(step, steps, metrics):
        if step == 9:
            raise Interrupt

    checkpoint = tmp_path / "gan.pt"
    with pytest.raises(Interrupt):
        train_conditional_gan(x, y, 4, config, checkpoint_path=checkpoint, progress=stop_after_nine, log_every=1)
    assert torch.load(checkpoint, weights_only=True)["step"] == 8  # plain tensors and numbers
    with caplog.at_level(logging.INFO, logger="gan_core.checkpoint"):
        resumed = train_conditional_gan(x, y, 4, config, checkpoint_path=checkpoint)
    assert "resuming from" in caplog.text and "at step 8/12" in caplog.text
    for name, tensor in reference.generator.state_dict().items():
        torch.testing.assert_close(resumed.generator.state_dict()[name], tensor, msg=name)
    assert [h["step"] for h in resumed.history][-1] == 12
    # a run that finds a finished checkpoint trains no step, yet still previews the trained generator
    previews = []
    train_conditional_gan(x, y, 4, config, checkpoint_path=checkpoint,
                          preview=lambda step, images, labels: previews.append(step))
    assert previews == [12]


def test_checkpoint_of_other_settings_is_not_resumed(imbalanced_digits, tmp_path, caplog):
    x, y = imbalanced_digits
    checkpoint = tmp_path / "gan.pt"
    train_conditional_gan(x, y, 4, GANConfig(steps=2, seed=0, **TINY), checkpoint_path=checkpoint)
    with caplog.at_level(logging.WARNING, logger="gan_core.checkpoint"):
        train_conditional_gan(x, y, 4, GANConfig(steps=3, seed=0, **TINY), checkpoint_path=checkpoint)
    assert "ignoring checkpoint" in caplog.text


def test_wgan_gp_option_trains(imbalanced_digits):
    x, y = imbalanced_digits
    gan = train_conditional_gan(x, y, 4, GANConfig(steps=3, loss="wgan-gp", **TINY), log_every=1)
    assert len(gan.history) == 3 and all(np.isfinite(h["d_loss"]) for h in gan.history)


@pytest.mark.parametrize("lecam", [0.0, 0.3])
def test_hinge_loss_trains_the_critic_with_hinge_only(imbalanced_digits, monkeypatch, lecam):
    """The default hinge critic never pays a gradient penalty (that belongs to WGAN-GP), with or
    without LeCam; WGAN-GP does."""
    x, y = imbalanced_digits
    calls = {"gp": 0, "hinge": 0, "lecam": 0}
    for name, module, key in (("gradient_penalty", gan_train, "gp"), ("hinge_discriminator", gan_train.losses, "hinge"),
                              ("lecam", gan_train.losses, "lecam")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _key=key, **k: calls.__setitem__(_key, calls[_key] + 1)
                            or _real(*a, **k))
    train_conditional_gan(x, y, 4, GANConfig(steps=2, lecam_weight=lecam, **TINY), log_every=1)
    assert calls == {"gp": 0, "hinge": 2, "lecam": 2 if lecam else 0}
    train_conditional_gan(x, y, 4, GANConfig(steps=2, loss="wgan-gp", **TINY), log_every=1)
    assert calls["gp"] == 2 and calls["hinge"] == 2


def test_adc_option_trains_the_critic_head_and_steers_the_generator(imbalanced_digits, monkeypatch):
    """``adc_weight`` adds the classifier head's loss to every critic and generator step; without it
    no head exists and neither loss is computed (the default trains as before)."""
    x, y = imbalanced_digits
    calls = {"adc_critic": 0, "adc_generator": 0}
    for name in calls:
        real = getattr(gan_train.losses, name)
        monkeypatch.setattr(gan_train.losses, name, lambda *a, _real=real, _key=name, **k:
                            calls.__setitem__(_key, calls[_key] + 1) or _real(*a, **k))
    critics = []
    networks = gan_train.Networks
    monkeypatch.setattr(gan_train, "Networks", lambda *a, **k: (critics.append(networks(*a, **k)), critics[-1])[1])
    plain = train_conditional_gan(x, y, 4, GANConfig(steps=3, seed=0, **TINY))
    assert calls == {"adc_critic": 0, "adc_generator": 0}
    headed = train_conditional_gan(x, y, 4, GANConfig(steps=3, seed=0, adc_weight=1.0, **TINY))
    assert calls == {"adc_critic": 3, "adc_generator": 3}
    assert critics[0].discriminator.classify is None
    head = critics[1].discriminator.classify
    assert head is not None and head.weight_orig.grad is not None  # it trained with the critic
    labels = np.arange(4).repeat(4)
    assert not np.allclose(plain.sample(labels, seed=1), headed.sample(labels, seed=1))


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="loss must be"):
        GANConfig(loss="lsgan")
    with pytest.raises(ValueError, match="judge_loss must be one of 'weighted', 'balanced_softmax', got 'focal'"):
        GANConfig(judge_loss="focal")
    with pytest.raises(ValueError, match="adc_weight must be >= 0"):
        GANConfig(adc_weight=-1.0)
    with pytest.raises(ValueError, match="critic_contrast must be one of 'off', 'channel', 'class'"):
        GANConfig(critic_contrast="shape")
    with pytest.raises(ValueError, match="class_norms must be None or >= 0, got -1"):
        GANConfig(class_norms=-1)


@pytest.mark.parametrize("loss", ["weighted", "balanced_softmax"])
def test_either_judge_loss_keeps_a_rare_class_as_likely_as_a_common_one_where_the_image_says_nothing(
        loss, monkeypatch):
    # noise images, one in ten labelled 1: plain cross-entropy would learn the 9:1 prior (about 0.9 / 0.1)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1000, 1, 8, 8, generator=generator) * 2 - 1
    y = (torch.arange(1000) % 10 == 0).long()
    weights, cross_entropy = [], torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy",
                        lambda *a, **k: (weights.append(k.get("weight")), cross_entropy(*a, **k))[1])
    judge = gan_train.train_judge(x, y, 2, GANConfig(seed=0, **{**TINY, "judge_steps": 200}, judge_loss=loss))
    with torch.no_grad():
        rare = torch.softmax(judge(torch.rand(500, 1, 8, 8, generator=generator) * 2 - 1), 1)[:, 1].mean()
    assert abs(float(rare) - 0.5) < 0.15
    # (a torch function mode left by another test, e.g. a default device, may route each call through twice)
    assert len(weights) >= 200 and all((w is None) == (loss == "balanced_softmax") for w in weights)


def test_judge_learns_from_the_training_images_only_and_filtering_keeps_its_favourites(imbalanced_digits, monkeypatch):
    x, y = imbalanced_digits
    seen = []
    real_train_judge = gan_train.train_judge
    monkeypatch.setattr(gan_train, "train_judge", lambda *a, **k: (seen.append(a[0].clone()), real_train_judge(*a, **k))[1])
    config = {**TINY, "judge_steps": 60, "filter_candidates": 4}
    gan = train_conditional_gan(x, y, 4, GANConfig(steps=3, seed=0, **config))
    assert len(seen) == 1 and torch.equal(seen[0], torch.from_numpy(x) * 2 - 1)  # exactly the images given to fit
    labels = np.full(32, 3)
    filtered = gan.sample(labels, seed=5)
    judge, gan.judge = gan.judge, None
    unfiltered = gan.sample(labels, seed=5)

    def fit(images):
        with torch.no_grad():
            return torch.log_softmax(judge(torch.from_numpy(images) * 2 - 1), 1)[:, 3].mean().item()

    assert fit(filtered) > fit(unfiltered)


def test_colour_jitter_changes_what_the_critic_sees_and_leaves_the_judge_alone(imbalanced_digits):
    x, y = imbalanced_digits
    x = np.repeat(x, 3, axis=1) * np.array([1.0, 0.6, 0.3], np.float32)[None, :, None, None]  # colour images
    plain, jittered = (train_conditional_gan(x, y, 4, GANConfig(steps=4, seed=0, **TINY, colour_jitter=c))
                       for c in (False, True))
    for name, value in plain.judge.state_dict().items():  # the judge is trained before, and apart from, the critic
        torch.testing.assert_close(jittered.judge.state_dict()[name], value)
    labels = np.arange(4).repeat(4)
    assert not np.allclose(plain.sample(labels, seed=1), jittered.sample(labels, seed=1))


def test_synthetic_share_mixes_random_copies_of_real_items(imbalanced_digits):
    x, y = imbalanced_digits
    x_res, y_res = GANOverSampler({3: 40}, steps=3, **TINY, synthetic_share=0.5, random_state=0).fit_resample(x, y)
    added = x_res[len(x):]
    real_3 = x[y == 3].reshape(6, -1)
    copies = [any(np.array_equal(a.ravel(), r) for r in real_3) for a in added]
    assert len(added) == 34 and sum(copies) == 17  # ceil(34 * 0.5) synthetic, the rest real copies
    with pytest.raises(ValueError, match="synthetic_share"):
        GANOverSampler({3: 40}, steps=3, **TINY, synthetic_share=0.0).fit_resample(x, y)


@pytest.mark.parametrize("settings, judged", [({**TINY, "filter_candidates": 3}, True), ({**TINY, "judge_steps": 0}, False),
                                              ({**TINY, "novelty_quantile": 0.05}, True),
                                              ({**TINY, "class_norms": 1}, True),
                                              ({**TINY, "judge_contrast": True, "filter_candidates": 3}, True),
                                              ({**TINY, "critic_contrast": "class"}, True)])
def test_state_saved_as_plain_data_generates_the_same_images(imbalanced_digits, tmp_path, settings, judged):
    x, y = imbalanced_digits
    fitted = GANOverSampler({13: 40}, steps=3, **settings, random_state=2).fit(x, y + 10)
    again = GANOverSampler.from_state_dict(load_state(save_state(fitted.state_dict(), tmp_path)))
    assert (again.gan_.judge is not None) == judged
    labels = np.array([10, 13, 13, 12])
    np.testing.assert_array_equal(again.generate(labels, seed=7), fitted.generate(labels, seed=7))
    np.testing.assert_array_equal(again.sample(13, 5), fitted.sample(13, 5))
    assert again.get_params() == {**fitted.get_params(), "checkpoint_path": None, "progress": None}
    assert again.classes_.dtype == fitted.classes_.dtype and again.input_shape_ == (1, 8, 8)
    with pytest.raises(ValueError, match="not fitted"):
        GANOverSampler().state_dict()


def test_a_state_saved_with_the_settings_in_one_config_dict_still_loads(imbalanced_digits, tmp_path):
    x, y = imbalanced_digits
    # that format predates class latents, the judge's loss and the label weight: its GANs were trained without them
    fitted = GANOverSampler({3: 40}, steps=3, **TINY, class_latents=False, judge_loss="weighted",
                            autoencoder_label_weight=0.0, random_state=2).fit(x, y)
    state = fitted.state_dict()
    state["params"] = {**{k: state["params"][k] for k in ("sampling_strategy", "epochs", "steps", "image_shape",
                                                          "synthetic_share", "random_state")},
                       "config": {**TINY, "seed": 9}}  # as saved before: the seed was random_state's anyway
    again = GANOverSampler.from_state_dict(load_state(save_state(state, tmp_path)))
    assert again.get_params() == {**fitted.get_params(), "colour": "joint"}  # it predates colour apart too
    np.testing.assert_array_equal(again.sample(3, 5), fitted.sample(3, 5))


def test_a_gan_saved_before_class_latents_the_judge_loss_and_contrast_existed_loads_as_it_was_trained(
        imbalanced_digits, tmp_path):
    x, y = imbalanced_digits
    fitted = GANOverSampler({3: 40}, steps=3, **TINY, class_latents=False, judge_loss="weighted",
                            judge_contrast=False, filter_candidates=3, random_state=2).fit(x, y)
    state = fitted.state_dict()
    for saved in (state["params"], state["gan"]["config"]):  # as saved by earlier versions
        del saved["class_latents"], saved["autoencoder_steps"], saved["judge_loss"], saved["judge_contrast"]
    again = GANOverSampler.from_state_dict(load_state(save_state(state, tmp_path)))
    assert again.class_latents is False and again.gan_.config.class_latents is False
    assert again.judge_loss == again.gan_.config.judge_loss == "weighted"
    assert again.judge_contrast is False and again.gan_.judge.contrast is False
    np.testing.assert_array_equal(again.sample(3, 5), fitted.sample(3, 5))


def test_novelty_filter_keeps_training_images_only_and_sampling_is_reproducible(imbalanced_digits):
    x, y = imbalanced_digits
    gan = train_conditional_gan(x, y, 4, GANConfig(steps=3, seed=0, novelty_quantile=0.05, **TINY))
    for k in range(4):
        np.testing.assert_array_equal(gan.novelty.references[k], np.round(x[y == k] * 255).astype(np.uint8))
    labels = np.array([3, 0, 3, 3, 1])
    first = gan.sample(labels, seed=4)
    np.testing.assert_array_equal(first, gan.sample(labels, seed=4))
    assert set(gan.last_novelty) == {0, 1, 3} and gan.last_novelty[3]["drawn"] >= 3
    for k in (0, 1, 3):
        distance = gan.novelty.nearest(k, first[labels == k])
        filled = gan.last_novelty[k]["filled"]
        assert (distance >= gan.novelty.thresholds[k]).sum() >= (labels == k).sum() - filled


def test_previews_show_fixed_latents_and_leave_training_unchanged(imbalanced_digits):
    x, y = imbalanced_digits
    seen = []
    config = GANConfig(steps=6, seed=3, **TINY)
    with_preview = train_conditional_gan(x, y, 4, config, preview=lambda step, images, labels: seen.append((step, images, labels)),
                                         preview_every=2)
    without = train_conditional_gan(x, y, 4, config)
    assert [s for s, _, _ in seen] == [0, 2, 4, 6]
    for _, images, labels in seen:
        assert images.shape == (4 * gan_train.PREVIEW_PER_CLASS, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
        assert labels.tolist() == sorted(labels.tolist()) and set(labels.tolist()) == {0, 1, 2, 3}
    assert not np.array_equal(seen[0][1], seen[-1][1])  # the generator moved between previews
    labels = torch.from_numpy(seen[-1][2])
    z = torch.randn(len(labels), config.z_dim, generator=torch.Generator().manual_seed(config.seed + 1))
    with torch.no_grad():  # the last preview: the trained (EMA) generator on the fixed latents
        np.testing.assert_allclose(seen[-1][1], ((with_preview.generator(z, labels) + 1) / 2).clamp(0, 1).numpy(), atol=1e-6)
    for a, b in zip(with_preview.generator.state_dict().values(), without.generator.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # previews draw from their own stream, in eval mode
    np.testing.assert_array_equal(with_preview.sample(np.array([0, 3, 3]), seed=1), without.sample(np.array([0, 3, 3]), seed=1))


def test_sampler_previews_carry_the_fit_labels_and_are_not_saved(imbalanced_digits):
    x, y = imbalanced_digits
    labels_seen = []
    sampler = GANOverSampler(steps=2, **TINY, preview=lambda step, images, labels: labels_seen.append(set(labels)))
    sampler.fit(x, np.array(["abcd"[k] for k in y]))
    assert labels_seen and labels_seen[-1] == {"a", "b", "c", "d"}
    assert "preview" not in sampler.state_dict()["params"] and clone(sampler).preview is not None


def test_class_feature_targets_are_the_judge_features_of_each_class(imbalanced_digits):
    x, y = imbalanced_digits
    real = torch.from_numpy(x) * 2 - 1
    config = GANConfig(seed=0, guide_augment=False, **TINY)
    judge = gan_train.train_judge(real, torch.from_numpy(y), 5, config)
    targets = gan_train.class_feature_targets(judge, real, torch.from_numpy(y), 5, config)
    with torch.no_grad():
        features = judge.features(real)
    for k in range(4):
        assert torch.allclose(targets.means[k], features[torch.from_numpy(y == k)].mean(0), atol=1e-5)
    assert torch.all(targets.means[4] == 0)  # a class without images pulls nothing (never drawn)
    assert torch.allclose(targets.scale, features.std(0).clamp(min=1e-3), atol=1e-5)
    assert targets.features is None  # every image's features are kept only for the nearest-image pull
    nearest = gan_train.class_feature_targets(judge, real, torch.from_numpy(y), 5,
                                              GANConfig(seed=0, guide_augment=False, feature_match="nearest", **TINY))
    assert torch.allclose(nearest.features, features, atol=1e-5) and torch.equal(nearest.labels, torch.from_numpy(y))


def test_feature_matching_changes_the_generator_only_when_asked(imbalanced_digits, monkeypatch):
    x, y = imbalanced_digits
    calls = []
    for name in ("class_feature_matching", "class_feature_support"):
        real = getattr(gan_train.losses, name)
        monkeypatch.setattr(gan_train.losses, name, lambda *a, _n=name, _f=real: (calls.append(_n), _f(*a))[1])
    plain = train_conditional_gan(x, y, 4, GANConfig(steps=4, seed=0, **TINY))
    assert not calls
    matched = train_conditional_gan(x, y, 4, GANConfig(steps=4, seed=0, feature_match_weight=1.0, **TINY))
    assert calls == ["class_feature_matching"] * 4
    # same seed, same draws: only the extra term makes the weights differ
    differs = [not torch.equal(a, b) for a, b in zip(plain.generator.state_dict().values(),
                                                     matched.generator.state_dict().values()) if a.is_floating_point()]
    assert any(differs)
    calls.clear()
    train_conditional_gan(x, y, 4, GANConfig(steps=2, seed=0, feature_match_weight=1.0, feature_match="nearest", **TINY))
    assert calls == ["class_feature_support"] * 2
    calls.clear()
    without_guide = train_conditional_gan(x, y, 4, GANConfig(steps=2, seed=0, guide_weight=0.0,
                                                              feature_match_weight=1.0, **TINY))
    assert without_guide.judge is not None and len(calls) == 2  # matching alone still trains and uses the judge


def test_class_latent_prior_shrinks_a_rare_class_towards_the_pooled_spread():
    gen = torch.Generator().manual_seed(0)
    common = torch.randn(400, 3, generator=gen) * torch.tensor([3.0, 1.0, 0.5])
    rare = torch.randn(4, 3, generator=gen) * 0.01 + 10.0
    codes, y = torch.cat([common, rare]), torch.tensor([0] * 400 + [1] * 4)
    means, factors = gan_train.class_latent_prior(codes, y, 3, shrinkage=64)
    torch.testing.assert_close(means[1], rare.mean(0))
    covariance = factors @ factors.transpose(1, 2)
    # the rare class's four nearly equal codes get (mostly) the common class's spread, not their own
    pooled = torch.diag(covariance[0])
    assert torch.all(torch.diag(covariance[1]) > 0.9 * 64 / 68 * pooled)
    assert torch.diag(covariance[0])[0] > 8 and torch.all(means[2] == 0)  # a class without items: mean 0


def test_class_latents_pretrain_an_autoencoder_and_start_every_class_at_its_codes(imbalanced_digits):
    x, y = imbalanced_digits
    real, labels = torch.from_numpy(x) * 2 - 1, torch.from_numpy(y)
    losses = []
    for steps in (2, 150):
        config = GANConfig(seed=0, class_latents=True, autoencoder_steps=steps, steps=150, **TINY)
        generator = gan_train.Generator(5, 1, 8, config.z_dim, config.width, class_latents=True)
        losses.append(gan_train.pretrain_autoencoder(generator, real, labels, 5, config))
    assert losses[1] < 0.5 * losses[0]  # it learns to reconstruct
    # every class shares the autoencoder's row; the class is in the latent means only
    for table in (generator.embed.weight, generator.blocks[0].norm.gain.weight, generator.out_norm.bias.weight):
        assert torch.equal(table, table[:1].expand_as(table))
    assert not torch.allclose(generator.latent_mean[3], generator.latent_mean[0])
    generator.eval()
    with torch.no_grad():  # z = 0 draws the class's mean code
        centre = generator(torch.zeros(4, config.z_dim), torch.arange(4))
        torch.testing.assert_close(centre, generator.decode(generator.latent_mean[:4], torch.arange(4)))


def test_class_latents_train_resume_and_load_with_their_prior(imbalanced_digits, tmp_path):
    x, y = imbalanced_digits
    settings = {**TINY, "class_latents": True, "autoencoder_steps": 5}
    fitted = GANOverSampler({3: 40}, steps=3, **settings, random_state=2).fit(x, y)
    assert not torch.all(fitted.gan_.generator.latent_mean == 0)
    again = GANOverSampler.from_state_dict(load_state(save_state(fitted.state_dict(), tmp_path)))
    np.testing.assert_array_equal(again.generate(np.array([3, 3, 1]), seed=7), fitted.generate(np.array([3, 3, 1]), seed=7))
    # an interrupted run resumes with the checkpointed prior and ends as an uninterrupted one
    config = GANConfig(steps=6, checkpoint_every=3, seed=1, **settings)
    reference = train_conditional_gan(x, y, 4, config)

    def stop_at_five(step, steps, metrics):
        if step == 5:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "gan.pt"
    with pytest.raises(KeyboardInterrupt):
        train_conditional_gan(x, y, 4, config, checkpoint_path=checkpoint, progress=stop_at_five, log_every=1)
    resumed = train_conditional_gan(x, y, 4, config, checkpoint_path=checkpoint)
    for name, tensor in reference.generator.state_dict().items():
        torch.testing.assert_close(resumed.generator.state_dict()[name], tensor, msg=name)


def test_the_autoencoder_phase_reports_progress_before_the_gan_steps(imbalanced_digits):
    x, y = imbalanced_digits
    calls = []
    train_conditional_gan(x, y, 4, GANConfig(steps=30, autoencoder_steps=20, seed=0, **TINY),
                          progress=lambda step, steps, metrics: calls.append((step, steps, dict(metrics))), log_every=15)
    phases = [m.get("phase", "gan") for _, _, m in calls]
    assert phases == ["autoencoder"] * 5 + ["gan"] * 2  # five autoencoder reports, then the GAN's own
    assert [(step, m["autoencoder_step"], m["autoencoder_steps"]) for step, _, m in calls[:5]] == [
        (0, 4, 20), (0, 8, 20), (0, 12, 20), (0, 16, 20), (0, 20, 20)]  # zero GAN steps done yet
    assert [step for step, _, _ in calls[5:]] == [15, 30] and all(m["eta_seconds"] >= 0 for _, _, m in calls)
    assert calls[4][2]["eta_seconds"] == 0 and calls[4][2]["reconstruction_mse"] > 0


def test_a_label_weight_keeps_the_class_in_the_autoencoder_code_when_a_nuisance_dominates_the_pixels(
        imbalanced_digits):
    x, y = imbalanced_digits
    # every image gets a random brightness offset: it varies more than the strokes, as colour does
    offsets = np.random.default_rng(0).uniform(-0.6, 0.6, size=(len(x), 1, 1, 1)).astype(np.float32)
    real, labels = (torch.from_numpy(x) + torch.from_numpy(offsets)).clamp(-1, 1), torch.from_numpy(y)

    def class_separation(weight: float) -> float:
        """Between-class spread of the class latent means over the pooled within-class spread."""
        config = GANConfig(seed=0, class_latents=True, autoencoder_steps=150, steps=150,
                           autoencoder_label_weight=weight, **TINY)
        generator = gan_train.Generator(4, 1, 8, config.z_dim, config.width, class_latents=True)
        mse = gan_train.pretrain_autoencoder(generator, real, labels, 4, config)
        assert mse < 0.2  # still an autoencoder
        within = torch.linalg.matrix_norm(generator.latent_factor, dim=(1, 2)).pow(2).mean()
        return float(generator.latent_mean.var(dim=0).sum() / within)

    assert class_separation(1.0) > 2 * class_separation(0.0)
    with pytest.raises(ValueError, match="autoencoder_label_weight"):
        GANConfig(autoencoder_label_weight=-1.0)


def test_recolour_swaps_and_negates_the_channels_of_the_share_it_picks_and_leaves_grey_alone():
    images = torch.rand(400, 3, 4, 4) * 2 - 1
    same = gan_train.recolour(images, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, images)
    changed = gan_train.recolour(images, 0.5, torch.Generator().manual_seed(0))
    kinds = set()
    for before, after in zip(images, changed):  # each image: some order of its channels, maybe negated
        match = [(tuple(p), s) for p in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
                 for s in (1.0, -1.0) if torch.equal(after, s * before[list(p)])]
        assert len(match) == 1
        kinds.add(match[0])
    assert len(kinds) == 12  # every order and both signs occur
    untouched = sum(torch.equal(a, b) for a, b in zip(images, changed))
    assert 150 < untouched < 260  # half not picked, and 1 in 12 of the picked ones drawn as they were
    config = GANConfig(steps=2, recolour=1.0, **TINY)
    grey = torch.rand(20, 1, 8, 8) * 2 - 1
    batches = gan_train.Minibatches(grey, torch.zeros(20, dtype=torch.long), 1, config, torch.Generator().manual_seed(0))
    x, _ = batches.real_batch(20)
    assert all(any(torch.equal(a, b) for b in grey) for a in x)  # grey items come as they are
    with pytest.raises(ValueError, match="recolour must be in"):
        GANConfig(recolour=1.5)


def test_recolour_and_a_shape_critic_train_on_colour_images():
    x = np.random.default_rng(0).random((60, 3, 8, 8), dtype=np.float32)
    y = np.repeat([0, 1, 2], 20)
    sampler = GANOverSampler(steps=2, recolour=0.5, critic_contrast="class", **TINY, random_state=0).fit(x, y)
    assert sampler.gan_.config.recolour == 0.5 and sampler.generate(np.array([0, 2]), seed=1).shape == (2, 3, 8, 8)


def test_the_label_weight_turns_on_by_itself_only_where_a_nuisance_hides_the_class(imbalanced_digits):
    x, y = imbalanced_digits
    rng = np.random.default_rng(0)
    # every image in its own pair of colours: the stroke in one, the ground in the other
    fg, bg = rng.random((len(x), 3, 1, 1)), rng.random((len(x), 3, 1, 1))
    coloured = (x * fg + (1 - x) * bg).astype(np.float32)
    assert gan_train.class_signal(x, y) > 0.2 and gan_train.class_signal(coloured, y) < 0.02
    assert np.isnan(gan_train.class_signal(x, np.zeros(len(x), dtype=np.int64)))  # one class: nothing to tell
    auto = GANConfig(steps=2, **TINY)
    assert auto.autoencoder_label_weight is None
    assert gan_train.resolve_label_weight(auto, x, y).autoencoder_label_weight == 0.0
    assert gan_train.resolve_label_weight(auto, coloured, y).autoencoder_label_weight == 1.0
    fixed = GANConfig(steps=2, autoencoder_label_weight=0.5, **TINY)
    assert gan_train.resolve_label_weight(fixed, coloured, y) is fixed  # a weight given is kept
    # the fit records the weight it used, and the sampler's parameter stays as given
    # (drawn jointly: by default such colours are learnt apart from the shapes, whose signal is high)
    sampler = GANOverSampler(steps=2, **TINY, autoencoder_steps=2, colour="joint", random_state=0).fit(coloured, y)
    assert sampler.gan_.config.autoencoder_label_weight == 1.0 and sampler.autoencoder_label_weight is None
    apart = GANOverSampler(steps=2, **TINY, autoencoder_steps=2, random_state=0).fit(coloured, y)
    assert apart.gan_.config.colour == "apart" and apart.gan_.config.autoencoder_label_weight == 0.0
