"""The server processes ganpipe starts, on loopback unless told otherwise: the local Prefect API a
one-shot command runs its flow against (:func:`local_prefect_api`), the Prefect server of `ganpipe
serve` and the MLflow server of `ganpipe mlflow-server` (its ``--host`` may name another interface).

Each runs in its own session (a signal to the command's process group does not stop it before the
command has reported to it) and dies with the process that started it, even by SIGKILL (Linux).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.errors import GanpipeError
from pipelines.tracking.runs import project_home

START_SECONDS_ENV = "GANPIPE_PREFECT_START_SECONDS"
START_SECONDS = 300.0  # a first start on a cold, busy machine migrates a new database: give it time
SLOW_START_SECONDS = 10.0
DRAIN_SECONDS = 5.0  # logs and events still queued for the local API when a command ends
LOCAL_API_ENV = "GANPIPE_LOCAL_PREFECT_API"  # the URL of the local API while a command runs against it
BROWSE_URL = "http://127.0.0.1:4200"  # where `prefect server start` serves the UI (its default port)


@contextmanager
def local_prefect_api(timeout: float | None = None) -> Iterator[str]:
    """Run the block against a Prefect API and yield its URL: ``PREFECT_API_URL`` when it is set;
    else a local API started here for the block, on a free loopback port.

    The local API is the one Prefect's own temporary server runs (no UI, no background services),
    on the database of ``PREFECT_HOME`` (so the command's flow runs can be browsed afterwards with
    ``prefect server start``). It gets ``timeout`` seconds to answer (``GANPIPE_PREFECT_START_SECONDS``,
    default :data:`START_SECONDS`, where Prefect's temporary server gets 20) and fails in one line
    naming its log otherwise. After the block, Prefect's queued logs and events are delivered (at
    most :data:`DRAIN_SECONDS`) before the API stops, so nothing waits at exit on an API that is gone.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():  # set in the environment, a profile or a test harness
        yield PREFECT_API_URL.value()
        return
    timeout = timeout or float(os.environ.get(START_SECONDS_ENV) or START_SECONDS)
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "ganpipe-api.log"
    port = free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(f"{api}/health", process, timeout, "the local Prefect API",
                 slow_note=f"ganpipe: starting the local Prefect API (a first start creates its database; "
                           f"waiting up to {timeout:.0f} s) ...")
    except GanpipeError as exc:
        stop(process, timeout=5)
        raise GanpipeError(f"{exc} (its log: {log_path}); on a slow machine set {START_SECONDS_ENV}=600, or point "
                           "PREFECT_API_URL at a running server ('prefect server start')") from None
    os.environ["PREFECT_API_URL"] = api  # processes the flow starts (Dask workers) use it too
    os.environ[LOCAL_API_ENV] = api
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            try:
                yield api
            finally:
                deliver_prefect_backlog(DRAIN_SECONDS)
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        os.environ.pop(LOCAL_API_ENV, None)
        stop(process, timeout=5)


def flow_run_url(run_id: str, api: str | None) -> tuple[str, str | None]:
    """Where the flow run ``run_id`` can be opened once the command is over, and what to do first:
    against the local API (which ends with the command), the run is in ``PREFECT_HOME``'s database
    and ``prefect server start`` serves it at :data:`BROWSE_URL`; against a server
    (``PREFECT_API_URL``), that server's UI."""
    if not api or api == os.environ.get(LOCAL_API_ENV):
        home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
        return (f"{BROWSE_URL}/runs/flow-run/{run_id}",
                f"stored in {home / 'prefect.db'}: run 'prefect server start' (same PREFECT_HOME) to open the link")
    base = api.rstrip("/")
    base = base[: -len("/api")] if base.endswith("/api") else base
    return f"{base}/runs/flow-run/{run_id}", None


def deliver_prefect_backlog(timeout: float) -> None:
    """Send the logs and events Prefect still queues, waiting at most ``timeout`` seconds. Prefect
    would otherwise deliver them at interpreter exit with no time limit."""
    try:  # Prefect has no public call for this; without it, the at-exit delivery still happens
        from prefect._internal.concurrency.services import _QueueServiceBase
    except ImportError:
        return
    try:
        _QueueServiceBase.drain_all(timeout=timeout, at_exit=False)
    except Exception:  # noqa: BLE001 - a failed delivery of logs must not fail the command
        pass

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float, what: str, slow_note: str | None = None) -> None:
    """Poll ``url`` until it answers 200; fail in one line if the process dies or times out. After
    :data:`SLOW_START_SECONDS` without an answer, ``slow_note`` (if given) is printed once."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if slow_note and time.monotonic() - started > SLOW_START_SECONDS:
            print(slow_note, file=sys.stderr, flush=True)
            slow_note = None
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
    SIGKILL, so a killed command leaves no server behind."""
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


def mlflow_server_command(port: int, backend_store_uri: str | None = None, artifacts: Path | None = None,
                          host: str = "127.0.0.1") -> list[str]:
    """``mlflow server`` on ``host`` (loopback by default: the server has no authentication) with the
    project's SQLite store and artifact folder unless told otherwise."""
    home = project_home() / "mlflow"
    backend = backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
    if backend.startswith("sqlite:///"):
        Path(backend[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    destination = artifacts or home / "artifacts"
    destination.mkdir(parents=True, exist_ok=True)
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [mlflow_bin, "server", "--backend-store-uri", backend, "--artifacts-destination", str(destination),
            "--host", host, "--port", str(port), "--workers", "1"]


def run_mlflow_server(port: int, backend_store_uri: str | None = None, artifacts: Path | None = None,
                      host: str = "127.0.0.1") -> int:
    """``mlflow server`` on ``host`` in the foreground until it ends; it dies with this process (Linux)."""
    process = subprocess.Popen(mlflow_server_command(port, backend_store_uri, artifacts, host), start_new_session=True,
                               preexec_fn=_die_with_parent)
    try:
        return process.wait()
    finally:
        stop(process, timeout=10)


def start_mlflow_server(port: int | None = None, backend_store_uri: str | None = None, artifacts: Path | None = None,
                        log_file: Path | None = None, timeout: float = 120,
                        host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on ``host`` in the background (output to ``log_file``); returns the process
    and its URL once it answers."""
    port = port or free_port()
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(mlflow_server_command(port, backend_store_uri, artifacts, host), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
    url = server_url(host, port)
    wait_for(f"{url}/health", process, timeout, "MLflow server")
    return process, url


def server_url(host: str, port: int) -> str:
    """The URL clients use for a server bound to ``host``: an unspecified address (all interfaces)
    is reached through this machine's name, an IPv6 literal in brackets."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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
