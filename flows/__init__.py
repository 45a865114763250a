"""Orchestration: one parameter model per job (``params``), the Prefect flows that compose the
library's steps (``augment``, ``compare``, ``detector``, ``demo``, the scored ``inbox``), ``serve`` with
its deployments, the server processes (``servers``), and the ``ganpipe`` CLI generated from the parameter models (``cli``). No maths here; may import
every library package (``pipelines``, ``gan_aug``, ``anomaly``) but never ``gan_core`` directly,
mlflow (tracking goes through ``pipelines.tracking``) or ``benchmarks``."""
