"""The compare flow: the experiment of :mod:`pipelines.evaluation.compare`, one task per seed, with
the conditional GAN as the generator of the GAN arms."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import Planner, data_label, fan_out, flow_run_name, load_data, prefect_tags, run_logger, task_runner
from flows.lifecycle import exit_with_owner
from flows.params import CompareParams
from gan_aug import GANOverSampler
from pipelines.data.sources import ImageDataset
from pipelines.devices import device_name, resolve_device, task_device
from pipelines.evaluation import compare
from pipelines.evaluation.remedies import Synthesise
from pipelines.errors import GanpipeError
from pipelines.text import progress_bar
from pipelines.tracking.comparison import log_comparison
from pipelines.tracking.registry import load_estimator, resolve_model, version_tags
from pipelines.tracking.runs import dataset_digest, start_run


def train_gan_for_arms(train: ImageDataset, seed: int, steps: int, registered: Registered | None = None,
                       device: str = "auto", settings: dict | None = None) -> Synthesise:
    """The GAN of the GAN arms, trained on the training split only (on ``device``, with the further
    GANOverSampler ``settings``: a ``steps`` among them wins over ``steps``); or the registered
    generator, when it was trained on exactly this training split (same digest), so it has seen no
    item of this seed's validation or test split."""
    if registered is not None and dataset_digest(train.x, train.y) == registered.train_digest:
        return registered.on(device)
    logger = run_logger()

    def progress(step: int, total: int, metrics: dict) -> None:
        if metrics.get("phase") == "autoencoder":  # class latents: the autoencoder before the GAN steps
            logger.info("seed %d: GAN autoencoder steps %s", seed, progress_bar(
                metrics["autoencoder_step"], metrics["autoencoder_steps"], metrics["seconds"]))
            return
        logger.info("seed %d: GAN steps %s", seed, progress_bar(step, total, metrics["seconds"]))

    sampler = GANOverSampler(**{"steps": steps, "device": device, **(settings or {}), "random_state": seed,
                                "progress": progress})
    return sampler.fit(train.x, train.y).generate


class Registered:
    """A registered generator as the GAN arms' synthesise function; ``source`` names its version."""

    def __init__(self, uri: str) -> None:
        name, version, self.source = resolve_model(uri)
        self.train_digest = version_tags(name, version).get("train_digest")
        if not self.train_digest:
            raise GanpipeError(f"{uri} has no train_digest tag (register it with ganpipe augment)")
        self.sampler = load_estimator(self.source)

    def on(self, device: str) -> Registered:
        """This generator as the synthesise function ``(labels, seed) -> images``, sampling on ``device``
        (resolved here, where the seed runs: a Dask worker's own GPU, or the CPU ``--device cpu`` asks
        for even on a GPU host). It keeps its ``source``, so the rows of the seeds it served name it."""
        self.sampler.device_ = resolve_device(device)
        self.sampler.gan_.to(self.sampler.device_)
        return self

    def __call__(self, labels, seed: int):
        return self.sampler.generate(labels, seed=seed)

    def __getstate__(self) -> dict:
        # to a Dask worker as plain CPU data (the sampler's state dict), so a worker without the
        # parent's GPU loads it; the worker places it on its own device (:meth:`on`)
        return {**self.__dict__, "sampler": self.sampler.state_dict()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, sampler=GANOverSampler.from_state_dict(state["sampler"], device="cpu"))


@dataclass(frozen=True)
class ComparePlan:
    """What a comparison works on: the dataset, the minority counts (by class name), the arms, the
    sweep counts (``[None]`` without a sweep), the registered generator, if one was named, and the
    device ``--device`` names here (each seed resolves ``--device`` again where it runs)."""

    dataset: ImageDataset
    counts: dict[str, int]
    arms: list[str]
    sweep: list[int | None]
    registered: Registered | None
    device: torch.device


@Planner
def plan(params: CompareParams) -> ComparePlan:
    """Everything a user can get wrong, checked before any training (see :class:`ComparePlan`)."""
    device = resolve_device(params.device)  # a device that is not there fails in one line, before the data is read
    dataset = load_data(params.data, params.image_size)
    counts, arms, sweep = compare.check_experiment(dataset, params.minority, params.arms, params.sweep)
    if params.gan:
        try:  # bad GAN settings fail here, in one line, before any training
            GANOverSampler(**{"steps": params.gan_steps, **params.gan}).gan_config(len(dataset), dataset.x.shape[-1])
        except (TypeError, ValueError) as exc:
            raise GanpipeError(f"invalid GAN settings {params.gan}: {exc}") from None
    return ComparePlan(dataset, counts, arms, sweep, Registered(params.generator) if params.generator else None,
                       device)


