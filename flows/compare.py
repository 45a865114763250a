"""The compare flow: the experiment of :mod:`pipelines.evaluation.compare`, one task per seed, with
the conditional GAN as the generator of the GAN arms."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import fan_out, load_data, prefect_tags, task_runner
from flows.params import CompareParams
from gan_aug import GANOverSampler
from pipelines.data.sources import ImageDataset
from pipelines.evaluation import compare
from pipelines.evaluation.remedies import Synthesise


def train_gan_for_arms(train: ImageDataset, seed: int, steps: int) -> Synthesise:
    """The GAN of the GAN arms, trained on the training split only."""
    return GANOverSampler(steps=steps, random_state=seed).fit(train.x, train.y).generate


@task(name="compare-seed", cache_policy=NO_CACHE)
def run_seed(dataset: ImageDataset, counts: dict[str, int], arms: list[str], seed: int, classifier: str, epochs: int,
             train_gan: compare.TrainGAN, sweep_count: int | None, torch_threads: int) -> list[dict]:
    # a Dask worker starts with one torch thread; another thread count sums gradients in another order,
    # so every worker uses the flow's count and the table does not depend on where a seed ran
    torch.set_num_threads(torch_threads)
    return compare.run_seed(dataset, counts, arms, seed, classifier, epochs, train_gan, sweep_count)


@flow(name="ganpipe-compare", log_prints=True, task_runner=task_runner())
def compare_flow(params: CompareParams = CompareParams()) -> dict:
    """For each seed (and sweep count): split, cut the minority classes, train the classifier under
    every arm, evaluate on the untouched test split -> summary with intervals, paired tests of the
    GAN arms against the best non-GAN arm, charts -> MLflow (parent + nested runs) and files."""
    dataset = load_data(params.data, params.image_size)
    counts, arms, sweep = compare.check_experiment(dataset, params.minority, params.arms, params.sweep)
    gan = partial(train_gan_for_arms, steps=params.gan_steps)
    calls = [(dataset, counts, arms, seed, params.classifier, params.epochs, gan, count, torch.get_num_threads())
             for count in sweep for seed in range(params.seeds)]
    comparison = compare.summarise_comparison([r for rows in fan_out(run_seed, calls) for r in rows], bool(params.sweep))
    out = Path(params.out).expanduser()
    compare.write_comparison(out, comparison, f"Comparison on {params.data}, minority {params.minority}, {params.seeds} seeds")
    run_id = compare.log_comparison(comparison, params.model_dump(), dataset.class_names,
                                    run_name=f"compare-{params.data.split(':')[0]}", tags=prefect_tags())
    if prefect_tags():
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=comparison.headline.round(4).to_dict("records"), key="ganpipe-comparison",
                              description=comparison.text)
    return {"run_id": run_id, "summary": comparison.summary, "verdicts": comparison.verdicts, "text": comparison.text,
            "out": str(out), "results": comparison.results}
