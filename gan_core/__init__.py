"""Shared GAN machinery: what both GAN families use and neither owns.

Owns: the stage and crop helpers of the networks (``layers``), the gradient penalty, DiffAugment
and the EMA update (``regularisers``), checkpoints that a later run resumes from (``checkpoint``)
and the base training config with the epochs-to-steps conversion (``config``).
Imports torch and numpy only: never Prefect, MLflow, ``pipelines``, ``gan_aug``, ``anomaly`` or ``flows``.
"""
