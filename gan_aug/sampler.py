"""``GANOverSampler``: the conditional GAN as an imbalanced-learn over-sampler.

It drops into ``imblearn.pipeline.Pipeline`` beside ``SMOTE``::

    Pipeline([("gan", GANOverSampler(image_shape=(1, 28, 28), random_state=0)),
              ("clf", LogisticRegression())])

``X`` is either images ``(N, C, H, W)`` in [0, 1] or the same images flattened to ``(N, C*H*W)``
with ``image_shape=(C, H, W)``; the output has the layout of the input.

``device`` ("auto", "cpu", "cuda", "cuda:N", "mps"; :mod:`pipelines.devices`) is resolved once at
the start of ``fit`` (``device_``); the GAN, its judge and sampling run there, what comes back is
numpy on the host, and :meth:`GANOverSampler.state_dict` is device-free.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import fields, replace
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from imblearn.over_sampling.base import BaseOverSampler
from sklearn.utils._param_validation import Interval, StrOptions

from gan_aug.colour import COLOUR_MODELS, colourise, decide, split_colour
from gan_aug.config import CRITIC_CONTRASTS, JUDGE_LOSSES, GANConfig
from gan_aug.train import CPU, Preview, Progress, TrainedGAN, train_conditional_gan
from gan_core.config import FULL_BATCH_SIDE, batch_for_side, steps_for_epochs
from pipelines.devices import device_constraint, resolve_device

log = logging.getLogger(__name__)

# the GANConfig fields that are parameters of the sampler (the seed is its random_state)
GAN_SETTINGS = tuple(f.name for f in fields(GANConfig) if f.name != "seed")


def _integers_from(low: int) -> list:
    return [Interval(Integral, low, None, closed="left")]


def _fraction(closed: str = "both") -> list:
    return [Interval(Real, 0, 1, closed=closed)]


_POSITIVE = [Interval(Real, 0, None, closed="neither")]
_NON_NEGATIVE = [Interval(Real, 0, None, closed="left")]


class GANOverSampler(BaseOverSampler):
    """Over-sample rare classes with images from a class-conditional GAN trained on all classes.

    Parameters
    ----------
    sampling_strategy : as in imbalanced-learn ("auto", "minority", "not majority", a float or a
        dict ``{class: target_count}``).
    epochs : passes over the training images; ``None`` trains for ``steps`` generator steps.
    steps : generator steps when ``epochs`` is None.
    image_shape : ``(C, H, W)`` when ``X`` is flattened; inferred from 4-D ``X`` otherwise.
    synthetic_share : share of the added items of each class that are synthetic, in (0, 1]; the rest
        are copies of the class's real items drawn at random (as random over-sampling does).
    batch_size ... checkpoint_every : the GAN's settings, each a field of
        :class:`~gan_aug.config.GANConfig` (and :class:`~gan_core.config.GANTrainingConfig`) with its
        default and meaning there (e.g. ``loss="wgan-gp"``, ``judge_steps=0``); ``batch_size`` is the
        batch up to 32 px, scaled down above (see :meth:`gan_config`).
    checkpoint_path : where to checkpoint; an interrupted fit resumes from it.
    progress : called as ``progress(step, steps, metrics)`` while the GAN trains.
    preview : called as ``preview(step, images, labels)`` with images of fixed latents while the GAN
        trains (labels as in ``fit``); see :func:`~gan_aug.train.train_conditional_gan`.
    random_state : seed for training and sampling (the GAN's ``seed``).
    device : where the GAN trains and samples: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda",
        "cuda:N" or "mps". A seed gives the same random draws on every device; on CUDA training runs
        under bf16 autocast. An asked-for device that is not there raises one line at ``fit``.

    Attributes
    ----------
    gan_ : the trained :class:`~gan_aug.train.TrainedGAN`; ``classes_``: the labels seen in ``fit``;
    ``input_shape_``: ``(C, H, W)`` of 4-D ``X`` (None when ``X`` was flattened); ``device_``: the
    ``torch.device`` it trained and samples on; ``palettes_``: with colour learnt apart from shape
    (``colour``; :mod:`gan_aug.colour`), the training images' palettes that samples are coloured
    with (None otherwise), and ``colour_evidence_`` the numbers that decided it. :meth:`state_dict` gives what sampling needs as plain
    data (CPU tensors, no device); :meth:`from_state_dict` rebuilds a sampler from it on any host.
    """

    _sampling_type = "over-sampling"
    # checked by imbalanced-learn on fit and fit_resample (and by gan_config), before any training
    _parameter_constraints: dict = {
        **BaseOverSampler._parameter_constraints,
        "random_state": _integers_from(0),
        "epochs": [*_POSITIVE, None],
        "steps": _integers_from(1),
        "image_shape": [tuple, list, None],
        "synthetic_share": _fraction(closed="right"),
        "batch_size": _integers_from(2),
        "width": _integers_from(1),
        "z_dim": _integers_from(1),
        "lr_generator": _POSITIVE,
        "lr_discriminator": _POSITIVE,
        "loss": [StrOptions({"hinge", "wgan-gp"})],
        "gp_weight": _NON_NEGATIVE,
        "critic_steps": _integers_from(1),
        "ema_decay": _fraction(),
        "class_balance": _fraction(),
        "mode_seeking_weight": _NON_NEGATIVE,
        "translation": _fraction(),
        "cutout": _fraction(),
        "colour_jitter": ["boolean"],
        "class_latents": ["boolean"],
        "autoencoder_steps": _integers_from(1),
        "autoencoder_label_weight": [*_NON_NEGATIVE, None],
        "lecam_weight": _NON_NEGATIVE,
        "adc_weight": _NON_NEGATIVE,
        "class_norms": [*_integers_from(0), None],
        "memorisation_rejection": _fraction(),
        "judge_steps": _integers_from(0),
        "judge_loss": [StrOptions(set(JUDGE_LOSSES))],
        "judge_contrast": ["boolean"],
        "critic_contrast": [StrOptions(set(CRITIC_CONTRASTS))],
        "recolour": _fraction(),
        "colour": [StrOptions(set(COLOUR_MODELS))],
        "guide_weight": _NON_NEGATIVE,
        "guide_confidence": _fraction(closed="left"),
        "guide_augment": ["boolean"],
        "feature_match_weight": _NON_NEGATIVE,
        "feature_match": [StrOptions({"mean", "nearest"})],
        "filter_candidates": _integers_from(1),
        "novelty_quantile": _fraction(closed="left"),
        "novelty_draws": _integers_from(1),
        "checkpoint_every": _integers_from(1),
        "checkpoint_path": [str, os.PathLike, None],
        "progress": [callable, None],
        "preview": [callable, None],
        "device": [device_constraint()],
    }

    def __init__(
        self,
        sampling_strategy="auto",
        *,
        epochs: float | None = None,
        steps: int = GANConfig.steps,
        image_shape: tuple[int, int, int] | None = None,
        synthetic_share: float = 1.0,
        batch_size: int = GANConfig.batch_size,
        width: int = GANConfig.width,
        z_dim: int = GANConfig.z_dim,
        lr_generator: float = GANConfig.lr_generator,
        lr_discriminator: float = GANConfig.lr_discriminator,
        loss: str = GANConfig.loss,
        gp_weight: float = GANConfig.gp_weight,
        critic_steps: int = GANConfig.critic_steps,
        ema_decay: float = GANConfig.ema_decay,
        class_balance: float = GANConfig.class_balance,
        mode_seeking_weight: float = GANConfig.mode_seeking_weight,
        translation: float = GANConfig.translation,
        cutout: float = GANConfig.cutout,
        colour_jitter: bool = GANConfig.colour_jitter,
        class_latents: bool = GANConfig.class_latents,
        autoencoder_steps: int = GANConfig.autoencoder_steps,
        autoencoder_label_weight: float | None = GANConfig.autoencoder_label_weight,
        lecam_weight: float = GANConfig.lecam_weight,
        adc_weight: float = GANConfig.adc_weight,
        class_norms: int | None = GANConfig.class_norms,
        memorisation_rejection: float = GANConfig.memorisation_rejection,
        judge_steps: int = GANConfig.judge_steps,
        judge_loss: str = GANConfig.judge_loss,
        judge_contrast: bool = GANConfig.judge_contrast,
        critic_contrast: str = GANConfig.critic_contrast,
        recolour: float = GANConfig.recolour,
        colour: str = GANConfig.colour,
        guide_weight: float = GANConfig.guide_weight,
        guide_confidence: float = GANConfig.guide_confidence,
        guide_augment: bool = GANConfig.guide_augment,
        feature_match_weight: float = GANConfig.feature_match_weight,
        feature_match: str = GANConfig.feature_match,
        filter_candidates: int = GANConfig.filter_candidates,
        novelty_quantile: float = GANConfig.novelty_quantile,
        novelty_draws: int = GANConfig.novelty_draws,
        checkpoint_every: int = GANConfig.checkpoint_every,
        checkpoint_path: str | Path | None = None,
        progress: Progress | None = None,
        preview: Preview | None = None,
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(sampling_strategy=sampling_strategy)
        self.epochs = epochs
        self.steps = steps
        self.image_shape = image_shape
        self.synthetic_share = synthetic_share
        self.batch_size = batch_size
        self.width = width
        self.z_dim = z_dim
        self.lr_generator = lr_generator
        self.lr_discriminator = lr_discriminator
        self.loss = loss
        self.gp_weight = gp_weight
        self.critic_steps = critic_steps
        self.ema_decay = ema_decay
        self.class_balance = class_balance
        self.mode_seeking_weight = mode_seeking_weight
        self.translation = translation
        self.cutout = cutout
        self.colour_jitter = colour_jitter
        self.class_latents = class_latents
        self.autoencoder_steps = autoencoder_steps
        self.autoencoder_label_weight = autoencoder_label_weight
        self.lecam_weight = lecam_weight
        self.adc_weight = adc_weight
        self.class_norms = class_norms
        self.memorisation_rejection = memorisation_rejection
        self.judge_steps = judge_steps
        self.judge_loss = judge_loss
        self.judge_contrast = judge_contrast
        self.critic_contrast = critic_contrast
        self.recolour = recolour
        self.colour = colour
        self.guide_weight = guide_weight
        self.guide_confidence = guide_confidence
        self.guide_augment = guide_augment
        self.feature_match_weight = feature_match_weight
        self.feature_match = feature_match
        self.filter_candidates = filter_candidates
        self.novelty_quantile = novelty_quantile
        self.novelty_draws = novelty_draws
        self.checkpoint_every = checkpoint_every
        self.checkpoint_path = checkpoint_path
        self.progress = progress
        self.preview = preview
        self.random_state = random_state
        self.device = device

    def __getstate__(self) -> dict:
        # a progress callback belongs to one run (often a logger), not to the saved model; a pickle
        # holds CPU tensors, so it loads on a host without the GPU the GAN is on (a Dask worker)
        state = {**super().__getstate__(), "progress": None, "preview": None}
        if "gan_" in state and state["gan_"].device != CPU:
            state["gan_"], state["device_"] = copy.deepcopy(state["gan_"]).to(CPU), CPU
        return state

    def gan_config(self, n_items: int, side: int | None = None) -> GANConfig:
        """The :class:`~gan_aug.config.GANConfig` a fit on ``n_items`` images of ``side x side``
        trains with: the GAN settings, ``random_state`` as the seed, the batch scaled for the side
        (:func:`~gan_core.config.batch_for_side`: ``batch_size`` up to 32 px) and ``epochs`` turned
        into steps of that batch. ``side`` defaults to ``image_shape``'s (64 px rules when neither
        is known). Bad settings -> ValueError (sklearn's ``InvalidParameterError`` names the
        parameter and its valid range)."""
        self._validate_params()
        settings = {name: getattr(self, name) for name in GAN_SETTINGS}
        if side is None and self.image_shape is not None:
            side = int(self.image_shape[-1])
        settings["batch_size"] = batch_for_side(self.batch_size, side or FULL_BATCH_SIDE)
        if self.epochs is not None:
            settings["steps"] = steps_for_epochs(self.epochs, n_items, settings["batch_size"])
        return GANConfig(**settings, seed=self.random_state)

    def fit(self, X, y, **params):
        """Train the GAN on every class of ``X``; afterwards :meth:`generate` and :meth:`sample` work."""
        X = self._remember_shape(X)
        super().fit(X.reshape(len(X), -1), y, **params)
        self._train(X.reshape(len(X), -1), y)
        return self

    def fit_resample(self, X, y, **params):
        """Train the GAN and return real + synthetic items (synthetic appended after the real ones)."""
        X = self._remember_shape(X)
        if X.ndim == 4:
            flat, y_out = super().fit_resample(X.reshape(len(X), -1), y, **params)
            return flat.reshape((-1, *self.input_shape_)), y_out
        return super().fit_resample(X, y, **params)

    def _remember_shape(self, X) -> np.ndarray:
        X = np.asarray(X)
        self.input_shape_ = tuple(X.shape[1:]) if X.ndim == 4 else None
        return X

    def _images(self, X: np.ndarray) -> np.ndarray:
        shape = self.input_shape_ or self.image_shape
        if shape is None:
            raise ValueError("X is flattened: pass image_shape=(C, H, W), or give X as (N, C, H, W)")
        if X.shape[1] != int(np.prod(shape)):
            raise ValueError(f"X has {X.shape[1]} features but image shape {tuple(shape)} needs {int(np.prod(shape))}")
        return X.reshape((-1, *shape)).astype(np.float32)

    def _train(self, X: np.ndarray, y: np.ndarray) -> None:
        self.device_ = resolve_device(self.device)  # once per fit; a missing device raises one line here
        images = self._images(X)
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)
        config = self.gan_config(len(y), images.shape[-1])
        split = split_colour(images) if images.shape[1] > 1 and self.colour != "joint" else None
        apart, self.colour_evidence_ = decide(images, codes, self.colour, split)
        self.palettes_ = None
        if apart:  # the GAN learns shapes; samples take real training images' colours (gan_aug.colour)
            images, self.palettes_, _ = split
            log.info("colour apart from shape (%s)", ", ".join(f"{k} {v:.3f}" for k, v in self.colour_evidence_.items()))
        shown = (lambda views: colourise(views, self.palettes_, 0)) if apart else (lambda images: images)
        self.gan_: TrainedGAN = train_conditional_gan(
            images, codes, len(self.classes_), replace(config, colour="apart" if apart else "joint"),
            self.checkpoint_path, self.progress,
            preview=None if self.preview is None else
            lambda step, images, codes: self.preview(step, shown(images), self.classes_[codes]),
            device=self.device_,
        )

    def _fit_resample(self, X, y):
        self._train(X, y)
        rng = np.random.default_rng(self.random_state)
        new_x, new_y = [X], [y]
        for offset, (label, n) in enumerate(sorted(self.sampling_strategy_.items())):
            if n <= 0:
                continue
            n_fake = int(np.ceil(n * self.synthetic_share))
            copies = rng.choice(np.flatnonzero(y == label), n - n_fake)
            new_x += [self.sample(label, n_fake, seed=self.random_state + 1 + offset).reshape(n_fake, -1), X[copies]]
            new_y.append(np.full(n, label, dtype=np.asarray(y).dtype))
        return np.concatenate(new_x).astype(X.dtype, copy=False), np.concatenate(new_y)

    def generate(self, labels, seed: int | None = None, novelty: bool = True) -> np.ndarray:
        """Synthetic images ``(M, C, H, W)`` in [0, 1] for ``labels: (M,)`` (class labels as in ``fit``),
        drawn on ``device_`` and returned as numpy on the host; the same labels and seed give the
        same images (on one device). ``novelty=False`` skips the novelty filter
        (to measure how often the generator itself draws near-copies)."""
        if not hasattr(self, "gan_"):
            raise ValueError("GANOverSampler is not fitted: call fit or fit_resample first")
        labels = np.asarray(labels)
        unknown = sorted(set(labels[~np.isin(labels, self.classes_)].tolist()))
        if unknown:
            raise ValueError(f"unknown class {unknown[0]!r}; fitted classes: {list(self.classes_)}")
        seed = self.random_state if seed is None else seed
        images = self.gan_.sample(np.searchsorted(self.classes_, labels), seed=seed, novelty=novelty)
        palettes = getattr(self, "palettes_", None)
        return images if palettes is None else colourise(images, palettes, seed)

    def sample(self, class_label, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` synthetic images of ``class_label`` as ``(n, C, H, W)`` in [0, 1]."""
        return self.generate(np.full(int(n), class_label), seed)

    def state_dict(self) -> dict:
        """Plain data only (CPU weights, settings, class labels): what :meth:`generate` and :meth:`sample`
        need. Device-free: the device is the loading host's (see :meth:`from_state_dict`)."""
        if not hasattr(self, "gan_"):
            raise ValueError("GANOverSampler is not fitted: call fit or fit_resample first")
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("checkpoint_path", "progress", "preview", "device")}
        return {"params": params, "gan": self.gan_.state_dict(), "classes": self.classes_,
                "input_shape": None if self.input_shape_ is None else list(self.input_shape_),
                "palettes": getattr(self, "palettes_", None)}

    @classmethod
    def from_state_dict(cls, state: dict, device: str = "auto") -> "GANOverSampler":
        """The sampler of :meth:`state_dict`, built on the CPU and moved to ``device`` (resolved here,
        on this host: a sampler trained on a GPU samples on a CPU-only host and the reverse)."""
        params = dict(state["params"])
        params.pop("device", None)  # the device is this host's, not the one it trained on
        # a sampler saved before the GAN settings became parameters held them in one "config" dict
        params.update({k: v for k, v in (params.pop("config", None) or {}).items() if k != "seed"})
        params.setdefault("class_latents", False)  # saved before class latents existed: trained without
        params.setdefault("judge_loss", "weighted")  # saved before the judge's loss was a setting
        params.setdefault("judge_contrast", False)  # saved before the judge had a contrast view
        params.setdefault("autoencoder_label_weight", 0.0)  # saved before it was a setting: trained without
        params.setdefault("colour", "joint")  # saved before colour could be learnt apart: drawn jointly
        sampler = cls(**params, device=device)
        sampler.device_ = resolve_device(device)
        sampler.gan_ = TrainedGAN.from_state_dict(state["gan"]).to(sampler.device_)
        sampler.classes_ = np.asarray(state["classes"])
        sampler.input_shape_ = None if state["input_shape"] is None else tuple(state["input_shape"])
        sampler.palettes_ = None if state.get("palettes") is None else np.asarray(state["palettes"], dtype=np.float32)
        return sampler
