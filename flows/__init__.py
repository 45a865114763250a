"""Prefect flows, deployments and the ``ganpipe`` CLI. Orchestration only: no maths here."""
