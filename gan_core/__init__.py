"""Shared GAN machinery: what both GAN families use and neither owns.

Owns: the stage and crop helpers of the networks (``layers``), the gradient penalty, DiffAugment
and the EMA update (``regularisers``), checkpoints that a later run resumes from (``checkpoint``),
the base training config with the epochs-to-steps conversion (``config``) and model construction
that stays reproducible when models train in parallel threads (``seeding``, which the downstream
classifiers of ``pipelines.evaluation`` use too).
A top-level package beside the two families, because each family may import it but not the other.
Imports torch and numpy only: never Prefect, MLflow, ``pipelines.data``, ``pipelines.evaluation``,
``pipelines.tracking``, ``gan_aug``, ``anomaly`` or ``flows``.
"""
