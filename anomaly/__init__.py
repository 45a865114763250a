"""Anomaly GAN (f-AnoGAN): networks, training stages, scoring, calibration.
Pure torch: knows nothing of Prefect, MLflow or files."""
