"""The anomaly GAN (f-AnoGAN): networks, two-stage training, scoring and calibration. Public
entry: :class:`GANAnomalyDetector` (scikit-learn / PyOD API); :data:`SCORES` names its scores.

Imports ``pipelines.gan_core`` (the shared GAN machinery), torch, numpy and scikit-learn; never
Prefect, MLflow, the rest of ``pipelines``, ``flows`` or ``gan_aug``. Arrays in, arrays out: no files.
"""

from anomaly.detector import SCORES, GANAnomalyDetector

__all__ = ["SCORES", "GANAnomalyDetector"]
