"""Orchestration: one parameter model per job (``params``), the Prefect flows that compose the
library's steps (``augment``, ``compare``, ``detector``, ``demo``, ``serve`` with the deployments),
and the ``ganpipe`` CLI generated from the parameter models (``cli``). No maths here; may import
every library package (``pipelines``, ``gan_aug``, ``anomaly``) but never ``gan_core`` directly,
mlflow (tracking goes through ``pipelines.tracking``) or ``benchmarks``."""
