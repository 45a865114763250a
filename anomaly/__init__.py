"""The anomaly GAN (f-AnoGAN): networks, losses, two-stage training, scores and calibration. Public
entry: :class:`GANAnomalyDetector` (scikit-learn / PyOD API; ``anomaly_map`` says where an image is
anomalous, see :mod:`anomaly.maps`); :data:`SCORES` names its scores,
:data:`DEFAULT_SCORE` is the one that flags by default and :data:`CRITIC_ONLY` those that need no reconstruction.

Imports ``gan_core`` (the shared GAN machinery), torch, numpy and scikit-learn; never
Prefect, MLflow, ``pipelines`` beyond its errors, stop flag and device choice, ``flows`` or ``gan_aug``. Arrays in, arrays out: no files.

How to add a detector score: add one :class:`~anomaly.scores.Score` to :data:`anomaly.scores.TABLE`
under its name; nothing else lists it (the command line reads the names, torch-free, from that
table's source: :data:`anomaly.names.SCORES`). The entry says

- what it needs beyond the critic's pass over ``x``: ``needs={RECONSTRUCTION}`` for ``G(E(x))``,
  ``{SNAPSHOTS}`` for the snapshot critics, ``{MAPS}`` for the per-location maps, nothing for a
  critic-only score;
- how it is computed: ``measure(batch)``, a ``(B,)`` tensor from what a
  :class:`~anomaly.scores.Batch` gives (``batch.features``, ``batch.reconstruction``, ...), and/or
  ``combine(measured, scores, fitted)`` from its measurements over all items and its ``inputs``;
- how it is fitted: ``fit(images, fitted)`` on the normal training images (e.g. a
  :class:`~anomaly.scores.Gaussian` of their features) and/or ``calibrate(measured, scores)`` on the
  held-out normal images, each returning ``{key: value}``;
- how its state is saved and loaded: the keys in ``fit_state`` / ``calibration_state``, each with the
  function that reads a saved value back. The detector keeps them as ``<key>_``, saves them in
  ``state_dict()`` and loads them in ``from_state_dict``; a detector saved before the score existed
  scores without it.

Nothing in ``detector.py`` changes: ``GANAnomalyDetector(score=<name>)`` accepts it, ``fit`` fits it,
``score_samples`` and ``score_components`` compute it (only with the passes it needs).
"""

from anomaly.names import DEFAULT_SCORE, SCORES

__all__ = ["CRITIC_ONLY", "DEFAULT_SCORE", "SCORES", "GANAnomalyDetector"]


def __getattr__(name: str):
    # torch loads when the detector or its score table is first used, not when the command line reads the names
    if name == "GANAnomalyDetector":
        from anomaly.detector import GANAnomalyDetector

        return GANAnomalyDetector
    if name == "CRITIC_ONLY":
        from anomaly.scores import CRITIC_ONLY

        return CRITIC_ONLY
    raise AttributeError(f"module 'anomaly' has no attribute {name!r}")
