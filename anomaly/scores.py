"""The detector's scores, one entry each in :data:`TABLE` (PyOD's one ``method`` switch; anomalib's
shared ``MultiVariateGaussian``). Higher = more anomalous. Per item ``x`` (images in [-1, 1]):

- ``residual``: ``A_R = mean((x - G(E(x)))^2)`` over pixels;
- ``feature_residual``: ``A_D = mean((f(x) - f(G(E(x))))^2)`` over critic features;
- ``combined``: ``A = A_R + kappa * A_D`` (the paper's anomaly score);
- ``critic``: ``-D(x)``, the WGAN critic's own score (low critic value = unlike the normal data);
- ``critic_feature_distance``: Mahalanobis distance of ``f(x)`` to the critic features of the normal
  training images (a :class:`Gaussian` fitted on them, nothing else);
- ``critic_feature_knn``: mean distance from ``f(x)``, in the same whitened space, to its :data:`KNN`
  nearest normal training images (at most :data:`FEATURE_REFERENCE` of them are kept): a normal
  class with several modes (a 7 with and without a bar) is not averaged into one Gaussian;
- ``multi_critic_distance``: Mahalanobis distances like ``critic_feature_distance``, measured by every
  critic of the snapshot ensemble (copies kept while the critic trained, see
  :class:`~anomaly.train.FAnoGANConfig`) at two depths each (the first layer, pooled to 4x4, and the
  feature layer), each standardised on the held-out normal calibration images, then averaged: several
  views of the normal class, each fitted on the normal training images only;
- ``critic_map``: the brightest 3x3 spot of the feature anomaly map (:mod:`anomaly.maps`): at each
  location the Mahalanobis distance of the critic's features to a Gaussian of the normal training
  images' there (PaDiM with the critic as backbone) and the distance of its pixels' colours to the
  nearest normal pixel colours, for defects that cover a few percent of the image;
- ``ensemble``: mean of the :data:`ENSEMBLE` scores after standardising each on the held-out normal
  calibration images, so none dominates by its units.

A :class:`Score` says which passes it needs beyond the critic's over ``x`` (:data:`RECONSTRUCTION`,
:data:`SNAPSHOTS`, :data:`MAPS`), what it measures per batch, what it fits on the normal training images and on the
held-out normal calibration images, and how it combines its measurements or earlier scores. Its
fitted state is a few named values: the detector keeps each as the attribute ``<key>_`` and saves it
under ``<key>`` in its ``state_dict``; a detector saved before a score existed lacks that score's
state and scores without it. The names are also listed, torch-free, in :mod:`anomaly.names`.

Devices: the passes run where the model is (:attr:`~anomaly.train.FAnoGAN.device`), in float32 (no
autocast: a score is compared with a quantile of others). Each batch of images moves there with
:func:`pipelines.devices.to_device`, and its measurements come back to the host as numpy. Fitted
state lives on the host as numpy (it is what the detector saves): the state the measurements read
(each score's ``fit_state``) is moved to the device once per :func:`compute`, and everything fitted
on it (Gaussians, standardisations, combinations) is computed on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from anomaly import maps
from anomaly.names import DEFAULT_SCORE, SCORES
from anomaly.networks import Critic
from anomaly.train import FAnoGAN
from gan_core.layers import items_per_pass
from pipelines.devices import to_device

RECONSTRUCTION = "reconstruction"  # G(E(x)) and its critic features f(G(E(x)))
SNAPSHOTS = "snapshots"  # both layers of the earlier critics of the snapshot ensemble
MAPS = "maps"  # the critic's features at every location and their per-location Gaussians (anomaly.maps)
PASSES = frozenset({RECONSTRUCTION, SNAPSHOTS, MAPS})
BATCH = 256  # images per pass up to 64 px (fewer above: gan_core.layers.items_per_pass): activations in cache
KNN = 5  # neighbours of critic_feature_knn
FEATURE_REFERENCE = 2000  # normal training images kept for critic_feature_knn (a seeded random subset beyond)
ENSEMBLE = ("combined", "critic")


def network_input(X: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in [0, 1] -> [-1, 1], channels-last like the evaluated networks' weights,
    made on the CPU and moved to ``device`` (default: stay on the CPU)."""
    x = torch.from_numpy(np.ascontiguousarray(X)) * 2.0 - 1.0
    x = x.contiguous(memory_format=torch.channels_last)
    return x if device is None else to_device(x, device)


