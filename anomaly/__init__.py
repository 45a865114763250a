"""The anomaly GAN (f-AnoGAN): networks, two-stage training, scoring and calibration. Public
entry: :class:`GANAnomalyDetector` (scikit-learn / PyOD API); :data:`SCORES` names its scores,
:data:`DEFAULT_SCORE` is the one that flags by default and :data:`CRITIC_ONLY` those that need no reconstruction.

Imports ``pipelines.gan_core`` (the shared GAN machinery), torch, numpy and scikit-learn; never
Prefect, MLflow, the rest of ``pipelines``, ``flows`` or ``gan_aug``. Arrays in, arrays out: no files.
"""

from anomaly.detector import CRITIC_ONLY, DEFAULT_SCORE, SCORES, GANAnomalyDetector

__all__ = ["CRITIC_ONLY", "DEFAULT_SCORE", "SCORES", "GANAnomalyDetector"]
