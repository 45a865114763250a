"""Class-conditional generator and projection discriminator for images from 8x8 to 256x256
(stages and capped widths as :mod:`gan_core.layers` says).

Images are ``(N, C, H, W)`` in [-1, 1]; labels are int64 ``(N,)`` in ``[0, n_classes)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from gan_aug.config import CRITIC_CONTRASTS
from gan_core.layers import WIDEST, center_crop, stage_widths, upsampling_stages


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class."""

    def __init__(self, num_features: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(n_classes, num_features)
        self.bias = nn.Embedding(n_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.gain(y)[:, :, None, None] * self.norm(x) + self.bias(y)[:, :, None, None]


class SharedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with one scale and shift for every class: takes the labels and ignores them."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ARG002
        return super().forward(x)


def _norm(num_features: int, n_classes: int, conditional: bool) -> nn.Module:
    return ConditionalBatchNorm2d(num_features, n_classes) if conditional else SharedBatchNorm2d(num_features)


class _UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_classes: int, conditional: bool = True) -> None:
        super().__init__()
        self.norm = _norm(c_in, n_classes, conditional)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(x, y))
        return self.conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    """``G(z, y)``: ``z: (N, z_dim)``, ``y: (N,)`` -> images ``(N, channels, size, size)`` in [-1, 1].

    The class enters twice: an embedding joined to ``z`` and class-conditional BatchNorm in every block.
    With ``class_latents`` it enters a third time, BAGAN-style: a standard normal ``z`` is first mapped
    to the class's latent Gaussian, ``latent_mean[y] + latent_factor[y] @ z`` (buffers that
    :func:`~gan_aug.train.pretrain_autoencoder` fills from an autoencoder of every class);
    :meth:`decode` takes such a latent code directly.

    ``class_norms`` (None: all) is how many of the BatchNorms, from the coarsest block's to the
    output's, take the class; the finer ones share one scale and shift across classes, so that the
    class has to enter through the layout (coarse maps) rather than through what fine maps set
    alike in every class (colour, texture).
    """

    def __init__(self, n_classes: int, channels: int, size: int, z_dim: int = 64, width: int = 32,
                 class_latents: bool = False, class_norms: int | None = None) -> None:
        super().__init__()
        self.class_latents = class_latents
        if class_latents:
            self.register_buffer("latent_mean", torch.zeros(n_classes, z_dim))
            self.register_buffer("latent_factor", torch.eye(z_dim).repeat(n_classes, 1, 1))
        self.n_classes, self.channels, self.size, self.z_dim = n_classes, channels, size, z_dim
        stages = upsampling_stages(size)
        self.base = math.ceil(size / 2**stages)
        widths = stage_widths(width, stages)
        self.embed = nn.Embedding(n_classes, z_dim)
        self.project = nn.Linear(2 * z_dim, widths[0] * self.base * self.base)
        conditional = [class_norms is None or i < class_norms for i in range(stages + 1)]
        self.blocks = nn.ModuleList(_UpBlock(widths[i], widths[i + 1], n_classes, conditional[i]) for i in range(stages))
        self.out_norm = _norm(widths[-1], n_classes, conditional[-1])
        self.out_conv = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self._first_width = widths[0]

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.class_latents:
            z = self.latent_mean[y] + torch.bmm(self.latent_factor[y], z[:, :, None]).squeeze(2)
        return self.decode(z, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images of latent codes ``z: (N, z_dim)`` as they are (no class prior)."""
        h = self.project(torch.cat([z, self.embed(y)], dim=1))
        h = h.view(len(z), self._first_width, self.base, self.base)
        for block in self.blocks:
            h = block(h, y)
        h = torch.tanh(self.out_conv(torch.relu(self.out_norm(h, y))))
        return center_crop(h, self.size)


class Encoder(nn.Module):
    """``E(x)``: images ``(N, C, size, size)`` in [-1, 1] -> latent codes ``(N, z_dim)``; the
    discriminator's stages (stride-2 convolutions, widths capped alike) with BatchNorm instead of
    spectral normalisation. It trains with the generator as its decoder
    (:func:`~gan_aug.train.pretrain_autoencoder`)."""

    def __init__(self, channels: int, size: int, z_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        c, side = width, size
        for _ in range(upsampling_stages(size)):
            wider = min(2 * c, width * WIDEST)
            layers += [nn.Conv2d(c, wider, 4, stride=2, padding=1), nn.BatchNorm2d(wider), nn.LeakyReLU(0.2)]
            c, side = wider, side // 2
        # the whole smallest map (at most 8x8), not its average: the decoder needs to know where things are
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c * side * side, z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _critic_features(channels: int, size: int, width: int) -> tuple[nn.Sequential, int]:
    """The critic's stride-2 stages (spectral norm, widths capped) -> (features, their width)."""
    layers: list[nn.Module] = [spectral_norm(nn.Conv2d(channels, width, 3, padding=1)), nn.LeakyReLU(0.2)]
    c = width
    for _ in range(upsampling_stages(size)):
        wider = min(2 * c, width * WIDEST)
        layers += [spectral_norm(nn.Conv2d(c, wider, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        c = wider
    layers += [spectral_norm(nn.Conv2d(c, c, 3, padding=1)), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers), c


class Discriminator(nn.Module):
    """Projection discriminator (Miyato & Koyama 2018) with spectral normalisation.

    ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``, one unbounded score per image.

    ``contrast`` (:data:`CRITIC_CONTRASTS`): ``"channel"`` gives ``phi`` :func:`contrast_view` of the
    image as one more input channel; ``"class"`` computes the class term on the contrast view alone,
    ``<embed(y), phi_s(contrast_view(x))>`` with a second tower ``phi_s``, so the critic can tell the
    classes apart only by shape, while ``psi(phi(x))`` still judges the colours (for folders where
    colours vary inside every class and a rare class's few images each have their own).
    """

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 32, classifier: bool = False,
                 contrast: str = "off") -> None:
        super().__init__()
        if contrast not in CRITIC_CONTRASTS:
            raise ValueError(f"contrast must be one of {CRITIC_CONTRASTS}, got {contrast!r}")
        self.contrast = contrast
        self.features, c = _critic_features(channels + int(contrast == "channel"), size, width)
        self.linear = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, c))
        # built last, so that the layers above draw the same initial weights with or without them
        self.classify = spectral_norm(nn.Linear(c, 2 * n_classes)) if classifier else None
        self.shape_features = _critic_features(1, size, width)[0] if contrast == "class" else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scores(x, y)[0]

    def scores(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(D(x, y): (N,), logits: (N, 2 * n_classes) or None)``: with the classifier head (ADC-GAN,
        Hou et al. 2022), logits over "real of class k" (``2k``) and "fake of class k" (``2k + 1``)
        from the same pooled features."""
        view = contrast_view(x).to(x.dtype) if self.contrast != "off" else None
        h = self.features(torch.cat([x, view], dim=1) if self.contrast == "channel" else x).sum(dim=(2, 3))
        shape = self.shape_features(view).sum(dim=(2, 3)) if self.shape_features is not None else h
        score = self.linear(h).squeeze(1) + (self.embed(y) * shape).sum(dim=1)
        return score, (self.classify(h) if self.classify is not None else None)



VIEW = 32  # the side the judge looks at: larger images are area-averaged down to it


def contrast_view(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``(N, 1, H, W)``: how far each pixel of ``x: (N, C, H, W)`` is from its image's mean, in that
    image's own standard deviations, averaged over the channels as absolute values, minus 1. Which
    colour is the stroke and which the ground, and which channel carries it, drop out: a digit
    drawn red on blue and one drawn yellow on black give the same view."""
    x = x.float()
    standard = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + eps)
    return standard.abs().mean(dim=1, keepdim=True) - 1.0


class Judge(nn.Module):
    """Class judge ``J(x)``: images ``(N, C, H, W)`` in [-1, 1] -> class logits ``(N, n_classes)``.

    Trained on the real training images only; it steers the generator towards the class it is asked
    for and ranks candidates when sampling (label-consistency filtering).
    """

    def __init__(self, n_classes: int, channels: int, width: int = 32, size: int = 8, view: int | None = None,
                 contrast: bool = False) -> None:
        super().__init__()
        # with ``contrast`` it also sees :func:`contrast_view` of the image as one more channel
        self.contrast = contrast
        channels += int(contrast)
        # it looks at images area-averaged to ``view`` px a side (VIEW by default: what recognising the
        # class needs, at a cost that does not grow with the image); smaller images as they are
        self.view = min(size, VIEW if view is None else view)
        self.shrink = nn.AdaptiveAvgPool2d(self.view) if self.view < size else nn.Identity()
        # stride-2 stages down to 2x2 or less, so the pooled features see the whole object, not only
        # local strokes: a judge of local texture is easy for the generator to fool (on 28x28 MNIST a
        # two-stage judge recognised 0% of a held-out class)
        layers = [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        c_in, side = width, self.view
        while side > 2:
            layers += [nn.Conv2d(c_in, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU()]
            c_in, side = 2 * width, (side + 1) // 2
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(N, 2 * width)`` the head classifies."""
        if self.contrast:
            x = torch.cat([x, contrast_view(x).to(x.dtype)], dim=1)
        return self.body(self.shrink(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
