from __future__ import annotations

import torch

from anomaly.losses import critic_loss, generator_loss, izif_loss
from anomaly.networks import AnoGenerator, Critic, Encoder


def test_losses_are_the_wgan_and_izi_f_formulas():
    torch.manual_seed(0)
    generator, critic, encoder = AnoGenerator(4, 1, 8, 4).eval(), Critic(1, 8, 4), Encoder(4, 1, 8, 4)
    real, fake = torch.rand(6, 1, 8, 8) * 2 - 1, torch.rand(6, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(critic_loss(critic, real, fake), critic(fake).mean() - critic(real).mean())
    torch.testing.assert_close(generator_loss(critic, fake), -critic(fake).mean())
    loss, image_residual, feature_residual = izif_loss(generator, critic, encoder, real, kappa=0.5)
    rec = generator(encoder(real))
    torch.testing.assert_close(image_residual, ((real - rec) ** 2).mean())
    torch.testing.assert_close(feature_residual, ((critic.features(real) - critic.features(rec)) ** 2).mean())
    torch.testing.assert_close(loss, image_residual + 0.5 * feature_residual)
