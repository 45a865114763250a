"""Signal matrix (issue 23): every long phase of every command, ended by SIGINT, SIGTERM or SIGKILL
while another CPU-heavy process runs.

Each cell starts a real ``ganpipe`` process (``python -m flows.cli``) in a session of its own, on its
own MLflow store and Prefect home, waits until the phase is running (a line of its progress, or
the time it takes to reach it), sends the signal to the command's process only (as a scheduler or
a container runtime does) and records:

- ``exit s``: seconds from the signal to the end of the command (SIGKILL: 0);
- ``survivors``: processes of the command's session still alive 5 s after it ended (its Prefect
  API, Dask workers, served flow runs);
- ``output``: whether what the phase writes is absent or clearly partial (never presented as complete);
- ``mlflow``: the states of the runs in its store, after the next command's sweep for runs whose
  process died (:func:`pipelines.tracking.runs.end_orphaned_runs`): none may stay RUNNING.

A cell passes when the exit took at most :data:`EXIT_LIMIT` s (SIGINT, SIGTERM) with a non-zero
status, nothing survived, the output is not presented as complete and no run is left RUNNING.
``make bench`` runs and tabulates every cell; ``tests/integration/test_signal_matrix.py`` runs
:data:`TEST_CELLS`: every phase once, each of the three signals on two or three phases (the whole
matrix took 12 minutes of a test run).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pipelines.text import markdown_table

EXIT_LIMIT = 10.0
SURVIVOR_GRACE = 5.0  # seconds a process of the signalled command may outlive it (its children notice it is gone)
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
PHASE_TIMEOUT = 240.0  # to reach the phase on a busy machine (a first start migrates the Prefect database)


@dataclass(frozen=True)
class Phase:
    """One long phase of one command: how to start it (``{work}`` is the cell's folder), how to know
    it runs (``marker``: a line of the command's output; ``delay``: seconds after the marker, or after
    the start when there is none) and what it would write when complete (``complete``, relative to
    ``work``), which must not exist after the signal."""

    name: str
    argv: tuple[str, ...]
    marker: str | None
    complete: tuple[str, ...]
    delay: float = 1.0
    setup: Callable[[Path], None] | None = None
    needs_detector: bool = False
    before_server: bool = False  # the phase runs before the command starts any child process
    workers: int = 0  # Dask worker processes that must be running when the signal is sent


def _big_folder(work: Path) -> None:
    """Three classes of 4,000 PNGs (28x28 grey): reading them lasts several seconds."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        folder = work / "folder" / name
        folder.mkdir(parents=True)
        for i in range(4000):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i:05d}.png")


def _big_batch(work: Path) -> None:
    """An .npz batch of 300,000 8x8 images for the digits detector."""
    x = np.random.default_rng(0).integers(0, 17, (300_000, 8, 8), dtype=np.uint8)
    np.savez(work / "batch.npz", x=x)


def _inbox_batch(work: Path) -> None:
    (work / "inbox").mkdir()


LONG_GAN = ("--data", "digits", "--minority", "3:5")  # GANs of 3,000 steps: a progress line every 150
PHASES = (
    Phase("augment: reading images", ("augment", "--data", "folder:{work}/folder", "--minority", "c:5", "--out",
                                      "{work}/out"), None, ("out/synthetic.npz",), delay=2.0, setup=_big_folder,
          before_server=True),
    Phase("augment: GAN training", ("augment", *LONG_GAN, "--steps", "3000", "--out", "{work}/out"), "GAN steps",
          ("out/synthetic.npz",)),
    # compare's seeds start in worker threads (or Dask workers) as soon as the flow says what it compares:
    # each trains its class judge, then its GAN, or the classifier of its first arm
    Phase("compare: GAN in worker threads", ("compare", *LONG_GAN, "--seeds", "2", "--gan-steps", "3000",
                                             "--arms", "none,gan", "--out", "{work}/out"), "comparing",
          ("out/comparison.csv",), delay=5.0),
    Phase("compare: classifier arms", ("compare", *LONG_GAN, "--seeds", "2", "--epochs", "60", "--arms",
                                       "none,ros,smote", "--out", "{work}/out"), "comparing", ("out/comparison.csv",),
          delay=5.0),
    Phase("compare: GAN in Dask workers", ("compare", *LONG_GAN, "--seeds", "2", "--gan-steps", "3000", "--arms",
                                           "none,gan", "--dask-workers", "2", "--out", "{work}/out"), "comparing",
          ("out/comparison.csv",), delay=15.0, workers=2),
    Phase("train-detector: training", ("train-detector", "--data", "digits", "--normal", "0", "--epochs", "5000",
                                       "--name", "signal-detector", "--out", "{work}/out"), "f-AnoGAN", ()),
    Phase("score: scoring a batch", ("score", "{work}/batch.npz", "--out", "{work}/scored", "--model",
                                     "models:/ganpipe-detector/1", "--chunk-size", "64"), "scoring",
          ("scored/scores.csv",), setup=_big_batch, needs_detector=True),
    Phase("serve: waiting for batches", ("serve", "--inbox", "{work}/inbox", "--interval", "5", "--port", "{port}",
                                         "--model", "models:/ganpipe-detector/1"), "Serving 3 deployments", (),
          delay=3.0, setup=_inbox_batch, needs_detector=True),
)


