"""``GANAnomalyDetector``: f-AnoGAN with the scikit-learn / PyOD estimator API.

Higher scores mean more anomalous, everywhere: ``score_samples`` and ``decision_function`` both
return the raw anomaly score (as in PyOD), and ``predict`` returns 1 where it is above
``threshold_`` (anomalous) and 0 elsewhere (normal). The scores (one of them selected by ``score``)
are the entries of :data:`anomaly.scores.TABLE`, which documents each.

The :data:`~anomaly.scores.CRITIC_ONLY` scores need no reconstruction ``G(E(x))``; ``score_samples``
(and ``score_components(X, every_component=False)``) compute only the passes the selected score needs.

Calibration uses held-out normal images only: ``threshold_`` is the ``1 - target_fpr_`` quantile of
their scores and the p-value of an item is the share of calibration scores at or above its score.

Devices: ``device`` (auto, cpu, cuda, cuda:N or mps; see :mod:`pipelines.devices`) is resolved once at
the start of ``fit``, into ``device_``; the networks train there and stay there. Scoring resolves
``device`` again and moves the networks when it names another device (a detector loaded with
:meth:`~GANAnomalyDetector.from_state_dict` is built on the CPU, with ``device="auto"``: the device
is a property of the host, not of the model, so it is not saved). Images move to the device chunk by
chunk; scores, thresholds and the scores' fitted state live on the host as numpy. ``state_dict`` and
pickles hold CPU tensors only.
"""

from __future__ import annotations

import copy
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from anomaly import maps
from anomaly.names import DEFAULT_SCORE
from anomaly.scores import (BATCH, PASSES, TABLE, Batch, compute, fit_scores, missing_state, network_input, on_device,
                            state_loaders)
from anomaly.train import CPU, FAnoGAN, FAnoGANConfig, Progress, networks_from_state, state_of, train_fanogan
from pipelines.devices import device_constraint, resolve_device
from pipelines.errors import GanpipeError
from gan_core.config import batch_for_side, steps_for_epochs
from gan_core.layers import items_per_pass

STALE_STATE = ("this detector was saved before the critic-feature scores (issue 10) and lacks their density "
               "of the training features; train it again (ganpipe train-detector)")
_POSITIVE = Interval(Integral, 1, None, closed="left")
_NOT_SAVED = ("checkpoint_path", "progress", "device")  # belong to one run or one host, not to the model


def threshold_for(normal_scores: np.ndarray, target_fpr: float) -> float:
    """The threshold calibration sets: the ``1 - target_fpr`` quantile of normal scores (``higher``)."""
    return float(np.quantile(normal_scores, 1.0 - target_fpr, method="higher"))


