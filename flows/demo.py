"""The demo job: an imbalanced dataset, a downstream classifier, everything tracked in MLflow."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from flows.common import load_splits, prefect_tags, validated
from pipelines.classifier import make_classifier
from pipelines.metrics import classification_report
from pipelines.plots import class_counts_figure, confusion_figure, image_grid
from pipelines.tracking import start_run


class DemoParams(BaseModel):
    data: str = Field("mnist5k", description="data source spec: digits, mnist5k, folder:PATH or npz:PATH")
    minority: str = Field("2:10,5:10,8:10", description="classes to cut in the training split, CLASS:N,...")
    epochs: int = Field(15, ge=1, le=500, description="classifier training epochs")
    seed: int = Field(0, ge=0, description="seed for the split, the imbalance and the classifier")
    classifier: Literal["cnn", "logreg"] = "cnn"
    image_size: int | None = Field(None, ge=8, le=64, description="resize every image to this side")


QUICK = {"data": "digits", "epochs": 3}


@task(name="train-classifier", cache_policy=NO_CACHE)
def train_and_predict(splits, classifier: str, epochs: int, seed: int):
    model = make_classifier(classifier, epochs=epochs, random_state=seed)
    model.fit(splits.train.x, splits.train.y, n_classes=len(splits.train.class_names))
    return model.predict_proba(splits.test.x)


@flow(name="ganpipe-demo", log_prints=True)
def demo_flow(
    data: str = "mnist5k",
    minority: str = "2:10,5:10,8:10",
    epochs: int = 15,
    seed: int = 0,
    classifier: str = "cnn",
    image_size: int | None = None,
) -> dict:
    """Load -> cut minority classes (training split only) -> train -> evaluate on the untouched
    test split -> log params, metrics, per-class table and figures to MLflow."""
    params = validated(DemoParams, locals())
    splits, minority_idx = load_splits(params.data, params.minority, params.seed, params.image_size)
    names = splits.train.class_names
    with start_run("demo", run_name=f"demo-{params.data.split(':')[0]}", tags=prefect_tags()) as run:
        run.log_params(params.model_dump())
        run.log_params({"train_items": len(splits.train), "val_items": len(splits.val), "test_items": len(splits.test)})
        run.log_figure(class_counts_figure(splits.train.class_counts), "figures/train_class_counts.png")
        first_of_class = [int((splits.train.y == k).nonzero()[0][0]) for k in range(len(names))]
        run.log_figure(image_grid(splits.train.x[first_of_class], ncols=len(names), title="one training image per class"),
                       "figures/classes.png")
        proba = train_and_predict(splits, params.classifier, params.epochs, params.seed)
        summary, per_class = classification_report(splits.test.y, proba, names, minority_idx)
        run.log_metrics(summary)
        run.log_metrics({f"recall_{row['class']}": row["recall"] for row in per_class.to_dict("records")})
        run.log_table(per_class, "tables/per_class.csv")
        run.log_figure(confusion_figure(splits.test.y, proba.argmax(axis=1), names), "figures/confusion.png")
        run_id = run.run_id
    minority_names = [names[i] for i in minority_idx]
    per_class.insert(1, "minority", per_class["class"].isin(minority_names))
    return {"run_id": run_id, "summary": summary, "per_class": per_class,
            "train_counts": splits.train.class_counts}


def summary_table(summary: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"metric": list(summary), "value": list(summary.values())})
