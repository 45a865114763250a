"""The demo job: augment + compare on an embedded dataset, sized to finish in a few minutes."""

from __future__ import annotations

from prefect import flow

from flows.augment import augment_flow
from flows.common import flow_run_name
from flows.compare import compare_flow
from flows.params import AugmentParams, CompareParams, DemoParams
from pipelines.evaluation.arms import ARMS

# digits, not mnist5k: the GAN at its default length trains in under a minute on 8x8 images, so the demo
# shows the default GAN (recognisable samples) and finishes in a few minutes; `make bench` runs mnist5k
FULL = {"data": "digits", "minority": "3:5,8:5", "epochs": 15, "seeds": 2, "arms": ",".join(ARMS), "classifier": "cnn"}
QUICK = {"data": "digits", "minority": "3:6,8:6", "gan_steps": 20, "epochs": 2, "seeds": 2,
         "arms": "none,ros,smote,gan", "classifier": "logreg"}
WHY_DIGITS = ("The demo runs on scikit-learn's 8x8 digits (classes 3 and 8 cut to 5 training images) so that the "
              "default GAN trains in under a minute on a CPU (16-34 s a seed on 2 cores, first-run section of "
              "docs/benchmarks.md); mnist5k is measured by 'make bench' (docs/benchmarks.md).")


@flow(name="ganpipe-demo", log_prints=True, flow_run_name=flow_run_name("demo"))
def demo_flow(params: DemoParams = DemoParams()) -> dict:
    """Train the conditional GAN and export synthetic minority samples (augment), then compare the
    classifier with and without them against the classic remedies (compare). Compare reuses the
    registered generator for seed 0, whose training split is the one augment trained it on."""
    settings = QUICK if params.quick else FULL
    base = CompareParams(**settings, device=params.device, out=f"{params.out}/compare")
    augment = AugmentParams(data=base.data, minority=base.minority, steps=base.gan_steps, seed=0, device=params.device,
                            out=f"{params.out}/augment", model_name="ganpipe-demo-cgan", gain_check_epochs=base.epochs)
    augmented = augment_flow(augment)
    compare = base.model_copy(update={"generator": f"models:/ganpipe-demo-cgan/{augmented['model_version']}"})
    compared = compare_flow(compare)
    return {"augment": augmented, "compare": compared, "settings": compare.model_dump()}