class GANAnomalyDetector(BaseEstimator):
    """Parameters: ``score`` (a name of :data:`~anomaly.scores.TABLE`), ``target_fpr`` (false positive
    rate the threshold aims for on normal data), ``calibration_fraction`` (share of the normal images
    held out of training to calibrate, used when ``fit`` gets no calibration set), ``epochs`` (passes
    over the normal training images per stage; None: ``gan_steps`` and ``encoder_steps``), the
    f-AnoGAN settings (see :class:`~anomaly.train.FAnoGANConfig`; ``batch_size`` is the batch up to
    32 px, scaled down above by :func:`~gan_core.config.batch_for_side`), ``checkpoint_path``,
    ``progress`` (called as ``progress(stage, step, steps, record)``), ``random_state`` and
    ``device`` (where it trains and scores: auto, cpu, cuda, cuda:N or mps; not saved with the model).

    Fitted attributes: ``model_`` (the networks), each score's fitted state as ``<key>_`` (e.g.
    ``feature_mean_`` and ``feature_whitening_``, the critic-feature Gaussian of the normal training
    images; ``standardisation_``, the ensemble's, from the calibration images), ``threshold_``,
    ``target_fpr_`` (the rate it was calibrated for), ``calibration_scores_`` (every score on the
    calibration images), ``reference_scores_`` (for the p-values), ``image_shape_``, ``device_``
    (the ``torch.device`` the networks are on: where it trained, or where it last scored).
    """

    _parameter_constraints: dict = {
        "score": [StrOptions(TABLE.keys())],  # the table's live keys: a score registered there is accepted
        "target_fpr": [Interval(Real, 0, 1, closed="neither")],
        "calibration_fraction": [Interval(Real, 0, 1, closed="neither")],
        "epochs": [Interval(Real, 0, None, closed="neither"), None],
        "gan_steps": [_POSITIVE],
        "encoder_steps": [_POSITIVE],
        "critic_steps": [_POSITIVE],
        "latent_dim": [_POSITIVE],
        "width": [_POSITIVE],
        "batch_size": [_POSITIVE],
        "kappa": [Interval(Real, 0, None, closed="left")],
        "checkpoint_path": [str, os.PathLike, None],
        "progress": [callable, None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "device": [device_constraint()],
    }

    def __init__(
        self,
        score: str = DEFAULT_SCORE,
        target_fpr: float = 0.01,
        calibration_fraction: float = 0.2,
        epochs: float | None = None,
        gan_steps: int = FAnoGANConfig.gan_steps,
        encoder_steps: int = FAnoGANConfig.encoder_steps,
        critic_steps: int = FAnoGANConfig.critic_steps,
        latent_dim: int = FAnoGANConfig.latent_dim,
        width: int = FAnoGANConfig.width,
        batch_size: int = FAnoGANConfig.batch_size,
        kappa: float = FAnoGANConfig.kappa,
        checkpoint_path: str | Path | None = None,
        progress: Progress | None = None,
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.score = score
        self.target_fpr = target_fpr
        self.calibration_fraction = calibration_fraction
        self.epochs = epochs
        self.gan_steps = gan_steps
        self.encoder_steps = encoder_steps
        self.critic_steps = critic_steps
        self.latent_dim = latent_dim
        self.width = width
        self.batch_size = batch_size
        self.kappa = kappa
        self.checkpoint_path = checkpoint_path
        self.progress = progress
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: np.ndarray, X_calibration: np.ndarray | None = None) -> "GANAnomalyDetector":
        """Train on normal images ``X: (N, C, H, W)`` in [0, 1], fit every score's state on them, then
        calibrate on ``X_calibration`` (or on a held-out ``calibration_fraction`` of ``X``), on ``device``."""
        X = self._check(X, fitted=False)
        self.device_ = resolve_device(self.device)  # a device asked for but not there fails here, in one line
        if X_calibration is None:
            order = np.random.default_rng(self.random_state).permutation(len(X))
            n_cal = max(1, int(round(len(X) * self.calibration_fraction)))
            if len(X) - n_cal < 2:
                raise ValueError(f"{len(X)} normal images are too few to train and calibrate")
            X, X_calibration = X[order[n_cal:]], X[order[:n_cal]]
        steps = {"gan_steps": self.gan_steps, "encoder_steps": self.encoder_steps}
        batch_size = batch_for_side(self.batch_size, X.shape[-1])  # batch_size up to 32 px, fewer above
        if self.epochs is not None:
            steps = dict.fromkeys(steps, steps_for_epochs(self.epochs, len(X), batch_size))
        config = FAnoGANConfig(
            latent_dim=self.latent_dim, width=self.width, critic_steps=self.critic_steps, batch_size=batch_size,
            kappa=self.kappa, seed=self.random_state, **steps,
        )
        self.model_ = train_fanogan(X, config, self.checkpoint_path, self.progress, device=self.device_)
        self.image_shape_ = tuple(X.shape[1:])
        self._keep_state(fit_scores(self.model_, X, self.random_state))
        self.calibrate(X_calibration)
        return self

    def calibrate(self, X_normal: np.ndarray, target_fpr: float | None = None) -> "GANAnomalyDetector":
        """Set the threshold and p-value reference (and the scores' calibration state) from held-out
        normal images ``X_normal: (N, C, H, W)`` in [0, 1], for ``target_fpr`` (default: the
        ``target_fpr`` hyperparameter); the rate used is kept in ``target_fpr_``."""
        X_normal = self._check(X_normal)
        self.target_fpr_ = self.target_fpr if target_fpr is None else target_fpr
        self.calibration_scores_, calibration = compute(self._fitted(calibrating=True), X_normal, calibrating=True)
        self._keep_state(calibration)
        self.reference_scores_ = np.sort(self.calibration_scores_[self.score])
        self.threshold_ = threshold_for(self.reference_scores_, self.target_fpr_)
        return self

    def held_out_fpr(self, folds: int = 2) -> float:
        """False positive rate on normal images that did not set the threshold: the calibration scores
        split into ``folds`` seeded parts, each scored against the threshold the other parts give
        (same quantile rule as :meth:`calibrate`); the mean over parts. The threshold in use is set
        from all of them, so this is the honest estimate of its rate (slightly pessimistic)."""
        scores = np.asarray(self.calibration_scores_[self.score])
        if len(scores) < 2 * folds:
            return float("nan")
        parts = np.array_split(np.random.default_rng(self.random_state).permutation(len(scores)), folds)
        rates = []
        for part in parts:
            rest = np.setdiff1d(np.arange(len(scores)), part)
            threshold = threshold_for(scores[rest], self.target_fpr_)
            rates.append(float((scores[part] > threshold).mean()))
        return float(np.mean(rates))

    # ------------------------------------------------------------------ scoring

    def score_components(self, X: np.ndarray, every_component: bool = True) -> dict[str, np.ndarray]:
        """Scores ``(N,)`` per item of images ``X: (N, C, H, W)`` in [0, 1], in table order, plus
        ``p_value`` of the selected score. With ``every_component=False``, only the scores the passes of
        the selected score give: for a critic-only score no ``G(E(x))`` (several times faster), and
        the snapshot critics' passes only when the selected score needs them."""
        X = self._check(X)
        components, _ = compute(self._fitted(), X, PASSES if every_component else TABLE[self.score].needs)
        components["p_value"] = self._p_values(components[self.score])
        return components

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per item (higher = more anomalous); skips ``G(E(x))`` when the score does not use it."""
        return self.score_components(X, every_component=False)[self.score]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The raw anomaly score, as in PyOD (higher = more anomalous); compare it with ``threshold_``."""
        return self.score_samples(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for anomalous (``decision_function`` above ``threshold_``), 0 for normal."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    @torch.inference_mode()
    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """``G(E(x))`` of images ``X: (N, C, H, W)`` in [0, 1], same shape and range."""
        X = self._check(X)
        model: FAnoGAN = self._fitted()["model"]
        images = model.generator(model.encoder(network_input(X, model.device)))
        return ((images + 1) / 2).contiguous().cpu().numpy()

    @torch.inference_mode()
    def anomaly_map(self, X: np.ndarray, kind: str = "feature") -> np.ndarray:
        """Where each image of ``X: (N, C, H, W)`` in [0, 1] is anomalous: maps ``(N, H, W)`` float32,
        higher = more anomalous (see :mod:`anomaly.maps`). ``kind``: ``"feature"`` (the critic's
        features per location against the normal training images', the fast critic-only path),
        ``"residual"`` (``|x - G(E(x))|``) or ``"combined"`` (both, each on its normal scale)."""
        if kind not in maps.KINDS:
            raise ValueError(f"kind must be one of {', '.join(maps.KINDS)}, got {kind!r}")
        X = self._check(X)
        fitted = self._fitted()
        if fitted.get("map_mean") is None or fitted.get("colour_field") is None:
            raise GanpipeError("this detector was saved before its anomaly maps (or their colour field) existed; "
                               "train it again (ganpipe train-detector) to get maps")
        model: FAnoGAN = fitted["model"]
        state, side = on_device(fitted, model.device), X.shape[-1]
        out = np.empty((len(X), X.shape[-2], side), dtype=np.float32)
        per_pass = items_per_pass(side, BATCH)
        for start in range(0, len(X), per_pass):
            batch = Batch(state, network_input(X[start : start + per_pass], model.device))
            parts = {}
            if kind != "residual":
                parts["feature"] = maps.to_image(batch.location_map, side)
            if kind != "feature":
                parts["residual"] = maps.residual_map(batch.x, batch.reconstruction)
            result = parts[kind] if kind in parts else maps.combine(parts, fitted["map_norms"])
            out[start : start + len(result)] = result.float().cpu().numpy()
        return out

    def p_values(self, X: np.ndarray) -> np.ndarray:
        return self.score_components(X)["p_value"]

    def _p_values(self, scores: np.ndarray) -> np.ndarray:
        ref = self.reference_scores_
        at_or_above = len(ref) - np.searchsorted(ref, scores, side="left")
        return (1.0 + at_or_above) / (1.0 + len(ref))

    # ------------------------------------------------------------------ state

    def __getstate__(self) -> dict:
        # a progress callback belongs to one run (often a logger), not to the saved model; a pickle
        # holds CPU tensors, so it loads on a host without the device the networks are on
        state = {**super().__getstate__(), "progress": None}
        if "model_" in state and state["model_"].device != CPU:
            state["model_"], state["device_"] = copy.deepcopy(state["model_"]).to(CPU), CPU
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__({"device": "auto", **state})  # pickled before the device parameter

    def _fitted(self, calibrating: bool = False, place: bool = True) -> dict:
        """What the scores read: ``model`` (first moved to the device ``device`` resolves to, when
        ``place`` and it is on another) and the scores' state by key (None where absent). A state
        without a required score's or the selected score's -> :class:`~pipelines.errors.GanpipeError`."""
        if place:
            self.device_ = resolve_device(self.device)
            self.model_.to(self.device_)
        fitted = {"model": self.model_, **{key: getattr(self, f"{key}_", None) for key in state_loaders()}}
        if missing_state(fitted, self.score, calibrating):
            raise GanpipeError(STALE_STATE)
        return fitted

    def _keep_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, f"{key}_", value)

    def state_dict(self) -> dict:
        """Everything needed to score again: networks, calibration, the scores' state and settings, as
        plain data only (CPU tensors, numeric numpy arrays, JSON values), so it is saved without
        pickling objects and loads on any host. ``device`` is not saved (see the module's note)."""
        params = {k: v for k, v in self.get_params().items() if k not in _NOT_SAVED}
        scores = {key: getattr(self, f"{key}_") for key in state_loaders() if getattr(self, f"{key}_", None) is not None}
        return {"params": params, "model": state_of(self.model_), "threshold": self.threshold_,
                "target_fpr": self.target_fpr_, **scores, "reference": self.reference_scores_,
                "calibration_scores": self.calibration_scores_, "image_shape": list(self.image_shape_)}

    @classmethod
    def from_state_dict(cls, state: dict, device: str = "auto") -> "GANAnomalyDetector":
        """The detector :meth:`state_dict` saved, built on the CPU, to score on ``device`` (resolved
        when it scores; ``set_params(device=...)`` changes it); a score whose state it lacks (saved
        before the score existed) is left out, and a detector that needs it is refused with a clear error."""
        detector = cls(**{k: v for k, v in state["params"].items() if k not in _NOT_SAVED}, device=device)
        detector.model_ = networks_from_state(state["model"])
        detector.device_ = CPU
        detector._keep_state({key: load(state[key]) for key, load in state_loaders().items()
                              if state.get(key) is not None})
        detector._fitted(place=False)  # refuses a detector too old to score
        detector.threshold_ = state["threshold"]
        detector.target_fpr_ = state["target_fpr"]
        detector.reference_scores_ = np.asarray(state["reference"])
        detector.calibration_scores_ = state["calibration_scores"]
        detector.image_shape_ = tuple(state["image_shape"])
        return detector

    def _check(self, X: np.ndarray, fitted: bool = True) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 4:
            raise ValueError(f"X must be images (N, C, H, W), got shape {X.shape}")
        if fitted:
            if not hasattr(self, "model_"):
                raise ValueError("GANAnomalyDetector is not fitted: call fit first")
            if tuple(X.shape[1:]) != tuple(self.image_shape_):
                raise ValueError(f"images must be {tuple(self.image_shape_)}, got {tuple(X.shape[1:])}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        return X
