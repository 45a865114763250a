"""Losses of the conditional GAN: the adversarial objectives (hinge, WGAN-GP), chosen once per run
with :func:`adversarial_loss`, and the regularisers (mode seeking, judge guidance, LeCam).

Scores are the critic's outputs, one per image: ``(B,)``; every loss returns a scalar tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

# critic(real_scores, fake_scores, penalty) -> loss; penalty() is the gradient penalty of the batch
CriticLoss = Callable[[torch.Tensor, torch.Tensor, Callable[[], torch.Tensor]], torch.Tensor]


def hinge_discriminator(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def wasserstein_discriminator(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return fake_scores.mean() - real_scores.mean()


def adversarial_generator_loss(fake_scores: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``-E[D(G(z))]``, the generator's loss under hinge and WGAN alike; with ``weights: (B,)`` (one
    per fake) a weighted mean, so weight-0 fakes earn nothing."""
    return -_weighted_mean(fake_scores.view(len(fake_scores), -1).mean(dim=1), weights)


@dataclass(frozen=True)
class AdversarialLoss:
    """The critic's and the generator's adversarial loss of one objective.

    ``critic(real_scores, fake_scores, penalty)``: ``penalty()`` computes the gradient penalty of the
    batch; only an objective that uses it calls it, so the hinge critic draws no interpolates."""

    critic: CriticLoss
    generator: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] = adversarial_generator_loss


def adversarial_loss(name: str, gp_weight: float) -> AdversarialLoss:
    """The objective ``name`` ("hinge" or "wgan-gp", whose penalty weighs ``gp_weight``)."""
    if name == "hinge":
        return AdversarialLoss(lambda real, fake, penalty: hinge_discriminator(real, fake))
    if name == "wgan-gp":
        return AdversarialLoss(lambda real, fake, penalty: wasserstein_discriminator(real, fake) + gp_weight * penalty())
    raise ValueError(f"loss must be 'hinge' or 'wgan-gp', got {name!r}")


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def mode_seeking(fake_a: torch.Tensor, fake_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """Mode-seeking regulariser (Mao et al. 2019): small when two latents of the same class give
    clearly different images, large when the generator collapses them onto one image.
    ``fake_a, fake_b: (B, C, H, W)`` from latents ``z_a, z_b: (B, z_dim)`` of the same labels."""
    image_gap = (fake_a - fake_b).abs().flatten(1).mean(dim=1)
    latent_gap = (z_a - z_b).abs().mean(dim=1)
    return 1.0 / ((image_gap / latent_gap).mean() + 1e-5)


def adc_critic(real_logits: torch.Tensor, real_labels: torch.Tensor, fake_logits: torch.Tensor,
               fake_labels: torch.Tensor) -> torch.Tensor:
    """The critic's classifier loss of ADC-GAN (Hou et al. 2022): ``2K`` classes, real images of
    class ``k`` are ``2k``, fakes asked for ``k`` are ``2k + 1``. ``*_logits: (B, 2K)``, ``*_labels: (B,)``."""
    return F.cross_entropy(real_logits, 2 * real_labels) + F.cross_entropy(fake_logits, 2 * fake_labels + 1)


def adc_generator(fake_logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's side of ADC-GAN: look like a real image of the asked class (``2k``) and unlike
    a fake of it (``2k + 1``), as the critic's classifier head reads it now. Unlike a frozen judge the
    head keeps learning which fakes give themselves away, so it cannot be fooled once for good.
    ``weights: (B,)`` as in :func:`adversarial_generator_loss`."""
    real = F.cross_entropy(fake_logits, 2 * labels, reduction="none")
    fake = F.cross_entropy(fake_logits, 2 * labels + 1, reduction="none")
    return _weighted_mean(real - fake, weights)


def guidance(logits: torch.Tensor, labels: torch.Tensor, confidence: float = 0.0,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """The judge's cross-entropy of the asked class, only above ``-log(confidence)``: an image the
    judge already gives at least ``confidence`` for its class adds nothing, so guidance makes a
    class recognisable without pulling every image towards the judge's most typical one.
    ``logits: (B, n_classes)``, ``labels`` and ``weights``: ``(B,)``."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    margin = -math.log(confidence) if confidence > 0 else 0.0
    return _weighted_mean(torch.relu(ce - margin), weights)


def class_feature_matching(features: torch.Tensor, labels: torch.Tensor, real_means: torch.Tensor,
                           scale: torch.Tensor) -> torch.Tensor:
    """Class-conditional feature matching (Salimans et al. 2016, per class): for each class in the
    batch, the squared distance between the mean of its fakes' judge features and the mean of its
    real images' features, in units of ``scale`` (the real features' spread), averaged over
    feature dimensions and classes. Only each class's centroid is pulled, not each image, so the
    class moves to where its real images are without collapsing onto the judge's favourite.
    ``features: (B, F)``, ``labels: (B,)``, ``real_means: (n_classes, F)``, ``scale: (F,)``."""
    classes, index = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(classes), features.shape[1], device=features.device, dtype=features.dtype)
    sums = sums.index_add(0, index, features)
    counts = torch.bincount(index, minlength=len(classes)).to(features.dtype)[:, None]
    gap = (sums / counts - real_means[classes]) / scale
    return gap.pow(2).mean()


def class_feature_support(features: torch.Tensor, labels: torch.Tensor, real_features: torch.Tensor,
                          real_labels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per fake, the squared distance (in units of ``scale``, averaged over dimensions) from its judge
    features to the nearest real image of its class: each image is pulled into its class's support,
    not to one point. ``features: (B, F)``, ``labels: (B,)``, ``real_features: (M, F)``,
    ``real_labels: (M,)``, ``scale: (F,)``."""
    gaps = torch.cdist(features / scale, real_features / scale).pow(2) / features.shape[1]
    other = labels[:, None] != real_labels[None, :]
    return gaps.masked_fill(other, float("inf")).min(dim=1).values.mean()


def lecam(real_scores: torch.Tensor, fake_scores: torch.Tensor, anchors: dict[str, float], decay: float = 0.99) -> torch.Tensor:
    """LeCam regulariser (Tseng et al. 2021): keeps the critic's outputs on real images near the moving
    average of its outputs on fakes and vice versa, so a critic trained on few images cannot drift
    into memorising them. ``anchors`` (``real``, ``fake``) holds the moving averages and is updated."""
    anchors["real"] = decay * anchors["real"] + (1 - decay) * real_scores.mean().item()
    anchors["fake"] = decay * anchors["fake"] + (1 - decay) * fake_scores.mean().item()
    return (torch.relu(real_scores - anchors["fake"]) ** 2).mean() + (torch.relu(anchors["real"] - fake_scores) ** 2).mean()
