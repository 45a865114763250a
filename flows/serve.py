"""`ganpipe serve`: the deployments it serves and the serving session (a Prefect server unless
``PREFECT_API_URL`` names one, deployments of an earlier session replaced, served until a signal).
The inbox flow it schedules is in :mod:`flows.inbox`; the server processes it starts are in
:mod:`flows.servers`."""

from __future__ import annotations

import os
from pathlib import Path

from flows.inbox import score_inbox_flow
from flows.params import AugmentParams, ScoreInboxParams, ServeParams

DEPLOYMENT_NAMES = ("ganpipe-score-inbox/score-inbox", "ganpipe-augment/augment-scheduled",
                    "ganpipe-compare/compare-on-demand")


def deployments(params: ServeParams, inbox: Path, outbox: Path) -> list:
    """The three deployments of `ganpipe serve`: score-inbox (every ``interval`` seconds), augment (on
    ``augment_cron``) and compare (on demand); the same ones ``prefect.yaml`` defines for a work pool."""
    from flows.augment import augment_flow
    from flows.compare import compare_flow

    augment = AugmentParams(data=params.augment_data, minority=params.augment_minority,
                            out=str(Path(params.augment_out).expanduser().resolve()), device=params.device)
    inbox_params = ScoreInboxParams(inbox=str(inbox), outbox=str(outbox), model=params.model, device=params.device)
    return [
        score_inbox_flow.to_deployment(name="score-inbox", interval=params.interval, concurrency_limit=1,
                                       parameters={"params": inbox_params.model_dump()}),
        augment_flow.to_deployment(name="augment-scheduled", cron=params.augment_cron,
                                   parameters={"params": augment.model_dump()}),
        compare_flow.to_deployment(name="compare-on-demand"),
    ]


def reset_deployments(api: str) -> dict[str, int]:
    """Before serving: delete the deployments an earlier `serve` registered (with their scheduled
    runs, old parameters and concurrency slots) and mark their runs that were left running as
    crashed, so nothing from a dead session blocks or repeats. Returns what was cleaned."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, \
        FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Crashed

    async def clean() -> dict[str, int]:
        counts = {"deployments": 0, "crashed_runs": 0}
        async with get_client() as prefect_client:
            ids = []
            for name in DEPLOYMENT_NAMES:
                try:
                    ids.append((await prefect_client.read_deployment_by_name(name)).id)
                except ObjectNotFound:
                    continue
            if not ids:
                return counts
            stuck = await prefect_client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids)),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]))))
            for run in stuck:
                await prefect_client.set_flow_run_state(
                    run.id, Crashed(message="its `ganpipe serve` ended before the run finished"), force=True)
                counts["crashed_runs"] += 1
            for deployment_id in ids:
                await prefect_client.delete_deployment(deployment_id)
                counts["deployments"] += 1
        return counts

    with temporary_settings({PREFECT_API_URL: api}):
        return asyncio.run(clean())


def serve_forever(params: ServeParams) -> int:
    """Serve the three :func:`deployments` until SIGINT or SIGTERM, then return ``128 + signum``.
    Starts a Prefect server on 127.0.0.1 (stopped again on the way out) unless ``PREFECT_API_URL``
    names one, and prints the API, the UI and what is served."""
    from prefect import serve as serve_deployments
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.common import DASK_ADDRESS_ENV, DASK_WORKERS_ENV
    from flows.lifecycle import OWNER_ENV, owner_token
    from flows.servers import start_prefect_server, stop

    inbox, outbox = params.folders()
    inbox.mkdir(parents=True, exist_ok=True)
    outbox.mkdir(parents=True, exist_ok=True)
    # flow runs of served deployments start in fresh processes: hand them the cluster through the environment
    if params.dask_address:
        os.environ[DASK_ADDRESS_ENV] = params.dask_address
    if params.dask_workers:
        os.environ[DASK_WORKERS_ENV] = str(params.dask_workers)
    os.environ[OWNER_ENV] = owner_token()  # its flow-run processes stop when this process is gone
    server, api = None, os.environ.get("PREFECT_API_URL")
    if not api:
        print("Starting a Prefect server on 127.0.0.1 (its SQLite database lives under .prefect-server/) ...", flush=True)
        server, api = start_prefect_server(params.port)
    status = 0
    try:
        cleaned = reset_deployments(api)
        if cleaned["deployments"] or cleaned["crashed_runs"]:
            print(f"Replaced {cleaned['deployments']} deployments of an earlier serve "
                  f"({cleaned['crashed_runs']} of its runs left running are marked crashed)", flush=True)
        with temporary_settings({PREFECT_API_URL: api}):
            served = deployments(params, inbox, outbox)
            print(f"\nPrefect API: {api}\nPrefect UI:  {api.removesuffix('/api')}")
            print("Serving 3 deployments (Ctrl-C stops):")
            print(f"  ganpipe-score-inbox/score-inbox       every {params.interval} s: new batches in {inbox} -> {outbox}")
            print(f"  ganpipe-augment/augment-scheduled     cron '{params.augment_cron}': {params.augment_data} "
                  f"{params.augment_minority} -> {params.augment_out}")
            print("  ganpipe-compare/compare-on-demand     on demand: prefect deployment run "
                  "'ganpipe-compare/compare-on-demand'", flush=True)
            serve_deployments(*served, print_starting_message=False)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (flows.lifecycle.Terminated)
        print(f"\nStopped serving ({exc or 'SIGINT'}).", flush=True)
        status = 128 + getattr(exc, "signum", 2)
    finally:
        if server is not None:
            stop(server)
            print("Stopped the Prefect server.", flush=True)
    return status
