"""Shared steps of ganpipe: data sources and validation, classic augmentation, downstream
classifiers, metrics and MLflow tracking. Knows nothing of Prefect or GAN internals."""
