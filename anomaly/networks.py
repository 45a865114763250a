"""f-AnoGAN networks: generator, critic (with a feature head) and encoder.

Images are ``(N, C, H, W)`` in [-1, 1]; latents are ``(N, latent_dim)`` in [-1, 1] (uniform prior,
as in Schlegl et al. 2019, so the encoder ends in tanh).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_core.layers import WIDEST, center_crop, stage_widths, upsampling_stages


class AnoGenerator(nn.Module):
    """``G(z)``: ``(N, latent_dim)`` -> ``(N, channels, size, size)`` in [-1, 1]."""

    def __init__(self, latent_dim: int, channels: int, size: int, width: int = 16) -> None:
        super().__init__()
        stages = upsampling_stages(size)
        self.size, self.base = size, math.ceil(size / 2**stages)
        widths = stage_widths(width, stages)
        self.first = widths[0]
        self.project = nn.Sequential(nn.Linear(latent_dim, widths[0] * self.base**2), nn.BatchNorm1d(widths[0] * self.base**2), nn.ReLU(True))
        layers: list[nn.Module] = []
        for i in range(stages):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(widths[i], widths[i + 1], 3, padding=1),
                       nn.BatchNorm2d(widths[i + 1]), nn.ReLU(True)]
        layers += [nn.Conv2d(widths[-1], channels, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return center_crop(self.body(self.project(z).view(len(z), self.first, self.base, self.base)), self.size)


def _downsampling(channels: int, size: int, width: int) -> tuple[nn.Sequential, int]:
    """Strided convolutions with LeakyReLU (no batch norm: WGAN-GP penalises per-sample gradients)."""
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2, True)]
    c = width
    for _ in range(upsampling_stages(size)):
        wider = min(2 * c, width * WIDEST)
        layers += [nn.Conv2d(c, wider, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        c = wider
    layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten()]
    return nn.Sequential(*layers), c * 16


class Critic(nn.Module):
    """WGAN critic. ``features(x)`` is the layer f-AnoGAN compares (``(N, F)``); ``forward`` the score."""

    def __init__(self, channels: int, size: int, width: int = 16) -> None:
        super().__init__()
        self.body, self.feature_dim = _downsampling(channels, size, width)
        self.head = nn.Linear(self.feature_dim, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def layer_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(first, f(x))``: the first layer's activations (local strokes at full resolution) pooled to
        4x4, ``(N, width * 16)``, and the feature layer ``f(x)``, from one pass."""
        first = self.body[:2](x)
        return torch.nn.functional.adaptive_avg_pool2d(first, 4).flatten(1), self.body[2:](first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


class Encoder(nn.Module):
    """``E(x)``: images -> latents in [-1, 1] (the inverse mapping of ``G``)."""

    def __init__(self, latent_dim: int, channels: int, size: int, width: int = 16) -> None:
        super().__init__()
        self.body, dim = _downsampling(channels, size, width)
        self.head = nn.Sequential(nn.Linear(dim, latent_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
