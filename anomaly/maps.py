"""Anomaly maps: where in an image the detector sees something unlike the normal training images.

The GAN's own critic is the backbone, as a pretrained network is in PaDiM (Defard et al. 2020), so
nothing is downloaded:

- **feature map**: at every location of the critic's first stride-2 stage (half the image side,
  area-averaged to at most :data:`MAP_SIDE`), two distances. The critic's features there (the
  activations of its first three layers: the full-resolution layer pooled, the stage itself, the
  next stage upsampled; with more than :data:`MAP_CHANNELS` channels a seeded random subset, as
  PaDiM does) have a Gaussian per location fitted on the normal training images (mean and
  ridge-regularised covariance, accumulated batch by batch, so memory does not grow with their
  number): their Mahalanobis distance. The image's own colours, the backbone's input layer, are
  measured pixel by pixel: the distance of each pixel's colour to the nearest of
  :data:`COLOUR_BANK` pixel colours drawn from the normal training images (a nearest-neighbour
  density, which follows the curved, many-moded colour distribution of a real surface where a
  Gaussian does not), read from a :func:`colour_field` precomputed on a grid of colours, so a
  pixel costs a few lookups; averaged over each location's pixels. The map is the mean of the two
  distances, each divided by its mean on the normal training images. The critic's features see
  shape and texture; the colour distance sees the pixels no normal image has (stains, missing
  pieces, spots of another colour), which an adversarially trained critic may ignore. On the
  local-defect benchmark's validation defects the mean of both (image AUROC 1.000) is level with
  the colour distance alone (0.999) and above the critic's alone (0.939) and the colour Gaussian
  it replaced (0.915); docs/anomaly-maps.md has the table and the command.
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
COLOUR_BANK = 30_000  # normal training pixels the colour distance measures against (a seeded draw)
COLOUR_GRID = 64**3  # vertices of the colour field at most: 64 per side for RGB, 1024 (the cap) for grey
COLOUR_NORM_FLOOR = 1e-3  # the colour distance's normal scale at least (grey digits: every level is normal)


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


def colour_grid_side(channels: int) -> int:
    """Vertices per colour axis of the :func:`colour_field` of ``channels``-channel images."""
    return max(2, min(1024, int(round(COLOUR_GRID ** (1 / channels)))))


class PixelDraw:
    """A seeded draw of at most :data:`COLOUR_BANK` pixels, uniform over every pixel of ``n`` images
    of ``pixels_per_image``, collected batch by batch (images in order) so the images are never all
    in memory at once."""

    def __init__(self, n: int, pixels_per_image: int, seed: int) -> None:
        total = n * pixels_per_image
        pick = np.random.default_rng(seed).choice(total, min(COLOUR_BANK, total), replace=False)
        self.pick, self.start, self.parts = np.sort(pick), 0, []

    def add(self, x: torch.Tensor) -> None:
        """The next images ``(B, C, H, W)``: their drawn pixels' colours are kept."""
        pixels = x.detach().permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        lo, hi = np.searchsorted(self.pick, [self.start, self.start + len(pixels)])
        self.parts.append(pixels[torch.from_numpy(self.pick[lo:hi] - self.start).to(pixels.device)].float().cpu().numpy())
        self.start += len(pixels)

    def colours(self) -> np.ndarray:
        """``(P, C)`` float32: the drawn pixels' colours."""
        return np.concatenate(self.parts)


def colour_field(colours: np.ndarray) -> np.ndarray:
    """The distance from every vertex of a regular grid over the colour cube ``[-1, 1]^C`` to the
    nearest of ``colours: (P, C)`` (a k-d tree; exact up to the snap below), ``(g,) * C`` float32 with ``g =``
    :func:`colour_grid_side`: the colour distance of any pixel is then a multilinear interpolation."""
    from scipy.spatial import cKDTree

    channels = colours.shape[1]
    if not 1 <= channels <= 3:
        raise ValueError(f"colour maps need 1 to 3 channels, got {channels}")
    side = colour_grid_side(channels)
    # colours snapped to a quarter of the grid step and deduplicated: a k-d tree over colours packed on
    # a curve (a grey texture tinted) is slow to query from far away, and the snap moves a distance by
    # at most an eighth of the step per axis, below the interpolation's own error
    quantum = 2.0 / (side - 1) / 4
    snapped = np.unique(np.round(colours.astype(np.float64) / quantum), axis=0) * quantum
    axis = np.linspace(-1.0, 1.0, side)
    vertices = np.stack(np.meshgrid(*[axis] * channels, indexing="ij"), axis=-1).reshape(-1, channels)
    distances, _ = cKDTree(snapped).query(vertices, k=1)
    return distances.reshape((side,) * channels).astype(np.float32)


def colour_distances(x: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """``x: (B, C, H, W)`` in [-1, 1] -> ``(B, H, W)``: each pixel's distance to the nearest normal
    colour, multilinearly interpolated in ``field`` (:func:`colour_field`), on ``x``'s device (plain
    gathers, so every backend runs it)."""
    b, c, h, w = x.shape
    side = field.shape[0]
    position = ((x.permute(0, 2, 3, 1).reshape(-1, c).float() + 1) * 0.5 * (side - 1)).clamp(0, side - 1)
    low = position.floor().clamp(max=side - 2).long()
    frac = position - low
    flat, strides = field.reshape(-1), [side ** (c - 1 - k) for k in range(c)]
    out = torch.zeros(len(position), dtype=torch.float32, device=x.device)
    for corner in range(2**c):
        index, weight = torch.zeros_like(low[:, 0]), torch.ones_like(frac[:, 0])
        for k in range(c):
            up = (corner >> k) & 1
            index = index + (low[:, k] + up) * strides[k]
            weight = weight * (frac[:, k] if up else 1 - frac[:, k])
        out += weight * flat[index]
    return out.view(b, h, w)


def colour_location_distances(x: torch.Tensor, field: torch.Tensor, side: int) -> torch.Tensor:
    """The colour distances of :func:`colour_distances`, area-averaged over each of ``side x side``
    locations: ``(B, side, side)``."""
    return F.adaptive_avg_pool2d(colour_distances(x, field)[:, None], side)[:, 0]


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
