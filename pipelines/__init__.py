"""The shared steps of ganpipe, in four sub-packages:

- ``pipelines.data``: data sources, the one image decoder/resizer/channel converter, new batches,
  splits, the class-spec parser and the export of synthetic datasets;
- ``pipelines.evaluation``: downstream classifiers, metrics (sample-quality maths included),
  classic augmentation and the other remedies, statistics, the compare experiment (the GAN comes in
  as a callable), anomaly reports and figures;
- ``pipelines.tracking``: MLflow runs and the model registry, the only code that imports mlflow,
  and fitted state saved as plain tensors and JSON for the registry (``safe_state``).

The classifiers build their models with the thread-safe seeded construction of ``gan_core``.

Never imports Prefect, ``gan_aug``, ``anomaly``, ``flows`` or ``benchmarks``.
"""
