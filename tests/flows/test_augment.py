from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from flows.augment import augment_flow
from flows.cli import main
from flows.params import AugmentParams
from pipelines.devices import device_name, resolve_device

TINY_GAN = {"steps": 6, "width": 8, "z_dim": 16, "batch_size": 16}


def test_augment_flow_exports_dataset_and_tracks_everything(mlflow_store, tmp_path):
    out = tmp_path / "aug"
    result = augment_flow.fn(AugmentParams(data="digits", minority="3:6,7:8", target=20, seed=0, out=str(out), gan=TINY_GAN,
                                           gain_check_epochs=1))
    assert result["to_make"] == {"3": 14, "7": 12}

    with np.load(out / "synthetic.npz") as npz:
        x, y, names = npz["x"], npz["y"], npz["class_names"]
    assert x.shape == (26, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert sorted(y.tolist()) == [3] * 14 + [7] * 12 and names[3] == "3"
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 26 and set(manifest.columns) >= {"file", "class", "seed", "model_version"}
    assert all((out / f).is_file() for f in manifest["file"])
    assert sorted(p.name for p in (out / "images").iterdir()) == ["3", "7"]
    assert (out / "samples_3.png").is_file() and (out / "samples_7.png").is_file()  # sample grids beside the data
    assert (manifest["model_version"].astype(str) == result["model_version"]).all()

    quality = result["quality"]
    assert set(quality["method"]) == {"gan", "smote", "albumentations"}
    assert set(quality["class"]) == {"3", "7"}
    assert quality[["frechet", "coverage", "label_agreement", "near_duplicate_share"]].notna().all().all()

    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(result["run_id"])
    assert run.data.params["minority"] == "3:6,7:8" and run.data.params["gan.steps"] == "6"
    device = resolve_device("auto")  # the default --device on this machine
    assert run.data.params["device"] == run.data.tags["device"] == str(device)
    assert run.data.params["device_name"] == run.data.tags["device_name"] == device_name(device)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/d_loss")] == [1, 2, 3, 4, 5, 6]
    # the class latents' autoencoder (as many steps as the GAN here) reports before the GAN steps
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/reconstruction_mse")] == [1, 2, 3, 4, 5, 6]
    assert {"train/g_adversarial_loss", "train/g_total_loss", "train/seconds", "quality/label_agreement_3", "quality/near_duplicate_share_7"} <= set(run.data.metrics)
    assert "None" not in run.data.params.values()  # unset options are left out, not logged as "None"
    # the label weight is "auto"; on grey digits the class means explain much of the pixels: no label head
    assert run.data.params["gan.autoencoder_label_weight"] == "auto"
    assert run.data.params["gan.autoencoder_label_weight_used"] == "0.0" and run.data.metrics["train/class_signal"] > 0.2
    assert {"quality/smote/frechet_3", "quality/albumentations/coverage_7", "quality/gan/precision_3",
            "quality/gan/density_7"} <= set(run.data.metrics)  # every method's quality, not the GAN's alone
    description = run.data.tags["mlflow.note.content"]
    assert "| class | method |" in description and "smote" in description and "14 for class 3" in description
    import mlflow

    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert [m.name for m in logged if m.source_run_id == run.info.run_id] == ["generator"]
    generator = next(m for m in logged if m.source_run_id == run.info.run_id)
    linked = {m.key: (m.dataset_name, m.dataset_digest) for m in generator.metrics}  # the model page's datasets
    assert linked["generator/train_items"][0] == "digits-train" and linked["generator/label_agreement_3"][0] == "digits-validation"
    contexts = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset for d in run.inputs.dataset_inputs}
    assert set(contexts) == {"train", "validation", "test", "synthetic"}  # the UI's Datasets column
    assert contexts["synthetic"].digest == run.data.tags["synthetic_digest"] and contexts["train"].name == "digits-train"
    assert linked["generator/train_items"][1] == contexts["train"].digest  # linked to the dataset the run logged
    artifacts = {f.path for d in ("figures", "tables", "dataset") for f in client.list_artifacts(run.info.run_id, d)}
    assert {"figures/samples_3.png", "figures/samples_7.png", "tables/sample_quality.csv",
            "dataset/synthetic.npz", "dataset/manifest.csv"} <= artifacts
    previews = [f.path for f in client.list_artifacts(run.info.run_id, "images")]
    # MLflow names a keyed image images/<key, / as ~>+step+<step>+timestamp+...png (and a .webp thumbnail)
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in previews if p.startswith("images/train~samples+") and p.endswith(".png")) \
        == [0, 1, 2, 3, 4, 5, 6]  # sample grids streamed while the GAN trained (the start, then every tenth of the run)
    trained = [p for p in previews if p.startswith("images/samples~trained+") and p.endswith(".png")]
    assert [int(p.split("+step+")[1].split("+")[0]) for p in trained] == [6]  # a one-step series: opens on the trained grid

    import mlflow.pyfunc

    registered = client.get_registered_model("ganpipe-cgan")
    assert "Class-conditional GAN generator" in registered.description and registered.tags["ganpipe.kind"] == "generator"
    stored = client.get_model_version("ganpipe-cgan", result["model_version"])
    assert stored.tags["train_digest"] == contexts["train"].digest and "digits" in stored.description
    # the validated gain: on the run, on the registered version and in the description
    gain = result["validated_gain"]
    assert stored.tags["validated_gain"] == run.data.tags["validated_gain"] == gain.tag()
    assert stored.tags["validated_gain_verdict"] in ("gain", "loss", "no clear difference")
    assert gain.low <= gain.difference <= gain.high and gain.best in gain.classic and len(gain.classic) == 7
    assert run.data.metrics["validation/gain"] == pytest.approx(gain.difference)
    assert "validation/ros_albumentations_minority_recall" in run.data.metrics
    assert run.data.metrics["validation/synthetic_with_on_the_fly_augmentation_minority_recall"] == pytest.approx(
        gain.uses["with on-the-fly augmentation"]) and run.data.metrics["validation/gan_minority_recall"] == pytest.approx(gain.gan)
    assert description.startswith("**Validated gain:")
    assert str(client.get_model_version_by_alias("ganpipe-cgan", "current").version) == result["model_version"]
    model = mlflow.pyfunc.load_model(f"models:/ganpipe-cgan/{result['model_version']}")
    images = model.predict(pd.DataFrame({"class_name": ["3", "7"], "seed": [0, 1]}))
    assert images.shape == (2, 1, 8, 8) and images.min() >= 0  # the signature is an image tensor
    assert model.metadata.get_output_schema().inputs[0].shape == (-1, 1, 8, 8)