# Every phase once, every signal on more than one phase: the cells ``make test`` runs. SIGTERM (what a
# scheduler or container runtime sends) goes to the phases that start other processes or threads.
TEST_CELLS = tuple(zip(PHASES, ("SIGINT", "SIGKILL", "SIGTERM", "SIGINT", "SIGTERM", "SIGTERM", "SIGKILL",
                                "SIGINT")))


@dataclass
class Cell:
    phase: str
    signal: str
    exit_seconds: float | None = None
    status: int | None = None
    survivors: list[str] = field(default_factory=list)
    output_ok: bool = False
    runs: dict[str, int] = field(default_factory=dict)
    problem: str = ""

    @property
    def passed(self) -> bool:
        graceful = self.signal != "SIGKILL"
        in_time = not graceful or (self.exit_seconds is not None and self.exit_seconds <= EXIT_LIMIT)
        return (not self.problem and in_time and self.status not in (None, 0) and not self.survivors
                and self.output_ok and "RUNNING" not in self.runs)

    def row(self) -> dict:
        return {"phase": self.phase, "signal": self.signal,
                "exit s": "-" if self.signal == "SIGKILL" else
                ("timeout" if self.exit_seconds is None else f"{self.exit_seconds:.1f}"),
                "status": self.status, "survivors": len(self.survivors),
                "output": "absent or partial" if self.output_ok else "PRESENTED AS COMPLETE",
                "mlflow runs": ", ".join(f"{n} {s}" for s, n in sorted(self.runs.items())) or "none",
                "pass": "yes" if self.passed else f"NO {self.problem}".strip()}


