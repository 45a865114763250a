"""The conditional GAN for minority-class synthesis: networks, losses, the training loop and
sampling. Public entry: :class:`GANOverSampler` (imbalanced-learn API); :class:`GANConfig` holds
its further settings.

Imports ``gan_core`` (the shared GAN machinery), torch, numpy and imbalanced-learn;
never Prefect, MLflow, ``pipelines`` beyond its errors and stop flag, ``flows`` or ``anomaly``. Tensors in, tensors out: no files.
"""

from gan_aug.config import GANConfig

__all__ = ["GANConfig", "GANOverSampler"]


def __getattr__(name: str):
    # torch loads when the sampler is first used, not when the command line reads the defaults
    if name == "GANOverSampler":
        from gan_aug.sampler import GANOverSampler

        return GANOverSampler
    raise AttributeError(f"module 'gan_aug' has no attribute {name!r}")
