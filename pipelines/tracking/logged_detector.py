"""The code MLflow logs as a registered ganpipe detector (models from code: no pickled wrapper). Loading
the model runs this file; the estimator itself comes from the ``estimator`` artifact folder as
plain data (see :mod:`pipelines.tracking.registry`)."""

from mlflow.models import set_model

from pipelines.tracking.registry import LoggedDetector

set_model(LoggedDetector())
