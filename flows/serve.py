"""Unattended operation: the inbox flow, the deployments `ganpipe serve` serves, and the processes
`ganpipe serve` and `ganpipe mlflow-server` start (a Prefect server and an MLflow server, both on loopback)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import fan_out, run_logger, task_runner
from flows.detector import score_flow
from flows.params import AugmentParams, ScoreInboxParams, ScoreParams, ServeParams
from pipelines.errors import GanpipeError
from pipelines.tracking.runs import check_tracking, project_home

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
    inbox_dir = Path(params.inbox).expanduser()
    outbox_dir = Path(params.outbox).expanduser() if params.outbox else inbox_dir / "_scored"
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail with the process's own output if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GanpipeError(f"{what} exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise GanpipeError(f"{what} did not answer at {url} within {timeout:.0f} s")


def _die_with_parent() -> None:
    """In a child before exec (Linux): get SIGTERM when the process that started it dies, even by
    SIGKILL, so a killed `ganpipe serve` leaves no server behind."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_leftover_server(home: Path) -> bool:
    """Stop the Prefect server a dead `ganpipe serve` left for this project (recorded in
    ``server.json``); returns whether there was one."""
    import signal

    import psutil

    record = home / "server.json"
    try:
        owner = json.loads(record.read_text())
        server = psutil.Process(int(owner["pid"]))
        if abs(server.create_time() - float(owner["started"])) >= 1.0:
            raise psutil.NoSuchProcess(int(owner["pid"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError, psutil.Error):
        record.unlink(missing_ok=True)
        return False
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)
    except (psutil.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    record.unlink(missing_ok=True)
    return True


def start_prefect_server(port: int | None = None, home: Path | None = None, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """``prefect server start`` on loopback with its own SQLite database under ``home``
    (default ``<project>/.prefect-server``). Returns the process and the API URL.

    A server left running by an earlier `serve` of the same home is stopped first; the new one dies
    with the process that started it (Linux). SQLite waits up to a minute for a lock instead of
    failing a state change, and the scheduler keeps a short queue of future runs."""
    import psutil

    port = port or free_port()
    home = home or project_home() / ".prefect-server"
    home.mkdir(parents=True, exist_ok=True)
    stop_leftover_server(home)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
           "PREFECT_SERVER_DATABASE_TIMEOUT": "60", "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "10",
           "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "2"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
    )
    (home / "server.json").write_text(json.dumps({"pid": process.pid, "port": port,
                                                  "started": psutil.Process(process.pid).create_time()}))
    api = f"http://127.0.0.1:{port}/api"
    wait_for(f"{api}/health", process, timeout, f"Prefect server (log: {home / 'server.log'})")
    return process, api


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


def mlflow_server_command(port: int, backend_store_uri: str | None = None, artifacts: Path | None = None) -> list[str]:
    """``mlflow server`` on loopback: the project's SQLite store and artifact folder unless told otherwise."""
    home = project_home() / "mlflow"
    backend = backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
    if backend.startswith("sqlite:///"):
        Path(backend[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    destination = artifacts or home / "artifacts"
    destination.mkdir(parents=True, exist_ok=True)
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [mlflow_bin, "server", "--backend-store-uri", backend, "--artifacts-destination", str(destination),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def start_mlflow_server(port: int | None = None, backend_store_uri: str | None = None, artifacts: Path | None = None,
                        log_file: Path | None = None, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(mlflow_server_command(port, backend_store_uri, artifacts), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/health", process, timeout, "MLflow server")
    return process, url


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server we started (its whole process group), politely first."""
    import signal

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)
