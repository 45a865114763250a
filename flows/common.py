"""Pieces every flow shares: run tags, dataset loading as a task, parameter validation."""

from __future__ import annotations

from typing import Any, Mapping

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ValidationError

from pipelines.data import load_dataset
from pipelines.errors import GanpipeError
from pipelines.splits import Splits, make_imbalanced, parse_class_counts, stratified_split
from pipelines.tracking import PREFECT_RUN_TAG


def prefect_tags() -> dict[str, str]:
    """MLflow tags linking a run to the Prefect flow run that made it (empty outside Prefect)."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if not run_id:
        return {}
    return {PREFECT_RUN_TAG: str(run_id), "prefect.flow_name": str(flow_run.get_flow_name())}


def validated(model: type[BaseModel], values: Mapping[str, Any]) -> BaseModel:
    """Build a parameter model, turning pydantic's report into one readable line."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'parameters'}: {err['msg']}" for err in exc.errors()
        )
        raise GanpipeError(f"invalid parameters: {problems}") from None


def prepare_splits(
    data: str, minority: str | None, seed: int, image_size: int | None = None
) -> tuple[Splits, list[int]]:
    """Load ``data``, split it with ``seed`` and cut the ``minority`` classes (``"2:10,5:10"``)
    in the training split only. Returns the splits and the minority class indices."""
    dataset = load_dataset(data, image_size=image_size)
    splits = stratified_split(dataset, seed=seed)
    if not minority:
        return splits, []
    counts = parse_class_counts(minority)
    splits = make_imbalanced(splits, counts, seed=seed)
    return splits, sorted(splits.train.class_index(name) for name in counts)


load_splits = task(prepare_splits, name="load-and-split", cache_policy=NO_CACHE)


def fan_out(task_, calls: list[tuple]) -> list:
    """Run ``task_(*args)`` for every args tuple: submitted to the flow's task runner (threads, or a
    Dask cluster) inside a Prefect flow run; one after another when the flow runs as a plain
    function (``flow.fn``)."""
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return [task_.fn(*args) for args in calls]
    futures = [task_.submit(*args) for args in calls]
    return [future.result() for future in futures]
