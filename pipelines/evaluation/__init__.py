"""Evaluation: downstream classifiers, classification metrics, sample-quality maths and tables,
classic augmentation and the other remedies, statistics across seeds, the compare experiment,
anomaly reports and figures. Computes tables and figures; ``pipelines.tracking`` logs them, so this
package never imports ``pipelines.tracking``, mlflow, Prefect, ``gan_aug``, ``anomaly`` or ``flows`` (GANs and detectors come in as
callables or duck-typed objects)."""
