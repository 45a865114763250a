"""The augment flow: train a conditional GAN on a labelled set and export synthetic minority samples.

load -> train -> sample -> evaluate -> export, everything logged to MLflow and the generator
registered in the model registry.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from flows.common import call, prefect_tags, run_logger, validated
from flows.models import ConditionalGeneratorModel
from gan_aug.train import GANConfig, TrainedGAN, steps_for_epochs, train_conditional_gan
from pipelines.data import load_dataset
from pipelines.errors import GanpipeError
from pipelines.plots import image_grid
from pipelines.sample_quality import compare_sample_quality
from pipelines.splits import Splits, make_imbalanced, stratified_split
from pipelines.tracking import log_pyfunc_model, start_run

DEFAULT_STEPS = 1500
QUALITY_SAMPLES = 200


class AugmentParams(BaseModel):
    data: str = Field("mnist5k", description="data source spec")
    minority: str = Field(..., description="CLASS[:N],...: classes to synthesise; N keeps only N real training images")
    target: int | None = Field(None, ge=1, description="items per minority class after synthesis (default: majority count)")
    epochs: float | None = Field(None, gt=0, le=10000, description=f"passes over the data (default: {DEFAULT_STEPS} steps)")
    seed: int = Field(0, ge=0)
    image_size: int | None = Field(None, ge=8, le=64)
    out: str = Field("out/augment", description="output folder")
    model_name: str = Field("ganpipe-cgan", min_length=1, description="registered model name")
    gan: dict = Field(default_factory=dict, description="extra GANConfig fields, e.g. {'loss': 'wgan-gp'}")


def parse_minority(text: str) -> dict[str, int | None]:
    """``"2:10,5,8:4"`` -> ``{"2": 10, "5": None, "8": 4}`` (None: keep every real item)."""
    result: dict[str, int | None] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, number = entry.rpartition(":")
        if sep and number.strip().isdigit():
            key, count = name.strip(), int(number)
        else:
            key, count = entry, None
        if not key:
            raise GanpipeError(f"bad minority entry {entry!r}; expected CLASS or CLASS:N")
        if key in result:
            raise GanpipeError(f"class {key!r} is given twice in --minority {text!r}")
        result[key] = count
    if not result:
        raise GanpipeError("no minority classes given; expected CLASS[:N][,CLASS[:N]...]")
    return result


def plan(params: AugmentParams) -> tuple[Splits, dict[int, int]]:
    """Load and split the data, apply the requested cuts, and decide how many synthetic items each
    minority class gets. Every check that can fail on user input happens here, before training."""
    dataset = load_dataset(params.data, image_size=params.image_size)
    if dataset.x.shape[2] != dataset.x.shape[3]:
        raise GanpipeError(f"{params.data}: images must be square for the GAN, got {dataset.x.shape[2]}x{dataset.x.shape[3]}; "
                           "pass --image-size")
    if not 8 <= dataset.x.shape[2] <= 64:
        raise GanpipeError(f"{params.data}: the GAN handles 8x8 to 64x64 images, got {dataset.x.shape[2]}x{dataset.x.shape[3]}; "
                           "pass --image-size")
    minority = parse_minority(params.minority)
    for key in minority:
        index = dataset.class_index(key)
        if dataset.class_counts[dataset.class_names[index]] == 0:
            raise GanpipeError(f"class {key!r} has no images in {params.data}")
    splits = stratified_split(dataset, seed=params.seed)
    cuts = {k: n for k, n in minority.items() if n is not None}
    if cuts:
        splits = make_imbalanced(splits, cuts, seed=params.seed)
    counts = splits.train.class_counts
    target = params.target or max(counts.values())
    to_make: dict[int, int] = {}
    for key in minority:
        index = splits.train.class_index(key)
        real = counts[splits.train.class_names[index]]
        if target < real:
            raise GanpipeError(
                f"target {target} for class {key!r} is below its {real} real training items; "
                "ask for a target at or above the real count"
            )
        to_make[index] = target - real
    return splits, to_make


@task(name="train-gan", cache_policy=NO_CACHE)
def train_gan(splits: Splits, config: GANConfig, checkpoint: Path) -> TrainedGAN:
    logger = run_logger()

    def progress(step: int, steps: int, metrics: dict) -> None:
        logger.info("GAN step %d/%d  d_loss %.3f  g_loss %.3f  elapsed %.0fs  eta %.0fs",
                    step, steps, metrics["d_loss"], metrics["g_loss"], metrics["seconds"], metrics["eta_seconds"])

    log_every = max(1, config.steps // 20)
    return train_conditional_gan(splits.train.x, splits.train.y, len(splits.train.class_names), config,
                                 checkpoint_path=checkpoint, progress=progress, log_every=log_every)


@task(name="sample", cache_policy=NO_CACHE)
def sample_synthetic(gan: TrainedGAN, to_make: dict[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in sorted(to_make.items())] or [np.zeros(0, np.int64)])
    return gan.sample(labels, seed=seed), labels


@task(name="evaluate-samples", cache_policy=NO_CACHE)
def evaluate_samples(splits: Splits, gan: TrainedGAN, classes: list[int], seed: int) -> pd.DataFrame:
    return compare_sample_quality(splits, lambda labels, s: gan.sample(labels, seed=s + 10_000), classes, seed, QUALITY_SAMPLES)


@task(name="export", cache_policy=NO_CACHE)
def export(out: Path, x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...], seed: int, model_version: str) -> pd.DataFrame:
    """``out/synthetic.npz`` (x, y, class_names), ``out/images/<class>/*.png`` and ``out/manifest.csv``."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "images", ignore_errors=True)  # images of an earlier run would not match the manifest
    np.savez_compressed(out / "synthetic.npz", x=x, y=y, class_names=np.array(class_names))
    records = []
    for i, (image, label) in enumerate(zip(x, y)):
        name = class_names[label]
        folder = out / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}_{i:06d}.png"
        pixels = (image * 255).round().astype(np.uint8)
        Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)).save(path)
        records.append({"file": str(path.relative_to(out)), "class": name, "label": int(label), "index": i,
                        "seed": seed, "model_version": model_version})
    manifest = pd.DataFrame(records, columns=["file", "class", "label", "index", "seed", "model_version"])
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest


def _register_generator(run, gan: TrainedGAN, class_names: tuple[str, ...], model_name: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        weights, config = Path(tmp) / "generator.pt", Path(tmp) / "generator.json"
        torch.save(gan.generator.state_dict(), weights)
        config.write_text(json.dumps({"class_names": list(class_names), "image_shape": list(gan.image_shape),
                                      "z_dim": gan.config.z_dim, "width": gan.config.width}))
        example = pd.DataFrame({"class_name": [class_names[0]], "seed": [0]})
        output = pd.DataFrame(np.zeros((1, int(np.prod(gan.image_shape)))), columns=[f"p{i}" for i in range(int(np.prod(gan.image_shape)))])
        return log_pyfunc_model(run, ConditionalGeneratorModel(), "generator", model_name,
                                {"weights": str(weights), "config": str(config)}, example, output,
                                description="class-conditional generator (EMA weights) from ganpipe augment")


@flow(name="ganpipe-augment", log_prints=True)
def augment_flow(
    data: str = "mnist5k",
    minority: str = "2:10,5:10,8:10",
    target: int | None = None,
    epochs: float | None = None,
    seed: int = 0,
    image_size: int | None = None,
    out: str = "out/augment",
    model_name: str = "ganpipe-cgan",
    gan: dict | None = None,
) -> dict:
    """Load -> train the conditional GAN on all classes -> sample the minority classes up to the
    target -> evaluate sample quality against SMOTE and classic augmentation -> export and register."""
    params = validated(AugmentParams, {**locals(), "gan": gan or {}})
    splits, to_make = plan(params)
    names = splits.train.class_names
    steps = steps_for_epochs(params.epochs, len(splits.train), params.gan.get("batch_size", 64)) \
        if params.epochs else params.gan.get("steps", DEFAULT_STEPS)
    try:
        config = GANConfig(**{**params.gan, "steps": steps, "seed": params.seed})
    except (TypeError, ValueError) as exc:
        raise GanpipeError(f"invalid GAN settings {params.gan}: {exc}") from None
    out = Path(params.out).expanduser()
    classes = sorted(to_make)
    with start_run("augment", run_name=f"augment-{params.data.split(':')[0]}", tags=prefect_tags()) as run:
        run.log_params({**params.model_dump(exclude={"gan"}), **{f"gan.{k}": v for k, v in vars(config).items()},
                        "train_items": len(splits.train),
                        **{f"synthesise.{names[k]}": n for k, n in to_make.items()}})
        gan_model = call(train_gan, splits, config, out / "checkpoints" / "gan.pt")
        for record in gan_model.history:
            run.log_metrics({"d_loss": record["d_loss"], "g_loss": record["g_loss"],
                             "mode_seeking": record["mode_seeking"]}, step=record["step"])
        run.log_metrics({"train_seconds": gan_model.seconds})
        x_syn, y_syn = call(sample_synthetic, gan_model, to_make, params.seed)

        for k in classes:
            real = splits.train.x[splits.train.y == k][:10]
            real = np.concatenate([real, np.zeros((10 - len(real), *real.shape[1:]), np.float32)])  # keep rows aligned
            fake = gan_model.sample(np.full(30, k), seed=params.seed + 20_000)
            run.log_figure(image_grid(np.concatenate([real, fake]), ncols=10,
                                      title=f"class {names[k]}: real training images (first row), GAN samples"),
                           f"figures/samples_{names[k]}.png")
        quality = call(evaluate_samples, splits, gan_model, classes, params.seed)
        run.log_table(quality, "tables/sample_quality.csv")
        for row in quality[quality["method"] == "gan"].to_dict("records"):
            run.log_metrics({f"{m}_{row['class']}": row[m] for m in
                             ("frechet", "coverage", "recall", "label_agreement", "near_duplicate_share")})
        version = _register_generator(run, gan_model, names, params.model_name)
        manifest = call(export, out, x_syn, y_syn, names, params.seed, version)
        run.log_artifact(out / "synthetic.npz", "dataset")
        run.log_artifact(out / "manifest.csv", "dataset")
        run_id = run.run_id
    return {"run_id": run_id, "model_version": version, "out": str(out), "synthetic": len(manifest),
            "quality": quality, "to_make": {names[k]: n for k, n in to_make.items()}, "seconds": gan_model.seconds}
