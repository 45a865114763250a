"""Unattended operation: the inbox flow and the deployments `ganpipe serve` serves (the server
processes it starts are in :mod:`flows.servers`)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import fan_out, run_logger, task_runner
from flows.detector import score_flow
from flows.lifecycle import exit_with_owner
from flows.params import AugmentParams, ScoreInboxParams, ScoreParams, ServeParams
from pipelines.errors import GanpipeError
from pipelines.tracking.runs import check_tracking

BATCH_SUFFIXES = (".npz", ".csv")
SETTLE_SECONDS = 2.0  # a batch still being copied in is left for the next run
CLAIM_SECONDS = 3600.0  # a claim from another host (whose process cannot be checked) expires after this
SCORE_ATTEMPTS = 3  # an unexpected error is retried (after 5 s, then 30 s) before the batch gets error.txt
RETRY_DELAYS = (5.0, 30.0)
DEPLOYMENT_NAMES = ("ganpipe-score-inbox/score-inbox", "ganpipe-augment/augment-scheduled",
                    "ganpipe-compare/compare-on-demand")


def pending_batches(inbox: Path, outbox: Path, settle_seconds: float = SETTLE_SECONDS) -> list[Path]:
    """Batches in ``inbox`` (folders, .npz, .csv) with no result in ``outbox`` yet, oldest first."""
    if not inbox.is_dir():
        raise GanpipeError(f"inbox folder not found: {inbox}")
    now = time.time()
    found = []
    for entry in inbox.iterdir():
        if entry.name.startswith((".", "_")) or entry.resolve() == outbox.resolve():
            continue
        if not (entry.is_dir() or entry.suffix.lower() in BATCH_SUFFIXES):
            continue
        done = outbox / entry.stem
        if (done / "scores.csv").exists() or (done / "error.txt").exists():
            continue
        if claim_is_live(done / ".claimed"):
            continue
        newest = max([p.stat().st_mtime for p in entry.rglob("*")] + [entry.stat().st_mtime]) if entry.is_dir() \
            else entry.stat().st_mtime
        if now - newest >= settle_seconds:
            found.append(entry)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def _owner() -> dict:
    """Who holds a claim: this host, this process (with its start time, so a reused pid does not
    pass for the owner) and the Prefect flow run, when there is one."""
    import psutil

    from flows.common import prefect_tags

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time(),
            "flow_run": prefect_tags().get("prefect.flow_run_id"), "claimed_at": time.time()}


def claim_is_live(marker: Path) -> bool:
    """Whether the claim ``marker`` still belongs to a running owner. A claim on this host is live
    while its process runs; a claim from another host (or an unreadable one) while it is younger
    than :data:`CLAIM_SECONDS`."""
    import psutil

    try:
        owner = json.loads(marker.read_text())
        age = time.time() - marker.stat().st_mtime
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        owner, age = {}, time.time() - marker.stat().st_mtime if marker.exists() else CLAIM_SECONDS
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname() or "pid" not in owner:
        return age < CLAIM_SECONDS
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 1.0
    except (psutil.Error, ValueError, TypeError):
        return False


def claim(folder: Path) -> bool:
    """Atomically mark a batch as taken, so two overlapping runs never score it twice. A claim whose
    owner is gone (killed, crashed) is taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".claimed"
    if marker.exists() and not claim_is_live(marker):
        stale = folder / f".claimed.stale-{os.getpid()}"
        try:
            os.replace(marker, stale)  # only one of two racing pollers moves the dead claim away
        except FileNotFoundError:
            return False
        if claim_is_live(stale):  # a racing poller had already replaced the dead claim: give it back
            os.replace(stale, marker)
            return False
        stale.unlink()
    try:
        with open(marker, "x") as handle:
            handle.write(json.dumps(_owner()) + "\n")
        return True
    except FileExistsError:
        return False


def release(folder: Path) -> None:
    (folder / ".claimed").unlink(missing_ok=True)


@task(name="score-batch", cache_policy=NO_CACHE)
def score_one(batch: str, out: str, model: str) -> dict:
    """Score one batch. A batch that cannot be read gets ``error.txt`` at once (it would fail the
    same way again); an unexpected error (a bug, a server that is down) is tried
    :data:`SCORE_ATTEMPTS` times with a growing pause, and only then ends in ``error.txt``. Scoring
    resumes where an earlier attempt stopped, so no item is scored twice."""
    params = ScoreParams(batch=batch, out=out, model=model, batch_id=Path(batch).stem)
    for attempt in range(1, SCORE_ATTEMPTS + 1):
        try:
            result = score_flow.fn(params)
            release(Path(out))
            return {"batch": batch, "status": "scored", "message": result["summary"]["message"]}
        except GanpipeError as exc:
            return _give_up(batch, out, str(exc))
        except Exception as exc:  # noqa: BLE001 - anything else is retried, then recorded
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            if attempt == SCORE_ATTEMPTS:
                return _give_up(batch, out, f"failed {SCORE_ATTEMPTS} times, last: {reason}")
            run_logger().warning("scoring %s failed (attempt %d of %d): %s", batch, attempt, SCORE_ATTEMPTS, reason)
            time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1])
    raise AssertionError("unreachable")


def _give_up(batch: str, out: str, reason: str) -> dict:
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "error.txt").write_text(reason + "\n")
    release(Path(out))
    return {"batch": batch, "status": "error", "message": reason}


@flow(name="ganpipe-score-inbox", log_prints=True, task_runner=task_runner())
def score_inbox_flow(params: ScoreInboxParams) -> list[dict]:
    """Score every new batch in the inbox once; results go to ``outbox/<batch>/`` (default
    ``inbox/_scored``)."""
    exit_with_owner()  # a flow-run process of `ganpipe serve` ends with it
    inbox_dir, outbox_dir = params.folders()
    try:
        check_tracking()
    except GanpipeError as exc:  # batches stay unclaimed and are scored at a later poll
        print(f"waiting: {exc}")
        return []
    batches = [b for b in pending_batches(inbox_dir, outbox_dir) if claim(outbox_dir / b.stem)]
    results = fan_out(score_one, [(str(b), str(outbox_dir / b.stem), params.model) for b in batches])
    for result in results:
        print(f"{result['status']}: {result['batch']}: {result['message']}")
    if not results:
        print(f"no new batches in {inbox_dir}")
    return results


def deployments(params: ServeParams, inbox: Path, outbox: Path) -> list:
    """The three deployments of `ganpipe serve`: score-inbox (every ``interval`` seconds), augment (on
    ``augment_cron``) and compare (on demand); the same ones ``prefect.yaml`` defines for a work pool."""
    from flows.augment import augment_flow
    from flows.compare import compare_flow

    augment = AugmentParams(data=params.augment_data, minority=params.augment_minority,
                            out=str(Path(params.augment_out).expanduser().resolve()))
    inbox_params = ScoreInboxParams(inbox=str(inbox), outbox=str(outbox), model=params.model)
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