def test_checkpoint_lets_a_rerun_resume(mlflow_store, tmp_path):
    out = tmp_path / "aug"
    augment_flow.fn(AugmentParams(data="digits", minority="3:6", seed=0, out=str(out), gan=TINY_GAN, gain_check=False))
    assert (out / "checkpoints" / "gan.pt").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--minority", "eleven"], "unknown class 'eleven'"),
        (["--minority", "3:5", "--target", "4"], "target 4 for class '3' is below its 5 real training items"),
        (["--minority", "3:500"], "cannot keep 500"),
        (["--minority", "3", "--image-size", "300"], "--image-size: must be <= 256, got 300"),
    ],
)
def test_bad_augment_requests_fail_before_training(argv, message, capsys, mlflow_store, tmp_path):
    assert main(["augment", "--data", "digits", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_fails_in_one_line_before_training(capsys, mlflow_store, tmp_path):
    assert main(["augment", "--data", "digits", "--minority", "3", "--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA GPU is available" in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()


def test_class_with_zero_images_is_refused(tmp_path, capsys, mlflow_store):
    path = tmp_path / "d.npz"
    y = np.repeat([0, 1], 10)
    np.savez(path, x=np.zeros((20, 8, 8), np.float32), y=y, class_names=np.array(["ok", "dent", "crack"]))
    assert main(["augment", "--data", f"npz:{path}", "--minority", "crack", "--out", str(tmp_path / "o")]) == 2
    assert "class 'crack' has no images" in capsys.readouterr().err

