"""Shared GAN machinery: what both GAN families use and neither owns.

Owns: the stage and crop helpers of the networks (``layers``), the gradient penalty, DiffAugment
and the EMA update (``regularisers``), checkpoints that a later run resumes from (``checkpoint``)
the base training config with the epochs-to-steps conversion (``config``), model
construction that stays reproducible when models train in parallel threads (``seeding``), and
fitted state saved as plain tensors and JSON that loads without unpickling objects (``safe_state``).
Lives in ``pipelines`` because both families may import ``pipelines`` but not each other.
Imports torch and numpy only: never Prefect, MLflow, the other ``pipelines`` sub-packages,
``gan_aug``, ``anomaly`` or ``flows``.
"""
