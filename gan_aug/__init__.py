"""The conditional GAN for minority-class synthesis: networks, losses, the training loop and
sampling. Public entry: :class:`GANOverSampler` (imbalanced-learn API, one parameter per
:class:`GANConfig` field); :class:`GANConfig` holds the settings a training run takes.

Imports ``gan_core`` (the shared GAN machinery), torch, numpy, imbalanced-learn and scikit-learn's
parameter validation; never Prefect, MLflow, ``pipelines`` beyond its errors, stop flag and device choice, ``flows``
or ``anomaly``. Tensors in, tensors out: no files.
"""

from gan_aug.config import GANConfig

__all__ = ["GANConfig", "GANOverSampler"]


def __getattr__(name: str):
    # torch loads when the sampler is first used, not when the command line reads the defaults
    if name == "GANOverSampler":
        from gan_aug.sampler import GANOverSampler

        return GANOverSampler
    raise AttributeError(f"module 'gan_aug' has no attribute {name!r}")
