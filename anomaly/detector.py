"""``GANAnomalyDetector``: f-AnoGAN with the scikit-learn / PyOD estimator API.

Higher scores mean more anomalous, everywhere: ``score_samples`` and ``decision_function`` both
return the raw anomaly score (as in PyOD), and ``predict`` returns 1 where it is above
``threshold_`` (anomalous) and 0 elsewhere (normal). Score components per item:

- ``residual``: ``A_R = mean((x - G(E(x)))^2)`` over pixels (images in [-1, 1]);
- ``feature_residual``: ``A_D = mean((f(x) - f(G(E(x))))^2)`` over critic features;
- ``combined``: ``A = A_R + kappa * A_D`` (the paper's anomaly score);
- ``critic``: ``-D(x)``, the WGAN critic's own score (low critic value = unlike the normal data);
- ``critic_feature_distance``: Mahalanobis distance of ``f(x)`` to the critic features of the normal
  training images (mean and Ledoit-Wolf shrunk covariance fitted on them, nothing else);
- ``critic_feature_knn``: mean distance from ``f(x)``, in the same whitened space, to its
  :data:`KNN` nearest normal training images (at most :data:`FEATURE_REFERENCE` of them are kept): a
  normal class with several modes (a 7 with and without a bar) is not averaged into one Gaussian;
- ``multi_critic_distance``: Mahalanobis distances like ``critic_feature_distance``, measured by every
  critic of the snapshot ensemble (copies kept while the critic trained, see
  :class:`~anomaly.train.FAnoGANConfig`) at two depths each (the first layer, pooled to 4x4, and the
  feature layer), each standardised on the held-out normal calibration images, then averaged: several
  views of the normal class, each fitted on the normal training images only;
- ``ensemble``: mean of the :data:`ENSEMBLE` components after standardising each on the held-out
  normal calibration scores, so none dominates by its units.

The :data:`CRITIC_ONLY` scores need one critic pass over ``x`` and no reconstruction ``G(E(x))``;
``score_samples`` (and ``score_components(X, every_component=False)``) skip the reconstruction for them.

Calibration uses held-out normal images only: ``threshold_`` is the ``1 - target_fpr_`` quantile of
their scores and the p-value of an item is the share of calibration scores at or above its score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf

from anomaly.names import CRITIC_ONLY, DEFAULT_SCORE, ENSEMBLE, MULTI, SCORES
from anomaly.train import FAnoGAN, FAnoGANConfig, Progress, networks_from_state, state_of, train_fanogan
from pipelines.errors import GanpipeError
from gan_core.config import steps_for_epochs

KNN = 5  # neighbours of critic_feature_knn
FEATURE_REFERENCE = 2000  # normal training images kept for critic_feature_knn (a seeded random subset beyond)
STALE_STATE = ("this detector was saved before the critic-feature scores (issue 10) and lacks their density "
               "of the training features; train it again (ganpipe train-detector)")


def threshold_for(normal_scores: np.ndarray, target_fpr: float) -> float:
    """The threshold calibration sets: the ``1 - target_fpr`` quantile of normal scores (``higher``)."""
    return float(np.quantile(normal_scores, 1.0 - target_fpr, method="higher"))


def _network_input(X: np.ndarray) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in [0, 1] -> [-1, 1], channels-last like the evaluated networks' weights."""
    x = torch.from_numpy(np.ascontiguousarray(X)) * 2.0 - 1.0
    return x.contiguous(memory_format=torch.channels_last)


