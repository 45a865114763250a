"""The augment flow: train the conditional GAN on a labelled set and export synthetic minority samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import Planner, call, data_label, flow_run_name, load_data, prefect_tags, run_logger
from flows.lifecycle import exit_with_owner
from flows.params import AugmentParams
from gan_aug import GANConfig, GANOverSampler
from gan_aug.train import PREVIEW_PER_CLASS, class_signal
from pipelines.data.export import export_synthetic
from pipelines.data.splits import Splits, synthesis_plan
from pipelines.devices import device_name, resolve_device
from pipelines.errors import GanpipeError
from pipelines.evaluation.plots import samples_figure, tile_images
from pipelines.evaluation.sample_quality import compare_sample_quality
from pipelines.evaluation.validated_gain import ValidatedGain, validated_gain
from pipelines.text import markdown_table, progress_bar
from pipelines.tracking.comparison import arm_key
from pipelines.tracking.registry import GeneratorModel, register_estimator
from pipelines.tracking.runs import DESCRIPTION_TAG, TrackedRun, start_run

if TYPE_CHECKING:
    import torch

QUALITY_METRICS = ("frechet", "coverage", "recall", "label_agreement", "near_duplicate_share")


@dataclass(frozen=True)
class AugmentPlan:
    """What an augment run works on: the split with the minority classes cut, the synthetic items
    each minority class gets (by class index), the unfitted oversampler, its GAN settings and the
    device it will train on."""

    splits: Splits
    to_make: dict[int, int]
    sampler: GANOverSampler
    gan_config: GANConfig
    device: torch.device


@Planner
def plan(params: AugmentParams) -> AugmentPlan:
    """Every check that can fail on user input, before training (see :class:`AugmentPlan`)."""
    # --device (or a "device" among the GAN settings, which wins as "steps" does): a device that is
    # not there fails here in one line, before the data is read or any server starts
    device = resolve_device(params.gan.get("device", params.device))
    splits, to_make = synthesis_plan(load_data(params.data, params.image_size), params.minority, params.target,
                                     params.seed)
    try:
        # the GAN settings are the sampler's parameters; a "steps" among them wins over --steps
        sampler = GANOverSampler(epochs=params.epochs, **{"steps": params.steps, "device": params.device, **params.gan},
                                 random_state=params.seed,
                                 checkpoint_path=Path(params.out).expanduser() / "checkpoints" / "gan.pt")
        gan_config = sampler.gan_config(len(splits.train), splits.train.x.shape[-1])
    except (TypeError, ValueError) as exc:
        raise GanpipeError(f"invalid GAN settings {params.gan}: {exc}") from None
    return AugmentPlan(splits, to_make, sampler, gan_config, device)


FINAL_SAMPLES = "samples/trained"  # the image series holding the trained generator's preview grid only


@task(name="train-gan", cache_policy=NO_CACHE)
def train_gan(sampler: GANOverSampler, splits: Splits, run: TrackedRun | None = None) -> GANOverSampler:
    """Fit the GAN; its losses reach the Prefect log and (with ``run``) MLflow while it trains, with a
    grid of samples (one row per class, up to PREVIEW_CLASSES, the same latents each time) at the start and every tenth of the run."""
    logger = run_logger()

    def progress(step: int, steps: int, metrics: dict) -> None:
        if metrics.get("phase") == "autoencoder":  # class latents: the autoencoder before the GAN steps
            done, total = metrics["autoencoder_step"], metrics["autoencoder_steps"]
            logger.info("GAN autoencoder steps %s  reconstruction mse %.4f",
                        progress_bar(done, total, metrics["seconds"]), metrics["reconstruction_mse"])
            if run is not None:
                run.log_metrics({"reconstruction_mse": metrics["reconstruction_mse"]}, step=done, prefix="train/")
            return
        logger.info("GAN steps %s  d_loss %.3f  g_adversarial_loss %.3f", progress_bar(step, steps, metrics["seconds"]),
                    metrics["d_loss"], metrics["g_adversarial_loss"])
        if run is not None:
            run.log_metrics({k: metrics[k] for k in ("d_loss", "g_adversarial_loss", "g_total_loss", "mode_seeking")},
                            step=step, prefix="train/")

    last = sampler.gan_config(len(splits.train), splits.train.x.shape[-1]).steps

    def preview(step: int, images: np.ndarray, labels: np.ndarray) -> None:
        rows = [splits.train.class_names[int(k)] for k in labels[::PREVIEW_PER_CLASS]]  # one row per class
        grid = tile_images(images, ncols=PREVIEW_PER_CLASS, row_labels=rows)
        run.log_image(grid, key="train/samples", step=step)
        if step >= last:
            # MLflow's image card opens a series at its first step (the untrained generator's noise);
            # a series of one step opens on it: the trained generator's grid
            run.log_image(grid, key=FINAL_SAMPLES, step=step)

    return sampler.set_params(progress=progress, preview=None if run is None else preview).fit(
        splits.train.x, splits.train.y)


@task(name="sample", cache_policy=NO_CACHE)
def sample_synthetic(sampler: GANOverSampler, to_make: dict[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in sorted(to_make.items())] or [np.zeros(0, np.int64)])
    return sampler.generate(labels, seed=seed), labels


@task(name="evaluate-samples", cache_policy=NO_CACHE)
def evaluate_samples(splits: Splits, sampler: GANOverSampler, classes: list[int], seed: int, device) -> pd.DataFrame:
    return compare_sample_quality(splits, lambda labels, s: sampler.generate(labels, seed=s + 10_000), classes, seed,
                                  device=str(device))


@task(name="validate-synthetic", cache_policy=NO_CACHE)
def validate_synthetic(splits: Splits, classes: list[int], synthetic: tuple[np.ndarray, np.ndarray],
                       params: AugmentParams, device) -> ValidatedGain:
    """The synthetic set against every classic remedy on the validation split (never test)."""
    logger = run_logger()
    return validated_gain(splits, classes, synthetic, "cnn", params.gain_check_epochs, params.seed, str(device),
                          progress=lambda line: logger.info("%s", line))


@task(name="export", cache_policy=NO_CACHE)
def export(out: Path, x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...], seed: int, version: str) -> pd.DataFrame:
    return export_synthetic(out, x, y, class_names, seed, version)


def quality_description(params: AugmentParams, to_make: dict[int, int], names, quality: pd.DataFrame,
                        seconds: float) -> str:
    """The augment run's description: what was made, and the sample-quality table of every method."""
    made = ", ".join(f"{n} for class {names[k]}" for k, n in sorted(to_make.items()))
    shown = quality[[c for c in ("class", "method", "frechet", "precision", "recall", "coverage", "label_agreement",
                                 "near_duplicate_share") if c in quality.columns]]
    return (f"**Synthetic images for the minority classes of `{params.data}`**: {made} (GAN trained in {seconds:.0f} s). "
            "Sample quality of the GAN beside SMOTE and classic augmentation, on the validation images of each "
            "class (lower Fréchet is better; label agreement by a CNN trained on the real training split):\n\n"
            + markdown_table(shown.round(3)))


