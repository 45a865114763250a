"""The demo job: augment + compare on an embedded dataset, sized to finish in a few minutes."""

from __future__ import annotations

from prefect import flow

from flows.augment import augment_flow
from flows.common import flow_run_name
from flows.compare import compare_flow
from flows.params import AugmentParams, CompareParams, DemoParams

FULL = {"data": "mnist5k", "gan_steps": 400, "epochs": 4, "seeds": 2,
        "arms": "none,class_weight,ros,smote,albumentations,gan", "classifier": "cnn"}
QUICK = {"data": "digits", "minority": "3:6,8:6", "gan_steps": 20, "epochs": 2, "seeds": 2,
         "arms": "none,ros,smote,gan", "classifier": "logreg"}


@flow(name="ganpipe-demo", log_prints=True, flow_run_name=flow_run_name("demo"))
def demo_flow(params: DemoParams = DemoParams()) -> dict:
    """Train the conditional GAN and export synthetic minority samples (augment), then compare the
    classifier with and without them against the classic remedies (compare). Short settings: the
    full-size numbers come from `make bench`."""
    compare = CompareParams(**(QUICK if params.quick else FULL), out=f"{params.out}/compare")
    augment = AugmentParams(data=compare.data, minority=compare.minority, steps=compare.gan_steps, seed=0,
                            out=f"{params.out}/augment", model_name="ganpipe-demo-cgan")
    augmented = augment_flow(augment)
    compared = compare_flow(compare)
    return {"augment": augmented, "compare": compared, "settings": compare.model_dump()}
