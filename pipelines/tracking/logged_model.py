"""The code of model versions registered before the typed ones (models from code). Loading
the model runs this file; the estimator itself comes from the ``estimator`` artifact folder as
plain data (see :mod:`pipelines.tracking.registry`)."""

from mlflow.models import set_model

from pipelines.tracking.registry import LoggedEstimator

set_model(LoggedEstimator())
