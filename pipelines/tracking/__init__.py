"""Tracking: the only code that imports mlflow. ``runs`` decides the store, experiment names, run
tags and how params, metrics, figures and tables are logged; ``registry`` wraps fitted estimators
as pyfunc models, registers them, moves aliases and loads them back. Never imports Prefect,
``gan_aug``, ``anomaly`` or ``flows``."""