def _session(sid: int) -> list[str]:
    import psutil

    alive = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getsid(process.pid) == sid and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(process.info["cmdline"] or [])[:120])
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return alive


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def environment(work: Path, home: Path, prefect_home: Path) -> dict[str, str]:
    """A user's environment: none of the caller's Prefect, MLflow, Dask or ganpipe settings (a test
    session sets several, and MLflow exports the registry it last used), homes of the cell's own, and
    one torch thread beside the busy process (two spinning OpenMP threads on a shared core slow
    training 3-4x, which would only lengthen every cell, not change how a signal is handled)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "GANPIPE_", "DASK_"))}
    return {**env, "GANPIPE_HOME": str(home), "PREFECT_HOME": str(prefect_home), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1"}


def run_cell(phase: Phase, signame: str, work: Path, template: Path | None = None) -> Cell:
    """Run one cell in the empty folder ``work``. ``template``: a ganpipe home with a registered
    detector and a migrated Prefect database to start from (copied), so cells do not pay for them."""
    cell = Cell(phase.name, signame)
    work.mkdir(parents=True, exist_ok=True)
    home, prefect_home = work / "home", work / "prefect"
    if template is not None:
        shutil.copytree(template / "home", home)
        shutil.copytree(template / "prefect", prefect_home, ignore=shutil.ignore_patterns("*.log"))
    if phase.setup:
        phase.setup(work)
    argv = [a.replace("{work}", str(work)).replace("{port}", str(_free_port())) for a in phase.argv]
    log_path = work / "command.log"
    with open(log_path, "wb") as log:
        command = subprocess.Popen([sys.executable, "-m", "flows.cli", *argv], env=environment(work, home, prefect_home),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    output = lambda: log_path.read_text(errors="replace")  # noqa: E731
    try:
        deadline = time.monotonic() + PHASE_TIMEOUT
        while phase.marker and phase.marker not in output():
            if command.poll() is not None or time.monotonic() > deadline:
                cell.problem = f"phase not reached (status {command.poll()}): {output()[-300:]!r}"
                return cell
            time.sleep(0.2)
        time.sleep(phase.delay)
        if command.poll() is not None:
            cell.problem = f"ended before the signal (status {command.returncode})"
            return cell
        if phase.before_server and _children(command.pid):
            cell.problem = "the phase was not reached before a child process started"
        if phase.workers and _dask_workers(command.pid) < phase.workers:
            cell.problem = f"fewer than {phase.workers} Dask workers ran when the signal was sent"
        sent = time.monotonic()
        command.send_signal(getattr(signal, signame))
        try:
            cell.status = command.wait(timeout=EXIT_LIMIT + 20)
            cell.exit_seconds = time.monotonic() - sent
        except subprocess.TimeoutExpired:
            cell.problem = "did not exit"
        cell.survivors = _survivors(command.pid, SURVIVOR_GRACE)
        cell.output_ok = not any((work / path).exists() for path in phase.complete)
        cell.runs = _run_states(home)
        return cell
    finally:
        for pid in [command.pid, *_children(command.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _kill_session(command.pid)
        command.wait(10)


def _survivors(sid: int, grace: float) -> list[str]:
    """The processes of session ``sid`` still alive ``grace`` seconds from now, or none as soon as
    the session is empty (children that notice their parent is gone get those seconds)."""
    deadline = time.monotonic() + grace
    while True:
        alive = _session(sid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.25)


def _dask_workers(pid: int) -> int:
    import psutil

    count = 0
    for child in _children(pid):
        try:
            count += "spawn_main" in " ".join(psutil.Process(child).cmdline())
        except psutil.Error:
            continue
    return count


def _kill_session(sid: int) -> None:
    import psutil

    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid:
                process.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_states(home: Path) -> dict[str, int]:
    """Run states in the cell's store after the sweep the next ganpipe command does, run in a fresh
    process as that command would (it sees which owners are gone)."""
    db = home / "mlflow" / "mlflow.db"
    if not db.exists():
        return {}
    code = ("import collections, json; from pipelines.tracking.runs import client, end_orphaned_runs, EXPERIMENTS; "
            "end_orphaned_runs(); c = client(); ids = [e.experiment_id for e in c.search_experiments()]; "
            "print(json.dumps(collections.Counter(r.info.status for r in c.search_runs(ids, max_results=1000))))")
    env = environment(home.parent, home, home.parent / "prefect")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    import json

    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"unreadable": 1}


def prepare_template(folder: Path) -> Path:
    """A ganpipe home with the detector ``ganpipe-detector`` version 1 (digits, normal class 0, a
    short training) and a Prefect home whose database is migrated: the start of every cell."""
    env = environment(folder, folder / "home", folder / "prefect")
    subprocess.run([sys.executable, "-m", "flows.cli", "train-detector", "--data", "digits", "--normal", "0",
                    "--epochs", "1", "--out", str(folder / "detector")], env=env, check=True, capture_output=True,
                   timeout=900)
    return folder


class CpuLoad:
    """A busy loop in another process for the duration of a ``with`` block (the machine is shared)."""

    def __enter__(self) -> "CpuLoad":
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait()


def run_matrix(folder: Path, phases=PHASES, signals=SIGNALS, parallel: int = 2, plan=None) -> list[Cell]:
    """Every cell of ``phases`` x ``signals`` (or the (phase, signal) pairs of ``plan``), ``parallel``
    at a time, beside a busy process: the machine is loaded by the busy loop and by the other cell
    (each command trains with one torch thread)."""
    from concurrent.futures import ThreadPoolExecutor

    template = prepare_template(folder / "template")
    plan = list(plan) if plan is not None else [(phase, signame) for phase in phases for signame in signals]

    def one(numbered):
        number, (phase, signame) = numbered
        cell = run_cell(phase, signame, folder / f"cell{number}", template)
        print(f"[signals] {phase.name} / {signame}: {'pass' if cell.passed else 'FAIL ' + cell.problem}", flush=True)
        return cell

    with CpuLoad(), ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, enumerate(plan)))


def run(quick: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="ganpipe-signals-") as tmp:
        cells = run_matrix(Path(tmp), PHASES[1:3] if quick else PHASES, ("SIGTERM",) if quick else SIGNALS)
    table = pd.DataFrame([c.row() for c in cells])
    passed = sum(c.passed for c in cells)
    return (f"## Signals: {len(cells)} cells of commands x phases x signals, under CPU load\n\n"
            "Each cell starts a real `ganpipe` command (one torch thread) while a busy loop runs in another process "
            "and another cell runs beside it, waits until the "
            "phase is running, signals the command's process only and checks: exit within "
            f"{EXIT_LIMIT:.0f} s with a non-zero status (SIGINT, SIGTERM), no process of its session alive 5 s "
            "later, its output absent or partial (never complete-looking), and no MLflow run left RUNNING after "
            "the next command's sweep for runs whose process died (KILLED, or FAILED with the reason). "
            f"{passed} of {len(cells)} cells pass. `make test` runs every phase once, each signal on two or three "
            "phases (`tests/integration/test_signal_matrix.py`).\n\n" + markdown_table(table))
