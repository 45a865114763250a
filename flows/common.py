"""Pieces every flow shares: run tags, parameter validation, fanning tasks out."""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from pipelines.errors import GanpipeError
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


def fan_out(task_, calls: list[tuple]) -> list:
    """Run ``task_(*args)`` for every args tuple: submitted to the flow's task runner (threads, or a
    Dask cluster) inside a Prefect flow run; one after another when the flow runs as a plain
    function (``flow.fn``)."""
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return [task_.fn(*args) for args in calls]
    futures = [task_.submit(*args) for args in calls]
    return [future.result() for future in futures]
