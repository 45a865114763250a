"""Pieces every flow shares: loading data once, run tags, running and fanning out tasks."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Callable, Generic, TypeVar

from pipelines.data.sources import ImageDataset, load_dataset
from pipelines.tracking.runs import PREFECT_RUN_TAG


@lru_cache(maxsize=4)
def load_data(spec: str, image_size: int | None = None) -> ImageDataset:
    """:func:`~pipelines.data.sources.load_dataset`, once per process: the CLI checks a job's data
    before its flow run starts, and the flow then works on the same loaded arrays."""
    return load_dataset(spec, image_size=image_size)


P = TypeVar("P")
Plan = TypeVar("Plan")


class Planner(Generic[P, Plan]):
    """A job's plan (its inputs parsed, checked and cut, ready to train on), made once per command.

    The command line calls :meth:`prepare` before any server starts, so every user error surfaces
    there; the flow then calls the planner with the same parameters and takes that plan (once). A
    flow run that no command prepared (a served deployment, ``flow.fn`` in a test) makes its own."""

    def __init__(self, make: Callable[[P], Plan]) -> None:
        self.make = make
        self._prepared: dict[str, Plan] = {}
        self._lock = threading.Lock()
        self.__doc__ = make.__doc__

    @staticmethod
    def _key(params) -> str:
        return f"{type(params).__name__}:{params.model_dump_json()}"

    def prepare(self, params: P) -> Plan:
        plan = self.make(params)
        with self._lock:
            self._prepared[self._key(params)] = plan
        return plan

    def __call__(self, params: P) -> Plan:
        with self._lock:
            plan = self._prepared.pop(self._key(params), None)
        return self.make(params) if plan is None else plan

    def __reduce__(self):
        # a flow sent to Dask workers is pickled with the globals it names, this planner among them: it
        # travels as the module attribute it is (its lock and prepared plans stay in this process)
        return _planner, (self.make.__module__, self.make.__name__)


def _planner(module: str, name: str) -> Planner:
    import importlib

    return getattr(importlib.import_module(module), name)


def prefect_tags() -> dict[str, str]:
    """MLflow tags linking a run to the Prefect flow run that made it (empty outside Prefect): its id,
    flow name and ``prefect.flow_run_url``, a link that works after the command (with
    ``prefect.browse`` saying how when the run went to the command's own local API)."""
    from prefect.runtime import flow_run

    from prefect.settings import PREFECT_API_URL

    from flows.servers import flow_run_url

    run_id = flow_run.get_id()
    if not run_id:
        return {}
    url, browse = flow_run_url(str(run_id), PREFECT_API_URL.value())
    return {PREFECT_RUN_TAG: str(run_id), "prefect.flow_name": str(flow_run.get_flow_name()),
            "prefect.flow_run_url": url, **({"prefect.browse": browse} if browse else {})}


def data_label(spec: str) -> str:
    """A short name for a data spec: ``mnist5k`` -> ``mnist5k``; ``folder:/data/nuts/`` -> ``nuts``."""
    kind, _, rest = spec.partition(":")
    if not rest:
        return kind
    from pathlib import PurePath

    return PurePath(rest.rstrip("/\\") or rest).name or kind


def flow_run_name(job: str, *fields: str):
    """A ``flow_run_name`` callable for a flow whose parameter is ``params``: the job, its data and the
    named fields, e.g. ``augment-mnist5k-seed0`` instead of a random pair of words."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters.get("params")
        get = (lambda k: params.get(k)) if isinstance(params, dict) else (lambda k: getattr(params, k, None))
        parts = [job]
        if get("data"):
            parts.append(data_label(str(get("data"))))
        parts += [f"{f}{get(f)}" for f in fields if get(f) is not None]
        return "-".join(parts)

    return name


def in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def call(task_, *args):
    """Run a task: as a Prefect task run inside a flow run, as its plain function under ``flow.fn``
    (so tests and library use need no Prefect API)."""
    return task_(*args) if in_flow_run() else task_.fn(*args)


def run_logger():
    """Prefect's run logger inside a run (shown in the UI), the ``ganpipe`` logger elsewhere."""
    import logging

    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("ganpipe")


def fan_out(task_, calls: list[tuple]) -> list:
    """Run ``task_(*args)`` for every args tuple: submitted to the flow's task runner (threads, or a
    Dask cluster) inside a Prefect flow run; one after another when the flow runs as a plain
    function (``flow.fn``)."""
    if not in_flow_run():
        return [task_.fn(*args) for args in calls]
    futures = [task_.submit(*args) for args in calls]
    return [future.result() for future in futures]


DASK_ADDRESS_ENV = "GANPIPE_DASK_ADDRESS"
DASK_WORKERS_ENV = "GANPIPE_DASK_WORKERS"


def task_runner(dask_address: str | None = None, dask_workers: int | None = None):
    """Threads by default; the Dask cluster at ``dask_address``; or a local Dask cluster of
    ``dask_workers`` processes. Without arguments, ``GANPIPE_DASK_ADDRESS`` / ``GANPIPE_DASK_WORKERS``
    decide, so flows run by a served deployment (a fresh process) use the cluster `ganpipe serve` was given."""
    import os

    dask_address = dask_address or os.environ.get(DASK_ADDRESS_ENV) or None
    dask_workers = dask_workers or int(os.environ.get(DASK_WORKERS_ENV) or 0) or None
    if not dask_address and not dask_workers:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=2)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "processes": True, "threads_per_worker": 1})
