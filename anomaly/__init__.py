"""The anomaly GAN (f-AnoGAN): networks, two-stage training, scoring and calibration. Public
entry: :class:`GANAnomalyDetector` (scikit-learn / PyOD API); :data:`SCORES` names its scores,
:data:`DEFAULT_SCORE` is the one that flags by default and :data:`CRITIC_ONLY` those that need no reconstruction.

Imports ``gan_core`` (the shared GAN machinery), torch, numpy and scikit-learn; never
Prefect, MLflow, ``pipelines`` beyond its errors and stop flag, ``flows`` or ``gan_aug``. Arrays in, arrays out: no files.
"""

from anomaly.names import CRITIC_ONLY, DEFAULT_SCORE, SCORES

__all__ = ["CRITIC_ONLY", "DEFAULT_SCORE", "SCORES", "GANAnomalyDetector"]


def __getattr__(name: str):
    # torch loads when the detector is first used, not when the command line reads the score names
    if name == "GANAnomalyDetector":
        from anomaly.detector import GANAnomalyDetector

        return GANAnomalyDetector
    raise AttributeError(f"module 'anomaly' has no attribute {name!r}")