@task(name="compare-seed", cache_policy=NO_CACHE)
def run_seed(dataset: ImageDataset, counts: dict[str, int], arms: list[str], seed: int, classifier: str, epochs: int,
             train_gan: compare.TrainGAN, sweep_count: int | None, torch_threads: int, device: str) -> list[dict]:
    # a Dask worker starts with one torch thread; another thread count sums gradients in another order,
    # so every worker uses the flow's count and the table does not depend on where a seed ran
    torch.set_num_threads(torch_threads)
    logger = run_logger()
    device = task_device(device)  # in a Dask worker of a multi-GPU machine: that worker's own GPU
    return compare.run_seed(dataset, counts, arms, seed, classifier, epochs,
                            None if train_gan is None else partial(train_gan, device=device),
                            sweep_count, progress=lambda line: logger.info("%s", line), device=device)


@flow(name="ganpipe-compare", log_prints=True, task_runner=task_runner(), flow_run_name=flow_run_name("compare", "seeds"))
def compare_flow(params: CompareParams = CompareParams()) -> dict:
    """For each seed (and sweep count): split, cut the minority classes, train the classifier under
    every arm, evaluate on the untouched test split -> summary with intervals, paired tests of the
    GAN arms against the best non-GAN arm, charts -> MLflow (parent + nested runs) and files."""
    exit_with_owner()  # run by `ganpipe serve`: a flow-run process that ends with it
    planned = plan(params)
    dataset, counts, arms, sweep, registered = (planned.dataset, planned.counts, planned.arms, planned.sweep,
                                                planned.registered)
    gan = partial(train_gan_for_arms, steps=params.gan_steps, registered=registered,  # each seed adds its device
                  settings=params.gan)
    calls = [(dataset, counts, arms, seed, params.classifier, params.epochs, gan, count, torch.get_num_threads(),
              params.device) for count in sweep for seed in range(params.seeds)]
    # the parent run opens now, so the UI shows the comparison running (and FAILED with the reason on error)
    with start_run("compare", run_name=f"compare-{data_label(params.data)}-seeds{params.seeds}",
                   tags=prefect_tags(), system_metrics=True) as parent:
        devices = {"device": str(planned.device), "device_name": device_name(planned.device)}
        parent.set_tags(devices)
        parent.log_params({**params.model_dump(exclude={"gan"}, exclude_none=True), **devices,  # an unset option is no param
                           **{f"gan.{k}": v for k, v in params.gan.items()}})
        parent.log_dataset(dataset.x, dataset.y, data_label(params.data), "source", params.data)
        run_logger().info("comparing %d arms over %d seed(s)%s: %s", len(arms), params.seeds,
                          f" and {len(sweep)} counts" if params.sweep else "", ", ".join(arms))
        rows = [r for rows in fan_out(run_seed, calls) for r in rows]
        comparison = compare.summarise_comparison(rows, bool(params.sweep))
        out = Path(params.out).expanduser()
        compare.write_comparison(out, comparison,
                                 f"Comparison on {params.data}, minority {params.minority}, {params.seeds} seeds")
        if registered is not None:
            used = sorted({r["seed"] for r in rows if r.get("_generator")})
            parent.set_tags({"generator": registered.source, "generator_seeds": ",".join(map(str, used)) or "none"})
            if not used:
                run_logger().warning("%s was trained on none of these seeds' training splits; every seed trained "
                                     "its own GAN", registered.source)
        run_id = log_comparison(comparison, parent, dataset.class_names, params.minority, params.classifier,
                                params.epochs, data=params.data, data_name=data_label(params.data))
    if prefect_tags():
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=comparison.headline.round(4).to_dict("records"), key="ganpipe-comparison",
                              description=comparison.text)
    return {"run_id": run_id, "summary": comparison.summary, "verdicts": comparison.verdicts, "text": comparison.text,
            "out": str(out), "results": comparison.results}