def as_tensor(value: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Fitted state as a tensor on the device of ``like`` (a numpy array is wrapped without a copy on the CPU)."""
    tensor = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
    return to_device(tensor, like.device)


def host(values: torch.Tensor) -> np.ndarray:
    """A measurement back on the host, as numpy."""
    return values.cpu().numpy()


class Gaussian(NamedTuple):
    """A multivariate Gaussian of features ``(N, F)``: ``mean (F,)`` and ``whitening (F, F)``
    (float32, the Cholesky factor of the precision), so ``||(f - mean) @ whitening||`` is the
    Mahalanobis distance. The covariance is Ledoit-Wolf shrunk: fewer images than features is fine."""

    mean: np.ndarray
    whitening: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> "Gaussian":
        density = LedoitWolf().fit(features.astype(np.float64))
        return cls(density.location_.astype(np.float32), np.linalg.cholesky(density.precision_).astype(np.float32))

    def whiten(self, f: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """``(f - mean) @ whitening``: ``(N, F) -> (N, F)``, a tensor for a tensor, an array for an array."""
        if isinstance(f, np.ndarray):
            return (f - self.mean) @ self.whitening
        return (f - as_tensor(self.mean, f)) @ as_tensor(self.whitening, f)

    def distance(self, f: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance to the mean: ``(N, F) -> (N,)``."""
        return self.whiten(f).norm(dim=1)


def feature_gaussian(fitted: Mapping[str, Any]) -> Gaussian:
    """The Gaussian of the normal training images' critic features ``f(x)``."""
    return Gaussian(fitted["feature_mean"], fitted["feature_whitening"])


class Batch:
    """One batch ``x: (B, C, H, W)`` in [-1, 1] and what the networks make of it, each computed on first
    use, so the scores of one pass share it. ``fitted`` holds the detector's fitted values by name
    (``model`` and the scores' state)."""

    def __init__(self, fitted: Mapping[str, Any], x: torch.Tensor) -> None:
        self.fitted, self.model, self.x = fitted, fitted["model"], x

    @cached_property
    def critic_layers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The critic's first layer pooled to 4x4, ``(B, width * 16)``, and its features ``f(x): (B, F)``."""
        return self.model.critic.layer_features(self.x)

    @property
    def features(self) -> torch.Tensor:
        return self.critic_layers[1]

    @cached_property
    def whitened_features(self) -> torch.Tensor:
        """``f(x)`` whitened by :func:`feature_gaussian`: ``(B, F)``."""
        return feature_gaussian(self.fitted).whiten(self.features)

    @cached_property
    def reconstruction(self) -> torch.Tensor:
        """``G(E(x)): (B, C, H, W)`` in [-1, 1]."""
        return self.model.generator(self.model.encoder(self.x))

    @cached_property
    def reconstruction_features(self) -> torch.Tensor:
        """``f(G(E(x))): (B, F)``."""
        return self.model.critic.body(self.reconstruction)

    @cached_property
    def location_distances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """At each location: the Mahalanobis distance of the critic's features to the normal training
        images' there, and the mean distance of its pixels' colours to the nearest normal pixel colours:
        two ``(B, h, w)`` maps (see :mod:`anomaly.maps`)."""
        fitted = self.fitted
        features = maps.spatial_features(self.model.critic, self.x)
        critic = maps.location_distances(features[:, as_tensor(fitted["map_channels"], self.x)],
                                         as_tensor(fitted["map_mean"], self.x), as_tensor(fitted["map_whitening"], self.x))
        colour = maps.colour_location_distances(self.x, as_tensor(fitted["colour_field"], self.x), features.shape[-1])
        return critic, colour

    @cached_property
    def location_map(self) -> torch.Tensor:
        """The feature map at its locations, ``(B, h, w)``: the mean of the critic and colour
        distances, each divided by its mean on the normal training images."""
        critic, colour = self.location_distances
        norms = self.fitted["map_norms"]
        return 0.5 * (critic / float(norms["critic"]) + colour / float(norms["colour"]))

    @cached_property
    def ensemble_layers(self) -> list[torch.Tensor]:
        """Both layers of every critic of the snapshot ensemble, oldest first (the final critic last):
        ``[(B, width * 16), (B, F)] * critics``."""
        return [view for critic in self.model.snapshots for view in critic.layer_features(self.x)] + [*self.critic_layers]


class NormalImages:
    """The normal training images ``X: (N, C, H, W)`` in [0, 1] that scores fit on, as the critics
    see them; ``seed`` drives any draw a fit makes."""

    def __init__(self, model: FAnoGAN, X: np.ndarray, seed: int) -> None:
        self.model, self.X, self.seed = model, X, seed

    def _batches(self):
        device, per_pass = self.model.device, items_per_pass(self.X.shape[-1], BATCH)
        return (network_input(self.X[start : start + per_pass], device) for start in range(0, len(self.X), per_pass))

    @cached_property
    def features(self) -> np.ndarray:
        """``f(x)`` of the final critic: ``(N, F)`` float32, on the host."""
        return np.concatenate([host(self.model.critic.body(x)) for x in self._batches()])

    def location_gaussians(self) -> dict:
        """The per-location Gaussians of the final critic's spatial features and the colour field of
        a seeded draw of the images' pixels (:mod:`anomaly.maps`), then, in a second pass, the means
        over these images that put the maps on one scale: of each location distance, and of the
        feature and residual maps."""
        critic, channels = self.model.critic, None
        gaussians = maps.LocationGaussians()
        pixels = maps.PixelDraw(len(self.X), self.X.shape[-2] * self.X.shape[-1], self.seed)
        for x in self._batches():
            features = maps.spatial_features(critic, x)
            if channels is None:
                channels = maps.map_channels(features.shape[1], self.seed)
            gaussians.add(features[:, torch.from_numpy(channels).to(features.device)].cpu())
            pixels.add(x)
        mean, whitening = gaussians.fit()
        state = {"map_channels": channels, "map_mean": mean, "map_whitening": whitening,
                 "colour_field": maps.colour_field(pixels.colours())}
        # the feature map is linear in the two distances, and upsampling and blurring are linear too, so
        # one pass gives its mean as well: 0.5 * (mean image of critic / critic mean + the same of colour)
        totals = dict.fromkeys(("critic", "colour", "critic_image", "colour_image", "residual"), 0.0)
        for x in self._batches():
            batch = Batch({"model": self.model, **state}, x)
            for kind, distances in zip(("critic", "colour"), batch.location_distances):
                totals[kind] += float(distances.mean(dim=(1, 2)).sum())
                totals[f"{kind}_image"] += float(maps.to_image(distances, x.shape[-1]).mean(dim=(1, 2)).sum())
            totals["residual"] += float(maps.residual_map(x, batch.reconstruction).mean(dim=(1, 2)).sum())
        mean = {kind: max(total / len(self.X), 1e-12) for kind, total in totals.items()}
        colour_norm = max(mean["colour"], maps.COLOUR_NORM_FLOOR)
        feature = 0.5 * (mean["critic_image"] / mean["critic"] + mean["colour_image"] / colour_norm)
        norms = {"critic": mean["critic"], "colour": colour_norm, "feature": feature, "residual": mean["residual"]}
        return {**state, "map_norms": norms}

    def layers(self, critic: Critic) -> list[np.ndarray]:
        """Both layers of ``critic``: ``[(N, width * 16), (N, F)]`` float32, on the host."""
        pairs = [critic.layer_features(x) for x in self._batches()]
        return [host(torch.cat([pair[depth] for pair in pairs])) for depth in range(2)]


Load = Callable[[Any], Any]  # a saved value -> the fitted value


@dataclass(frozen=True)
class Score:
    """One detector score (its name is its key in :data:`TABLE`).

    - ``needs``: the passes it needs beyond the critic's over ``x``, a subset of :data:`PASSES`
      (including those of its ``inputs``);
    - ``inputs``: the scores its value combines (computed before it);
    - ``measure(batch) -> (B,) or (B, K)`` tensor: its raw values on one :class:`Batch`;
    - ``combine(measured, scores, fitted) -> (N,)``: its value from its measurements over all items
      (``measured``, None without ``measure``) and ``scores`` (at least its inputs); without it the
      score is its measurement;
    - ``fit(images, fitted) -> {key: value}`` on the :class:`NormalImages` (``fitted``: the state of
      the scores before it in the table), keys and how a saved value loads back in ``fit_state``;
    - ``calibrate(measured, scores) -> {key: value}`` on the held-out normal calibration images, keys
      in ``calibration_state``;
    - ``required``: a detector saved without its state is too old to load (it must be trained again).
    """

    needs: frozenset[str] = frozenset()
    inputs: tuple[str, ...] = ()
    measure: Callable[[Batch], torch.Tensor] | None = None
    combine: Callable[[np.ndarray | None, Mapping[str, np.ndarray], Mapping[str, Any]], np.ndarray] | None = None
    fit: Callable[[NormalImages, Mapping[str, Any]], dict] | None = None
    fit_state: Mapping[str, Load] = field(default_factory=dict)
    calibrate: Callable[[np.ndarray | None, Mapping[str, np.ndarray]], dict] | None = None
    calibration_state: Mapping[str, Load] = field(default_factory=dict)
    required: bool = False


def _float32(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def _float32_list(values: Any) -> list[np.ndarray]:
    return [_float32(value) for value in values]


def _float64_list(values: Any) -> list[np.ndarray]:
    # how saved detectors have always been read back (fitted, the values are float32)
    return [np.asarray(value, dtype=np.float64) for value in values]


def _as_saved(value: Any) -> Any:
    return value


def _standardised(values: np.ndarray) -> tuple[Any, Any]:
    """``(mean, std)`` over items (axis 0), the std kept off zero."""
    return values.mean(0), values.std(0) + 1e-12


def _fit_feature_gaussian(images: NormalImages, fitted: Mapping[str, Any]) -> dict:
    mean, whitening = Gaussian.fit(images.features)
    return {"feature_mean": mean, "feature_whitening": whitening}


def _fit_feature_reference(images: NormalImages, fitted: Mapping[str, Any]) -> dict:
    """The whitened features of the normal training images, at most :data:`FEATURE_REFERENCE` of them."""
    features = images.features
    if len(features) > FEATURE_REFERENCE:
        keep = np.random.default_rng(images.seed).choice(len(features), FEATURE_REFERENCE, replace=False)
        features = features[np.sort(keep)]
    return {"feature_reference": feature_gaussian(fitted).whiten(features).astype(np.float32)}


def _knn_distance(batch: Batch) -> torch.Tensor:
    reference = as_tensor(batch.fitted["feature_reference"], batch.x)
    nearest = torch.cdist(batch.whitened_features, reference).topk(min(KNN, len(reference)), dim=1, largest=False)
    return nearest.values.mean(dim=1)


def _fit_layer_gaussians(images: NormalImages, fitted: Mapping[str, Any]) -> dict:
    """A :class:`Gaussian` per critic of the snapshot ensemble and depth, in :attr:`Batch.ensemble_layers` order."""
    gaussians = [Gaussian.fit(layer) for critic in images.model.critics for layer in images.layers(critic)]
    return {"layer_means": [g.mean for g in gaussians], "layer_whitenings": [g.whitening for g in gaussians]}


def _int64(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.int64)


def _layer_distances(batch: Batch) -> torch.Tensor:
    """Mahalanobis distance per critic and depth: ``(B, 2 * critics)``."""
    gaussians = map(Gaussian, batch.fitted["layer_means"], batch.fitted["layer_whitenings"])
    return torch.stack([g.distance(view) for g, view in zip(gaussians, batch.ensemble_layers)], dim=1)


def _mean_standardised_distance(measured: np.ndarray, scores: Mapping, fitted: Mapping[str, Any]) -> np.ndarray:
    """``(N, 2 * critics)`` layer distances -> ``(N,)``, each standardised on the calibration images."""
    mean, std = fitted["layer_standardisation"]
    return ((measured - mean) / std).mean(axis=1)


def _mean_standardised_score(measured: None, scores: Mapping[str, np.ndarray], fitted: Mapping[str, Any]) -> np.ndarray:
    """The mean of the :data:`ENSEMBLE` scores, each standardised on the calibration images."""
    return np.mean([(scores[k] - mean) / std for k, (mean, std) in fitted["standardisation"].items()], axis=0)


def _paper_score(measured: None, scores: Mapping[str, np.ndarray], fitted: Mapping[str, Any]) -> np.ndarray:
    """f-AnoGAN's ``A = A_R + kappa * A_D``, with the ``kappa`` the encoder trained with."""
    return scores["residual"] + fitted["model"].config.kappa * scores["feature_residual"]


TABLE: dict[str, Score] = {
    "combined": Score(needs=frozenset({RECONSTRUCTION}), inputs=("residual", "feature_residual"), combine=_paper_score),
    "residual": Score(
        needs=frozenset({RECONSTRUCTION}),
        measure=lambda batch: ((batch.x - batch.reconstruction) ** 2).flatten(1).mean(1)),
    "feature_residual": Score(
        needs=frozenset({RECONSTRUCTION}),
        measure=lambda batch: ((batch.features - batch.reconstruction_features) ** 2).mean(1)),
    "critic": Score(measure=lambda batch: -batch.model.critic.head(batch.features).squeeze(1)),
    "critic_feature_distance": Score(
        measure=lambda batch: batch.whitened_features.norm(dim=1),
        fit=_fit_feature_gaussian, fit_state={"feature_mean": _float32, "feature_whitening": _float32}, required=True),
    "critic_feature_knn": Score(  # in the whitened space of the Gaussian fitted just before
        measure=_knn_distance, fit=_fit_feature_reference, fit_state={"feature_reference": _float32}),
    "multi_critic_distance": Score(
        needs=frozenset({SNAPSHOTS}), measure=_layer_distances, combine=_mean_standardised_distance,
        fit=_fit_layer_gaussians, fit_state={"layer_means": _float32_list, "layer_whitenings": _float32_list},
        calibrate=lambda measured, scores: {"layer_standardisation": list(_standardised(measured))},
        calibration_state={"layer_standardisation": _float64_list}),
    "critic_map": Score(  # the image score of the feature map (anomaly.maps): its brightest 3x3 spot
        needs=frozenset({MAPS}), measure=lambda batch: maps.map_score(batch.location_map),
        fit=lambda images, fitted: images.location_gaussians(),
        fit_state={"map_channels": _int64, "map_mean": _float32, "map_whitening": _float32, "colour_field": _float32,
                   "map_norms": _as_saved}),
    "ensemble": Score(
        needs=frozenset({RECONSTRUCTION}), inputs=ENSEMBLE, combine=_mean_standardised_score,
        calibrate=lambda measured, scores: {"standardisation": {
            k: tuple(float(v) for v in _standardised(scores[k])) for k in ENSEMBLE}},
        calibration_state={"standardisation": _as_saved}),
}


def _check_table() -> None:
    """The table and the torch-free names agree; a score's needs are passes, and its inputs are other
    scores (combining none of them back) whose needs are among its own."""
    if tuple(TABLE) != SCORES or DEFAULT_SCORE not in TABLE:
        raise ImportError(f"anomaly.names.SCORES {SCORES} must list the scores of anomaly.scores.TABLE {tuple(TABLE)}")

    def check(name: str, downstream: tuple[str, ...]) -> None:
        score = TABLE[name]
        if not score.needs <= PASSES or any(i in downstream or i == name or i not in TABLE
                                             or not TABLE[i].needs <= score.needs for i in score.inputs):
            raise ImportError(f"score {name!r}: inputs {score.inputs} must be other scores, not combining it back, "
                              f"whose needs are among its own {set(score.needs)} (passes: {set(PASSES)})")
        for other in score.inputs:
            check(other, (*downstream, name))

    for name in TABLE:
        check(name, ())


_check_table()
CRITIC_ONLY = tuple(name for name, score in TABLE.items() if RECONSTRUCTION not in score.needs)


def state_loaders() -> dict[str, Load]:
    """Every key of the scores' fitted state -> how its saved value loads back."""
    return {key: load for score in TABLE.values() for key, load in {**score.fit_state, **score.calibration_state}.items()}


def available(fitted: Mapping[str, Any], passes: frozenset[str] = PASSES, calibrating: bool = False) -> list[str]:
    """The scores that ``passes`` compute, in table order: those whose needs are among ``passes``, whose
    state is in ``fitted`` (not yet their calibration state when ``calibrating``) and whose inputs are available."""
    ok: dict[str, bool] = {}

    def check(name: str) -> bool:
        if name not in ok:
            score = TABLE[name]
            keys = [*score.fit_state, *({} if calibrating else score.calibration_state)]
            ok[name] = (score.needs <= passes and all(fitted.get(k) is not None for k in keys)
                        and all(check(i) for i in score.inputs))
        return ok[name]

    return [name for name in TABLE if check(name)]


def missing_state(fitted: Mapping[str, Any], score: str, calibrating: bool = False) -> bool:
    """Whether a required score, or the selected ``score``, lacks its state in ``fitted``."""
    needed = {name for name, entry in TABLE.items() if entry.required} | {score}
    return not needed <= set(available(fitted, PASSES, calibrating))


@torch.inference_mode()
def fit_scores(model: FAnoGAN, X: np.ndarray, seed: int) -> dict[str, Any]:
    """Every score's state fitted on the normal training images ``X: (N, C, H, W)`` in [0, 1]."""
    images, state = NormalImages(model, X, seed), {}
    for score in TABLE.values():
        if score.fit is not None:
            state.update(score.fit(images, state))
    return state


def on_device(fitted: Mapping[str, Any], device: torch.device) -> Mapping[str, Any]:
    """``fitted`` with the state the measurements read (each score's ``fit_state``) as tensors on
    ``device``, moved once; on the CPU ``fitted`` itself (the arrays are wrapped batch by batch)."""
    if device.type == "cpu":
        return fitted
    keys = {key for score in TABLE.values() for key in score.fit_state}

    def move(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return to_device(torch.from_numpy(value), device)
        return [move(v) for v in value] if isinstance(value, list) else value

    return {key: move(value) if key in keys else value for key, value in fitted.items()}


@torch.inference_mode()
def _measure(fitted: Mapping[str, Any], X: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The raw values of the scores ``names`` with a ``measure`` on images ``X: (N, C, H, W)`` in [0, 1],
    by batches on the model's device; the values come back to the host."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names if TABLE[name].measure is not None}
    device = fitted["model"].device
    state = on_device(fitted, device)
    per_pass = items_per_pass(X.shape[-1], BATCH)
    for start in range(0, len(X), per_pass):
        batch = Batch(state, network_input(X[start : start + per_pass], device))
        for name, values in parts.items():
            values.append(host(TABLE[name].measure(batch)))
    return {name: np.concatenate(values) if values else np.zeros(0, np.float32) for name, values in parts.items()}


def compute(fitted: Mapping[str, Any], X: np.ndarray, passes: frozenset[str] = PASSES,
            calibrating: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every score ``passes`` compute on images ``X: (N, C, H, W)`` in [0, 1], ``(N,)`` each in table
    order, and the calibration state fitted on the way when ``calibrating`` (``X`` being held-out
    normal images; the scores are then computed with it)."""
    names = available(fitted, passes, calibrating)
    measured = _measure(fitted, X, names)
    fitted, scores, calibration = dict(fitted), {}, {}

    def value(name: str) -> np.ndarray:
        if name not in scores:
            score = TABLE[name]
            for other in score.inputs:
                value(other)
            if calibrating and score.calibrate is not None:
                state = score.calibrate(measured.get(name), scores)
                calibration.update(state)
                fitted.update(state)
            own = measured.get(name)
            scores[name] = own if score.combine is None else score.combine(own, scores, fitted)
        return scores[name]

    return {name: value(name) for name in names}, calibration