class GANAnomalyDetector(BaseEstimator):
    """Parameters: ``score`` (one of :data:`SCORES`), ``target_fpr`` (false positive rate the
    threshold aims for on normal data), ``calibration_fraction`` (share of the normal images held
    out of training to calibrate, used when ``fit`` gets no calibration set), ``epochs`` (passes
    over the normal training images per stage; None: ``gan_steps`` and ``encoder_steps``), the
    f-AnoGAN settings (see :class:`~anomaly.train.FAnoGANConfig`), ``checkpoint_path``,
    ``progress`` (called as ``progress(stage, step, steps, record)``) and ``random_state``.

    Fitted attributes: ``model_`` (the networks), ``feature_mean_`` and ``feature_whitening_`` (the
    critic-feature Gaussian of the normal training images), ``threshold_``, ``target_fpr_`` (the rate it was
    calibrated for), ``calibration_scores_`` (all components on the calibration images),
    ``standardisation_`` and ``reference_scores_`` (for the ensemble and the p-values), ``image_shape_``.
    """

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

    # ------------------------------------------------------------------ fitting

    def fit(self, X: np.ndarray, X_calibration: np.ndarray | None = None) -> "GANAnomalyDetector":
        """Train on normal images ``X: (N, C, H, W)`` in [0, 1], then calibrate on ``X_calibration``
        (or on a held-out ``calibration_fraction`` of ``X``)."""
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if not 0 < self.target_fpr < 1:
            raise ValueError(f"target_fpr must be in (0, 1), got {self.target_fpr}")
        X = self._check(X, fitted=False)
        if X_calibration is None:
            order = np.random.default_rng(self.random_state).permutation(len(X))
            n_cal = max(1, int(round(len(X) * self.calibration_fraction)))
            if len(X) - n_cal < 2:
                raise ValueError(f"{len(X)} normal images are too few to train and calibrate")
            X, X_calibration = X[order[n_cal:]], X[order[:n_cal]]
        steps = {"gan_steps": self.gan_steps, "encoder_steps": self.encoder_steps}
        if self.epochs is not None:
            steps = dict.fromkeys(steps, steps_for_epochs(self.epochs, len(X), self.batch_size))
        config = FAnoGANConfig(
            latent_dim=self.latent_dim, width=self.width, critic_steps=self.critic_steps, batch_size=self.batch_size,
            kappa=self.kappa, seed=self.random_state, **steps,
        )
        self.model_ = train_fanogan(X, config, self.checkpoint_path, self.progress)
        self.image_shape_ = tuple(X.shape[1:])
        self._fit_feature_density(X)
        self.calibrate(X_calibration)
        return self

    @torch.inference_mode()
    def _fit_feature_density(self, X: np.ndarray, batch_size: int = 256) -> None:
        """Gaussian model of the critic features of the normal training images ``X``: ``feature_mean_ (F,)``
        and ``feature_whitening_ (F, F)``, with ``||(f - mean) @ whitening||`` the Mahalanobis distance."""
        features = np.concatenate([self._critic_features(X[s : s + batch_size]).numpy() for s in range(0, len(X), batch_size)])
        density = LedoitWolf().fit(features.astype(np.float64))
        self.feature_mean_ = density.location_.astype(np.float32)
        self.feature_whitening_ = np.linalg.cholesky(density.precision_).astype(np.float32)
        if len(features) > FEATURE_REFERENCE:
            keep = np.random.default_rng(self.random_state).choice(len(features), FEATURE_REFERENCE, replace=False)
            features = features[np.sort(keep)]
        self.feature_reference_ = ((features - self.feature_mean_) @ self.feature_whitening_).astype(np.float32)
        # the snapshot ensemble: a Gaussian per critic and depth (first layer, feature layer)
        self.layer_means_, self.layer_whitenings_ = [], []
        for critic in self.model_.critics:
            pairs = [critic.layer_features(_network_input(X[s : s + batch_size])) for s in range(0, len(X), batch_size)]
            for depth in range(2):
                layer = torch.cat([p[depth] for p in pairs]).numpy().astype(np.float64)
                density = LedoitWolf().fit(layer)
                self.layer_means_.append(density.location_.astype(np.float32))
                self.layer_whitenings_.append(np.linalg.cholesky(density.precision_).astype(np.float32))

    def _critic_features(self, X: np.ndarray) -> torch.Tensor:
        """``f(x)``: ``(N, F)`` critic features of images ``X: (N, C, H, W)`` in [0, 1]."""
        return self.model_.critic.body(_network_input(X))

    def calibrate(self, X_normal: np.ndarray, target_fpr: float | None = None) -> "GANAnomalyDetector":
        """Set the threshold and p-value reference from held-out normal images, for ``target_fpr``
        (default: the ``target_fpr`` hyperparameter); the rate used is kept in ``target_fpr_``."""
        X_normal = self._check(X_normal)
        self.target_fpr_ = self.target_fpr if target_fpr is None else target_fpr
        raw = self._raw_components(X_normal)
        self.standardisation_ = {k: (float(raw[k].mean()), float(raw[k].std() + 1e-12)) for k in ENSEMBLE}
        if "layer_distances" in raw:
            distances = raw["layer_distances"]
            self.layer_standardisation_ = (distances.mean(0), distances.std(0) + 1e-12)
        self.calibration_scores_ = {k: v for k, v in self._with_ensemble(raw).items() if k in SCORES}
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

    @torch.inference_mode()
    def _raw_components(self, X: np.ndarray, reconstruction: bool = True, snapshots: bool = True,
                        batch_size: int = 256) -> dict[str, np.ndarray]:
        """Raw components per item; without ``reconstruction`` only the :data:`CRITIC_ONLY` ones (one
        critic pass, no ``G(E(x))``). Batches of 256 keep the activations in cache."""
        model: FAnoGAN = self.model_
        names = CRITIC_ONLY + (("residual", "feature_residual") if reconstruction else ())
        parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
        mean, whitening = torch.from_numpy(self.feature_mean_), torch.from_numpy(self.feature_whitening_)
        reference = getattr(self, "feature_reference_", None)
        reference = None if reference is None else torch.from_numpy(reference)
        if reference is None:  # saved before critic_feature_knn existed: that component is left out
            parts.pop("critic_feature_knn")
        parts.pop(MULTI)  # from the layer distances, once standardised (see _with_ensemble)
        layers = snapshots and getattr(self, "layer_means_", None) is not None  # the snapshot critics' passes
        if layers:
            parts["layer_distances"] = []
            layer_means = [torch.from_numpy(m) for m in self.layer_means_]
            layer_whitenings = [torch.from_numpy(w) for w in self.layer_whitenings_]
        for start in range(0, len(X), batch_size):
            x = _network_input(X[start : start + batch_size])
            first, f_x = model.critic.layer_features(x)
            if reconstruction:
                rec = model.generator(model.encoder(x))
                f_rec = model.critic.body(rec)
                parts["residual"].append(((x - rec) ** 2).flatten(1).mean(1).numpy())
                parts["feature_residual"].append(((f_x - f_rec) ** 2).mean(1).numpy())
            if layers:
                views = [view for critic in model.snapshots for view in critic.layer_features(x)] + [first, f_x]
                parts["layer_distances"].append(torch.stack(
                    [((v - m) @ w).norm(dim=1) for v, m, w in zip(views, layer_means, layer_whitenings)], dim=1).numpy())
            parts["critic"].append((-model.critic.head(f_x).squeeze(1)).numpy())
            whitened = (f_x - mean) @ whitening
            parts["critic_feature_distance"].append(whitened.norm(dim=1).numpy())
            if reference is not None:
                k = min(KNN, len(reference))
                nearest = torch.cdist(whitened, reference).topk(k, dim=1, largest=False).values
                parts["critic_feature_knn"].append(nearest.mean(dim=1).numpy())
        out = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in parts.items()}
        if reconstruction:
            out["combined"] = out["residual"] + model.config.kappa * out["feature_residual"]
        return out

    def _with_ensemble(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the standardised means: ``multi_critic_distance`` from the layer distances (when the
        detector has the snapshot Gaussians) and ``ensemble`` when its components were computed (the
        critic-only pass skips it)."""
        raw = dict(raw)
        if "layer_distances" in raw and getattr(self, "layer_standardisation_", None) is not None:
            mean, std = self.layer_standardisation_
            raw[MULTI] = ((raw["layer_distances"] - mean) / std).mean(axis=1)
        if not all(k in raw for k in ENSEMBLE):
            return raw
        z = [(raw[k] - mean) / std for k, (mean, std) in self.standardisation_.items()]
        return {**raw, "ensemble": np.mean(z, axis=0)}

    def score_components(self, X: np.ndarray, every_component: bool = True) -> dict[str, np.ndarray]:
        """Scores per item (in :data:`SCORES` order), plus ``p_value`` of the selected score. With
        ``every_component=False``, only those of the pass the selected score needs: the
        :data:`CRITIC_ONLY` scores for a critic-only score (no ``G(E(x))``, several times faster), and
        ``multi_critic_distance`` (the snapshot critics' passes) only when it is the selected score."""
        X = self._check(X)
        reconstruction = every_component or self.score not in CRITIC_ONLY
        snapshots = every_component or self.score == MULTI  # the other critic passes only when needed
        raw = self._with_ensemble(self._raw_components(X, reconstruction=reconstruction, snapshots=snapshots))
        components = {k: raw[k] for k in SCORES if k in raw}
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
        model: FAnoGAN = self.model_
        return ((model.generator(model.encoder(_network_input(X))) + 1) / 2).contiguous().numpy()

    def p_values(self, X: np.ndarray) -> np.ndarray:
        return self.score_components(X)["p_value"]

    def _p_values(self, scores: np.ndarray) -> np.ndarray:
        ref = self.reference_scores_
        at_or_above = len(ref) - np.searchsorted(ref, scores, side="left")
        return (1.0 + at_or_above) / (1.0 + len(ref))

    # ------------------------------------------------------------------ state

    def __getstate__(self) -> dict:
        # a progress callback belongs to one run (often a logger), not to the saved model
        return {**super().__getstate__(), "progress": None}

    def state_dict(self) -> dict:
        """Everything needed to score again: networks, calibration and settings, as plain data only
        (tensors, numeric numpy arrays, JSON values), so it is saved without pickling objects."""
        params = {k: v for k, v in self.get_params().items() if k not in ("checkpoint_path", "progress")}
        return {"params": params, "model": state_of(self.model_), "threshold": self.threshold_,
                "target_fpr": self.target_fpr_, "standardisation": self.standardisation_,
                "feature_mean": self.feature_mean_, "feature_whitening": self.feature_whitening_,
                "feature_reference": self.feature_reference_,
                "layer_means": self.layer_means_, "layer_whitenings": self.layer_whitenings_,
                "layer_standardisation": list(self.layer_standardisation_),
                "reference": self.reference_scores_, "calibration_scores": self.calibration_scores_,
                "image_shape": list(self.image_shape_)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "GANAnomalyDetector":
        if "feature_mean" not in state:
            raise GanpipeError(STALE_STATE)
        detector = cls(**state["params"])
        detector.model_ = networks_from_state(state["model"])
        detector.threshold_ = state["threshold"]
        detector.target_fpr_ = state["target_fpr"]
        detector.standardisation_ = state["standardisation"]
        detector.feature_mean_ = np.asarray(state["feature_mean"], dtype=np.float32)
        detector.feature_whitening_ = np.asarray(state["feature_whitening"], dtype=np.float32)
        if state.get("feature_reference") is not None:
            detector.feature_reference_ = np.asarray(state["feature_reference"], dtype=np.float32)
        elif detector.score == "critic_feature_knn":
            raise GanpipeError(STALE_STATE)
        if state.get("layer_means") is not None:
            detector.layer_means_ = [np.asarray(m, dtype=np.float32) for m in state["layer_means"]]
            detector.layer_whitenings_ = [np.asarray(w, dtype=np.float32) for w in state["layer_whitenings"]]
            detector.layer_standardisation_ = tuple(np.asarray(a, dtype=np.float64) for a in state["layer_standardisation"])
        elif detector.score == MULTI:
            raise GanpipeError(STALE_STATE)
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
            if not hasattr(self, "feature_mean_"):
                raise GanpipeError(STALE_STATE)
            if tuple(X.shape[1:]) != tuple(self.image_shape_):
                raise ValueError(f"images must be {tuple(self.image_shape_)}, got {tuple(X.shape[1:])}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        return X
