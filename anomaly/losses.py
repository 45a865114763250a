"""f-AnoGAN's losses (Schlegl et al. 2019): WGAN-GP for stage 1, izi_f for the encoder of stage 2.

Images are ``(N, C, H, W)`` in [-1, 1]; each loss is a scalar tensor to minimise. The gradient
penalty of the critic is :func:`gan_core.regularisers.gradient_penalty` (both GAN families use it).
The networks' passes run under :func:`pipelines.devices.autocast` of the inputs' device (bf16 on
CUDA, nothing elsewhere); the losses are taken in float32 outside it (``.float()`` is a no-op on the
CPU, whose numbers do not change).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anomaly.networks import AnoGenerator, Critic, Encoder
from pipelines.devices import autocast


def critic_loss(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The WGAN critic's ``mean D(fake) - mean D(real)`` (the gradient penalty is weighted and added apart)."""
    with autocast(real.device):
        on_fake, on_real = critic(fake), critic(real)
    return on_fake.float().mean() - on_real.float().mean()


def generator_loss(critic: Critic, fake: torch.Tensor) -> torch.Tensor:
    """The WGAN generator's ``-mean D(G(z))`` for generated images ``fake = G(z)``."""
    with autocast(fake.device):
        on_fake = critic(fake)
    return -on_fake.float().mean()


def izif_loss(generator: AnoGenerator, critic: Critic, encoder: Encoder, x: torch.Tensor,
              kappa: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """izi_f of the encoder: ``||x - G(E(x))||^2 / n + kappa * ||f(x) - f(G(E(x)))||^2 / n_f``, with
    ``f`` the critic's feature layer and ``n``, ``n_f`` the pixel and feature counts. Returns
    ``(loss, image residual, feature residual)``."""
    with autocast(x.device):
        rec = generator(encoder(x))
        rec_features, features = critic.features(rec), critic.features(x)
    image_residual = F.mse_loss(rec.float(), x)
    feature_residual = F.mse_loss(rec_features.float(), features.float())
    return image_residual + kappa * feature_residual, image_residual, feature_residual
