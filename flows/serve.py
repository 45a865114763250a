"""Unattended operation: the inbox flow, the deployments `ganpipe serve` serves, and the processes
`ganpipe serve` and `ganpipe mlflow-server` start (a Prefect server and an MLflow server, both on loopback)."""

from __future__ import annotations

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

from flows.common import fan_out, task_runner
from flows.detector import score_flow
from flows.params import AugmentParams, ScoreInboxParams, ScoreParams, ServeParams
from pipelines.errors import GanpipeError
from pipelines.tracking.runs import project_home

BATCH_SUFFIXES = (".npz", ".csv")
SETTLE_SECONDS = 2.0  # a batch still being copied in is left for the next run
CLAIM_SECONDS = 3600.0  # a claim older than this is from a run that died: the batch is tried again


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
        claim = done / ".claimed"
        if claim.exists() and now - claim.stat().st_mtime < CLAIM_SECONDS:
            continue
        newest = max([p.stat().st_mtime for p in entry.rglob("*")] + [entry.stat().st_mtime]) if entry.is_dir() \
            else entry.stat().st_mtime
        if now - newest >= settle_seconds:
            found.append(entry)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def claim(folder: Path) -> bool:
    """Atomically mark a batch as taken, so two overlapping runs never score it twice."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".claimed"
    if marker.exists() and time.time() - marker.stat().st_mtime >= CLAIM_SECONDS:
        marker.unlink(missing_ok=True)
    try:
        with open(marker, "x") as handle:
            handle.write(f"{os.getpid()} {time.time()}\n")
        return True
    except FileExistsError:
        return False


@task(name="score-batch", cache_policy=NO_CACHE)
def score_one(batch: str, out: str, model: str) -> dict:
    """Score one batch; a batch that cannot be read gets ``error.txt`` instead, so it is not retried forever."""
    try:
        result = score_flow.fn(ScoreParams(batch=batch, out=out, model=model, batch_id=Path(batch).stem))
        return {"batch": batch, "status": "scored", "message": result["summary"]["message"]}
    except GanpipeError as exc:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "error.txt").write_text(str(exc) + "\n")
        return {"batch": batch, "status": "error", "message": str(exc)}


@flow(name="ganpipe-score-inbox", log_prints=True, task_runner=task_runner())
def score_inbox_flow(params: ScoreInboxParams) -> list[dict]:
    """Score every new batch in the inbox once; results go to ``outbox/<batch>/`` (default
    ``inbox/_scored``)."""
    inbox_dir = Path(params.inbox).expanduser()
    outbox_dir = Path(params.outbox).expanduser() if params.outbox else inbox_dir / "_scored"
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


def start_prefect_server(port: int | None = None, home: Path | None = None, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """``prefect server start`` on loopback with its own SQLite database under ``home``
    (default ``<project>/.prefect-server``). Returns the process and the API URL."""
    port = port or free_port()
    home = home or project_home() / ".prefect-server"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    wait_for(f"{api}/health", process, timeout, f"Prefect server (log: {home / 'server.log'})")
    return process, api


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
