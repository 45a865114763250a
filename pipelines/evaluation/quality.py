"""Sample-quality measures that need no download: they work in the feature space of a network
trained here on the real training split, and in pixel space for memorisation.

All functions take plain arrays: features ``(N, D)``, images ``(N, C, H, W)`` in [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``tr sqrt(C_r C_f)`` is computed as ``sum sqrt(eig(S C_f S))`` with ``S = sqrt(C_r)``, which stays
    exact when the covariances are singular (fewer items than feature dimensions).
    """
    if min(len(real), len(fake)) < 2:
        raise ValueError("the Fréchet distance needs at least 2 items in each set")
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    cov_r = np.atleast_2d(np.cov(real, rowvar=False))
    cov_f = np.atleast_2d(np.cov(fake, rowvar=False))
    w, v = linalg.eigh(cov_r)
    root_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(linalg.eigvalsh(root_r @ cov_f @ root_r), 0, None)).sum()
    return float(max(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r) + np.trace(cov_f) - 2 * cross, 0.0))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def precision_recall_density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """k-NN manifold metrics (Kynkäänniemi et al. 2019; Naeem et al. 2020).

    precision: share of fake items inside some real item's k-NN ball (fidelity);
    recall: share of real items inside some fake item's k-NN ball (diversity);
    density: how many real balls hold each fake item, divided by k (about 1 when matched);
    coverage: share of real items whose k-NN ball holds at least one fake item.
    ``k`` is lowered to ``min(n) - 1`` for tiny sets; with fewer than 2 items on a side all are NaN.
    """
    if min(len(real), len(fake)) < 2:
        return {key: float("nan") for key in ("precision", "recall", "density", "coverage")}
    k = max(1, min(k, len(real) - 1, len(fake) - 1))
    real_real = _pairwise(real, real)
    fake_fake = _pairwise(fake, fake)
    real_fake = _pairwise(real, fake)
    real_radius = np.sort(real_real, axis=1)[:, k]  # column 0 is the item itself
    fake_radius = np.sort(fake_fake, axis=1)[:, k]
    inside_real = real_fake < real_radius[:, None]  # (real, fake)
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((real_fake < fake_radius[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((real_fake.min(axis=1) < real_radius).mean()),
    }


def label_agreement(predicted: np.ndarray, conditioned: np.ndarray) -> float:
    """Share of synthetic items a classifier assigns to the class they were generated for."""
    return float((np.asarray(predicted) == np.asarray(conditioned)).mean()) if len(predicted) else float("nan")


def memorisation(fake: np.ndarray, train: np.ndarray, quantile: float = 0.05) -> dict[str, float]:
    """Distance from each synthetic image to its nearest real training image (RMS over pixels).

    A synthetic image is a near-duplicate when it is closer to a training image than the
    ``quantile`` of distances between each real training image and its nearest *other* real
    training image of the same set. Returns the median nearest distance, the threshold and the
    share of near-duplicates.
    """
    f = fake.reshape(len(fake), -1).astype(np.float64)
    t = train.reshape(len(train), -1).astype(np.float64)
    scale = np.sqrt(f.shape[1])
    nearest = _pairwise(f, t).min(axis=1) / scale
    if len(t) >= 2:
        real_real = _pairwise(t, t) / scale
        np.fill_diagonal(real_real, np.inf)
        threshold = float(np.quantile(real_real.min(axis=1), quantile))
    else:
        threshold = 0.0
    return {
        "nn_distance_median": float(np.median(nearest)),
        "duplicate_threshold": threshold,
        "near_duplicate_share": float((nearest < threshold).mean()),
    }
