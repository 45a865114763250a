"""Conditional GAN for minority-class synthesis: networks, losses, training, sampling, sample quality.
Pure torch: knows nothing of Prefect, MLflow or files."""
