"""Tracking: the only code that imports mlflow. ``runs`` decides the store, experiment names, run
tags and how params, metrics, figures and tables are logged; ``registry`` stores fitted estimators
as plain data in pyfunc models logged from code (``logged_detector``, ``logged_generator``), registers them, moves aliases and
loads them back without unpickling (``safe_state``); ``comparison`` and ``monitoring`` log what
``pipelines.evaluation`` computed for a comparison and for a model's scored batches. Never imports Prefect, ``gan_aug``, ``anomaly`` or ``flows``."""
