"""The settings every GAN training loop here shares, and how epochs become steps."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GANTrainingConfig:
    """Base hyperparameters of both GAN families. ``width`` sets the channel count of the networks,
    ``critic_steps`` the critic (discriminator) updates per generator update, ``gp_weight`` the
    weight of the gradient penalty; ``seed`` drives every random draw of a run."""

    batch_size: int = 64
    width: int = 16
    gp_weight: float = 10.0
    critic_steps: int = 1
    checkpoint_every: int = 200
    seed: int = 0


def steps_for_epochs(epochs: float, n_items: int, batch_size: int) -> int:
    """Updates that show the networks ``epochs`` passes over ``n_items`` real images."""
    return max(1, math.ceil(epochs * n_items / batch_size))


FULL_BATCH_SIDE = 32  # up to this side a training step takes batch_size images


def batch_for_side(batch_size: int, side: int) -> int:
    """Images per training step for ``side x side`` images: ``batch_size`` up to 32 px, scaled by
    ``32 / side`` above (64 px: half, 256 px: an eighth; at least 8, never more than asked), so that
    with the capped network widths of :mod:`gan_core.layers` a step's cost grows with the side,
    not with its square."""
    if side <= FULL_BATCH_SIDE:
        return batch_size
    return min(batch_size, max(8, batch_size * FULL_BATCH_SIDE // side))
