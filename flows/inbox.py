"""The inbox: which batches are new, who holds each one (claims that survive crashes), scoring one
batch with Prefect's task retries, and ``score_inbox_flow``, the flow the score-inbox deployment of
`ganpipe serve` (:mod:`flows.serve`) runs at every poll."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import in_flow_run, task_runner
from flows.detector import score_flow
from flows.lifecycle import exit_with_owner
from flows.params import ScoreInboxParams, ScoreParams
from pipelines.devices import task_device
from pipelines.errors import GanpipeError
from pipelines.tracking.runs import check_tracking

BATCH_SUFFIXES = (".npz", ".csv")
SETTLE_SECONDS = 2.0  # a batch still being copied in is left for the next run
CLAIM_SECONDS = 3600.0  # a claim from another host (whose process cannot be checked) expires after this
SCORE_ATTEMPTS = 3  # an unexpected error is retried (after 5 s, then 30 s) before the batch gets error.txt
RETRY_DELAYS = (5.0, 30.0)


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


@task(name="score-batch", cache_policy=NO_CACHE, retries=SCORE_ATTEMPTS - 1, retry_delay_seconds=list(RETRY_DELAYS))
def score_one(batch: str, out: str, model: str, device: str = "auto") -> dict:
    """Score one batch on ``device``. A batch that cannot be read gets ``error.txt`` at once (it would fail the
    same way again); an unexpected error (a bug, a server that is down) is raised, so Prefect tries
    the task :data:`SCORE_ATTEMPTS` times with a growing pause (:data:`RETRY_DELAYS`) before
    :func:`score_batches` records it. Scoring resumes where an earlier attempt stopped, so no item
    is scored twice."""
    try:
        result = score_flow.fn(ScoreParams(batch=batch, out=out, model=model, batch_id=Path(batch).stem,
                                           device=task_device(device)))  # a Dask worker's own GPU, if several
    except GanpipeError as exc:
        return _give_up(batch, out, str(exc))
    release(Path(out))
    return {"batch": batch, "status": "scored", "message": result["summary"]["message"]}


def score_batches(calls: list[tuple[str, str, str, str]]) -> list[dict]:
    """Run :func:`score_one` for every ``(batch, out, model, device)``; a batch whose last attempt raised gets
    ``error.txt`` (with how often it failed and the last reason) and its claim back. Inside a Prefect
    flow run the batches are submitted to the flow's task runner (threads, or a Dask cluster) and
    Prefect retries each one; when the flow runs as a plain function (``flow.fn``) there are no
    Prefect retries, so each batch is tried once, one after another."""
    if not in_flow_run():
        results = []
        for batch, out, *how in calls:
            try:
                results.append(score_one.fn(batch, out, *how))
            except Exception as exc:  # noqa: BLE001 - recorded for this batch, the others go on
                results.append(_give_up(batch, out, _failed(1, exc)))
        return results
    futures = [score_one.submit(*args) for args in calls]
    results = []
    for (batch, out, *_), future in zip(calls, futures):
        future.wait()
        if future.state.is_failed():  # raised on its last attempt; a crashed or cancelled run still fails the flow
            results.append(_give_up(batch, out, _failed(score_one.retries + 1, future.result(raise_on_failure=False))))
        else:
            results.append(future.result())
    return results


def _failed(attempts: int, exc: BaseException) -> str:
    times = "once" if attempts == 1 else f"{attempts} times"
    return f"failed {times}, last: {type(exc).__name__}: {' '.join(str(exc).split())}"


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
    results = score_batches([(str(b), str(outbox_dir / b.stem), params.model, params.device) for b in batches])
    for result in results:
        print(f"{result['status']}: {result['batch']}: {result['message']}")
    if not results:
        print(f"no new batches in {inbox_dir}")
    return results
