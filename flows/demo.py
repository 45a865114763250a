"""The demo job: augment + compare on an embedded dataset, sized to finish in a few minutes."""

from __future__ import annotations

from prefect import flow

from flows.augment import augment_flow
from flows.compare import compare_flow

FULL = {"data": "mnist5k", "minority": "2:10,5:10,8:10", "gan_steps": 400, "epochs": 4, "seeds": 2,
        "arms": "none,class_weight,ros,smote,albumentations,gan", "classifier": "cnn"}
QUICK = {"data": "digits", "minority": "3:6,8:6", "gan_steps": 20, "epochs": 2, "seeds": 2,
         "arms": "none,ros,smote,gan", "classifier": "logreg"}


@flow(name="ganpipe-demo", log_prints=True)
def demo_flow(quick: bool = False, out: str = "out/demo") -> dict:
    """Train the conditional GAN and export synthetic minority samples (augment), then compare the
    classifier with and without them against the classic remedies (compare). Short settings: the
    full-size numbers come from `make bench`."""
    settings = QUICK if quick else FULL
    augmented = augment_flow(data=settings["data"], minority=settings["minority"], seed=0, out=f"{out}/augment",
                             gan={"steps": settings["gan_steps"]}, model_name="ganpipe-demo-cgan")
    compared = compare_flow(data=settings["data"], minority=settings["minority"], arms=settings["arms"],
                            seeds=settings["seeds"], epochs=settings["epochs"], gan_steps=settings["gan_steps"],
                            classifier=settings["classifier"], out=f"{out}/compare")
    return {"augment": augmented, "compare": compared, "settings": settings}
