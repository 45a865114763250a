"""Colour images at 128 and 256 px go through augment, train-detector and score end to end (tiny
data, few steps: this checks shapes, memory bounds and outputs, not quality)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.augment import augment_flow
from flows.detector import score_flow, train_detector_flow
from flows.params import AugmentParams, ScoreParams, TrainDetectorParams
from tests.conftest import write_png

TINY_GAN = {"width": 4, "z_dim": 8, "batch_size": 8, "judge_steps": 2, "novelty_draws": 1}


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """Three classes of 256x256 RGB PNGs (12 each): a colour per class with noise and a bright square."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("large") / "parts"
    for k, name in enumerate(("plain", "dented", "scratched")):
        base = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]][k], dtype=np.float64)
        for i in range(12):
            image = base + rng.normal(0, 20, (256, 256, 3))
            top, left = rng.integers(0, 192, 2)
            image[top : top + 64, left : left + 64] = 255
            write_png(root / name / f"{i:02d}.png", image.clip(0, 255).astype(np.uint8))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("side", [128, 256])
def test_large_colour_images_go_through_every_job(side, colour_folder, mlflow_store, tmp_path, monkeypatch):
    # the sample-quality feature network: a few steps and samples (the metrics' maths is tested elsewhere)
    monkeypatch.setattr("pipelines.evaluation.sample_quality.FEATURE_NET", {"epochs": 1, "min_steps": 2})
    monkeypatch.setattr("pipelines.evaluation.sample_quality.SAMPLES", 20)
    data = f"folder:{colour_folder}"
    size = None if side == 256 else side  # 256: the native size; 128: resized on reading
    augmented = augment_flow.fn(AugmentParams(data=data, image_size=size, minority="scratched:4", target=6, steps=2,
                                              out=str(tmp_path / "aug"), device="cpu", gan=TINY_GAN,
                                              gain_check_epochs=1))
    with np.load(tmp_path / "aug" / "synthetic.npz") as npz:
        assert npz["x"].shape == (6 - 4, 3, side, side)
    assert augmented["to_make"] == {"scratched": 2}
    # the sample sheets stay colour, in the output folder and in MLflow (the first row: real blue images)
    from mlflow import MlflowClient
    from PIL import Image

    logged = MlflowClient().download_artifacts(augmented["run_id"], "figures/samples_scratched.png", str(tmp_path))
    logged_run = MlflowClient().get_run(augmented["run_id"]).data
    assert logged_run.params["gan.colour_used"] == "joint"  # colour is the class here: drawn with the shapes
    assert logged_run.metrics["train/colour_class_signal_images"] > logged_run.metrics["train/colour_class_signal_views"]
    for sheet in (tmp_path / "aug" / "samples_scratched.png", logged):
        pixels = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
        assert ((pixels[..., 2] - pixels[..., 0]) > 80).mean() > 0.01, sheet

    trained = train_detector_flow.fn(TrainDetectorParams(data=data, image_size=size, normal="plain", epochs=0.5,
                                                         out=str(tmp_path / "det"), name=f"large-{side}", device="cpu"))
    assert trained["detector"].image_shape_ == (3, side, side)

    result = score_flow.fn(ScoreParams(batch=str(colour_folder / "dented"), out=str(tmp_path / "scored"),
                                       model=f"models:/large-{side}/1", device="cpu"))
    scores = pd.read_csv(tmp_path / "scored" / "scores.csv")
    assert len(scores) == 12 and np.isfinite(scores["score"]).all()  # 256 px files resized to the model's side
    assert result["summary"]["scored"] == 12
