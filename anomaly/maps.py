"""Anomaly maps: where in an image the detector sees something unlike the normal training images.

The GAN's own critic is the backbone, as a pretrained network is in PaDiM (Defard et al. 2020), so
nothing is downloaded:

- **feature map**: at every location of the critic's first stride-2 stage (half the image side,
  area-averaged to at most :data:`MAP_SIDE`), two feature vectors: the critic's (the activations of
  its first three layers there: the full-resolution layer pooled, the stage itself, the next stage
  upsampled; with more than :data:`MAP_CHANNELS` channels a seeded random subset, as PaDiM does)
  and the image's own colour there (area-averaged), the backbone's input layer. Each has a Gaussian
  per location fitted on the normal training images (mean and ridge-regularised covariance,
  accumulated batch by batch, so memory does not grow with their number); the map is the mean of
  the two Mahalanobis distances, each divided by its mean on the normal training images. The
  critic's features see shape and texture (scratches, spots); the colour Gaussian sees what an
  adversarially trained critic may ignore (stains, missing pieces of another colour): on the
  local-defect validation set the mean of both beat either alone (docs/benchmarks.md).
- **residual map**: f-AnoGAN's ``|x - G(E(x))|``, averaged over channels.

Both are upsampled (bilinear) to the image's resolution and smoothed with a Gaussian of
:func:`smoothing_sigma`; the **combined** map adds the two after dividing each by its typical value
on the normal training images. The image score ``critic_map`` (in :data:`anomaly.scores.TABLE`) is
the largest 3x3-averaged location distance of the feature map.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from anomaly.networks import Critic

MAP_SIDE = 32  # the feature map's side at most (locations are area-averaged beyond)
MAP_CHANNELS = 64  # feature channels per location at most (a seeded random subset beyond)
MAP_RIDGE = 0.01  # covariance ridge, relative to the mean variance of the location's features
KINDS = ("feature", "residual", "combined")


def spatial_features(critic: Critic, x: torch.Tensor) -> torch.Tensor:
    """``x: (B, C, H, W)`` in [-1, 1] -> ``(B, F, h, w)``: the critic's first layer (pooled to the
    first stage's side), its first stride-2 stage and the next one (upsampled), concatenated, with
    ``h = w = min(H / 2, MAP_SIDE)``."""
    body = critic.body
    first = body[1](body[0](x))
    stage = body[3](body[2](first))
    parts = [F.adaptive_avg_pool2d(first, stage.shape[-2:]), stage]
    if isinstance(body[4], torch.nn.Conv2d):  # a second stride-2 stage (images of 16 px and more)
        parts.append(F.interpolate(body[5](body[4](stage)), size=stage.shape[-2:], mode="bilinear", align_corners=False))
    features = torch.cat(parts, dim=1)
    if features.shape[-1] > MAP_SIDE:
        features = F.adaptive_avg_pool2d(features, MAP_SIDE)
    return features


def colour_features(x: torch.Tensor, side: int) -> torch.Tensor:
    """The image's own colour at each of ``side x side`` locations (area-averaged): ``(B, C, side, side)``."""
    return F.adaptive_avg_pool2d(x, side)


def map_channels(total: int, seed: int) -> np.ndarray:
    """The feature channels a map keeps: all of ``total`` up to :data:`MAP_CHANNELS`, else a seeded subset."""
    if total <= MAP_CHANNELS:
        return np.arange(total, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(total, MAP_CHANNELS, replace=False)).astype(np.int64)


class LocationGaussians:
    """A Gaussian per location of ``(B, D, h, w)`` features, accumulated batch by batch (float64 sums)."""

    def __init__(self) -> None:
        self.n, self.total, self.outer = 0, None, None

    def add(self, features: torch.Tensor) -> None:
        f = features.detach().double().flatten(2).permute(2, 0, 1)  # (L, B, D)
        total, outer = f.sum(1), torch.einsum("lbd,lbe->lde", f, f)
        self.total = total if self.total is None else self.total + total
        self.outer = outer if self.outer is None else self.outer + outer
        self.n += features.shape[0]

    def fit(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean (L, D), whitening (L, D, D))`` float32 with ``whitening`` the Cholesky factor of
        each location's precision, so ``||(f - mean) @ whitening||`` is its Mahalanobis distance."""
        if self.n < 2:
            raise ValueError("a location Gaussian needs 2 normal images or more")
        mean = self.total / self.n
        cov = (self.outer - self.n * torch.einsum("ld,le->lde", mean, mean)) / (self.n - 1)
        d = cov.shape[-1]
        scale = torch.diagonal(cov, dim1=1, dim2=2).mean(1).clamp_min(1e-12)  # (L,)
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        cov = cov + (MAP_RIDGE * scale + 1e-9)[:, None, None] * eye
        whitening = torch.linalg.cholesky(torch.linalg.inv(cov))
        return mean.float().numpy(), whitening.float().numpy()


def location_distances(features: torch.Tensor, mean: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    """``(B, D, h, w)`` features -> ``(B, h, w)`` Mahalanobis distances to each location's Gaussian."""
    b, d, h, w = features.shape
    f = features.flatten(2).permute(0, 2, 1) - mean  # (B, L, D)
    return torch.einsum("bld,lde->ble", f, whitening).norm(dim=2).view(b, h, w)


def map_score(distances: torch.Tensor) -> torch.Tensor:
    """The image score of a ``(B, h, w)`` location map: its largest 3x3 mean (one bright location
    is not enough; a defect lights up a few)."""
    return F.avg_pool2d(distances[:, None], 3, stride=1, padding=1, count_include_pad=False).flatten(1).max(1).values


def smoothing_sigma(side: int) -> float:
    """The Gaussian blur of a map at image resolution: 4 px at 256 px (PaDiM's at 224), 1 px at 64,
    at least 0.5 px."""
    return max(0.5, side / 64)


def _blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, H, W)`` maps (reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = maps[:, None]
    pad = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    if pad < radius:  # a map smaller than the kernel: blur with what fits
        kernel, radius = kernel[radius - pad : radius + pad + 1], pad
        kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def to_image(location_map: torch.Tensor, side: int) -> torch.Tensor:
    """``(B, h, w)`` -> ``(B, side, side)``: bilinear upsampling, then the Gaussian of :func:`smoothing_sigma`."""
    up = F.interpolate(location_map[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0]
    return _blur(up, smoothing_sigma(side))


def residual_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """``|x - G(E(x))|`` averaged over channels, ``(B, H, W)``, smoothed like the feature map."""
    return _blur((x - reconstruction).abs().mean(1), smoothing_sigma(x.shape[-1]))


def combine(maps: Mapping[str, torch.Tensor], norms: Mapping[str, Any]) -> torch.Tensor:
    """The combined map: feature and residual maps, each divided by its typical value on the normal
    training images (``norms``: the mean of each map over them), added."""
    return maps["feature"] / float(norms["feature"]) + maps["residual"] / float(norms["residual"])