@flow(name="ganpipe-augment", log_prints=True, flow_run_name=flow_run_name("augment", "seed"))
def augment_flow(params: AugmentParams = AugmentParams()) -> dict:
    """Load -> train the conditional GAN on all classes -> sample the minority classes up to the
    target -> evaluate sample quality against SMOTE and classic augmentation -> export and register."""
    exit_with_owner()  # run by `ganpipe serve`: a flow-run process that ends with it
    planned = plan(params)
    splits, to_make, sampler = planned.splits, planned.to_make, planned.sampler
    names, classes, out = splits.train.class_names, sorted(to_make), Path(params.out).expanduser()
    with start_run("augment", run_name=f"augment-{data_label(params.data)}-seed{params.seed}", tags=prefect_tags(),
                   system_metrics=True) as run:
        devices = {"device": str(planned.device), "device_name": device_name(planned.device)}
        run.set_tags(devices)
        run.log_params({**params.model_dump(exclude={"gan"}, exclude_none=True), **devices, "train_items": len(splits.train),
                        **{f"gan.{k}": "auto" if k == "autoencoder_label_weight" and v is None else v
                           for k, v in vars(planned.gan_config).items()
                           if v is not None or k == "autoencoder_label_weight"},  # unset: left out
                        **{f"synthesise.{names[k]}": n for k, n in to_make.items()}})
        label = data_label(params.data)
        digests = {context: run.log_dataset(part.x, part.y, f"{label}-{context}", context, params.data)
                   for context, part in (("train", splits.train), ("validation", splits.val), ("test", splits.test))}
        train_digest = digests["train"]
        sampler = call(train_gan, sampler, splits, run)
        run.log_metrics({"train/seconds": sampler.gan_.seconds})
        if sampler.colour_evidence_:  # colour images: drawn jointly or apart from their shapes, and why
            run.log_params({"gan.colour_used": sampler.gan_.config.colour})
            run.log_metrics({f"train/colour_{k}": v for k, v in sampler.colour_evidence_.items() if v == v})
        if planned.gan_config.class_latents:  # what "auto" decided, and the class signal it read
            run.log_params({"gan.autoencoder_label_weight_used": sampler.gan_.config.autoencoder_label_weight})
            run.log_metrics({"train/class_signal": class_signal(splits.train.x, splits.train.y)})
        x_syn, y_syn = call(sample_synthetic, sampler, to_make, params.seed)
        for k, counts in sampler.gan_.last_novelty.items():  # near-copies the novelty filter replaced
            run.log_metrics({f"rejected_near_copy_share_{names[k]}": counts["rejected"] / max(counts["drawn"], 1),
                             f"near_copies_kept_{names[k]}": counts["filled"]}, prefix="sampling/")
        out.mkdir(parents=True, exist_ok=True)
        for k in classes:
            figure = samples_figure(splits.train.x[splits.train.y == k], sampler.sample(k, 30, seed=params.seed + 20_000),
                                    f"class {names[k]}: real training images (first row), GAN samples")
            figure.savefig(out / f"samples_{names[k]}.png", dpi=100)  # to look at without the MLflow UI
            run.log_figure(figure, f"figures/samples_{names[k]}.png")
        quality = call(evaluate_samples, splits, sampler, classes, params.seed, planned.device)
        run.log_table(quality, "tables/sample_quality.csv")
        for row in quality[quality["method"] == "gan"].to_dict("records"):
            run.log_metrics({f"{m}_{row['class']}": row[m] for m in QUALITY_METRICS}, prefix="quality/")
        for row in quality.to_dict("records"):  # every method, under one name per method, metric and class
            run.log_metrics({f"{m}_{row['class']}": row[m] for m in (*QUALITY_METRICS, "precision", "density")
                             if m in row and pd.notna(row[m])}, prefix=f"quality/{row['method']}/")
        gain = None
        if params.gain_check:  # the synthetic set against the classic remedies, on the validation split
            gain = call(validate_synthetic, splits, classes, (x_syn, y_syn), params, planned.device)
        description = quality_description(params, to_make, names, quality, sampler.gan_.seconds)
        if gain is not None:
            run.log_metrics({"gain": gain.difference, "gain_low": gain.low, "gain_high": gain.high,
                             "gan_minority_recall": gain.gan,
                             **{f"synthetic_{arm_key(use)}_minority_recall": v for use, v in gain.uses.items()},
                             **{f"{arm_key(arm)}_minority_recall": v for arm, v in gain.classic.items()}},
                            prefix="validation/")
            run.set_tags({"validated_gain": gain.tag(), "validated_gain_verdict": gain.verdict})
            description = f"**{gain.text()}**\n\n{description}"
        run.set_tags({DESCRIPTION_TAG: description})
        version = register_estimator(run, GeneratorModel(names), sampler, params.model_name,
                                     pd.DataFrame({"class_name": [names[0]], "seed": [0]}),
                                     description=f"class-conditional generator (EMA weights) from ganpipe augment on "
                                                 f"{params.data}, minority {params.minority}",
                                     tags={"train_digest": train_digest, "data": params.data, "seed": params.seed,
                                           **({"validated_gain": gain.tag(), "validated_gain_verdict": gain.verdict}
                                              if gain is not None else {})},
                                     name="generator", linked=[
                                         ({"generator/train_items": len(splits.train),
                                           "generator/train_seconds": sampler.gan_.seconds},
                                          f"{label}-train", digests["train"]),
                                         ({f"generator/{m}_{row['class']}": row[m] for row in
                                           quality[quality["method"] == "gan"].to_dict("records") for m in QUALITY_METRICS},
                                          f"{label}-validation", digests["validation"])])
        run.client.set_registered_model_alias(params.model_name, "current", version)  # models:/NAME@current
        manifest = call(export, out, x_syn, y_syn, names, params.seed, version)
        digest = run.log_dataset(x_syn, y_syn, f"{label}-synthetic", "synthetic", f"{params.model_name}/{version}")
        run.set_tags({"synthetic_digest": digest})
        run.log_artifact(out / "synthetic.npz", "dataset")
        run.log_artifact(out / "manifest.csv", "dataset")
    return {"run_id": run.run_id, "model_version": version, "out": str(out), "synthetic": len(manifest),
            "quality": quality, "validated_gain": gain, "to_make": {names[k]: n for k, n in to_make.items()}, "seconds": sampler.gan_.seconds}
