"""Ending cleanly: SIGTERM and SIGINT end a ``ganpipe`` command, and every process it started,
within :data:`GRACE_SECONDS` plus a few seconds, with status ``128 + signum``.

A command may have children of its own: its local Prefect API server, a local Dask cluster, the
flow-run processes `ganpipe serve` starts. On the first signal:

1. every loop of the process is asked to stop (:func:`pipelines.stopping.request_stop`): training
   in worker threads, which no signal reaches, stops at its next step;
2. the main thread gets :class:`Terminated` (a ``KeyboardInterrupt``), so Prefect marks the run
   crashed, MLflow runs end KILLED and ``finally`` blocks run;
3. a watchdog stops every child and exits the process if it has not ended after
   :data:`GRACE_SECONDS` (a library waiting on a lock, a server that does not answer).

During a flow run Prefect installs a SIGTERM handler of its own; the signal still reaches step 1
and 3 through the interpreter's wakeup file descriptor, which every signal writes to whichever
Python handler is installed. A second SIGINT (Ctrl-C twice) ends the process at once.

A process started by `ganpipe serve` (a flow run) watches its owner (:func:`exit_with_owner`): when
`serve` is gone, even by SIGKILL, it stops within a few seconds instead of running on unowned.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from pipelines.stopping import request_stop

GRACE_SECONDS = 6.0
EXIT_SECONDS = 15.0  # after a command returned, the interpreter's own shutdown gets this long
OWNER_ENV = "GANPIPE_OWNER"  # "pid:start-time" of the `ganpipe serve` that started this process
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_first_signal: list[int] = []
_lock = threading.Lock()


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (or SIGINT): unwind, then exit with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def received_signal() -> int | None:
    """The first SIGTERM/SIGINT this process got inside :func:`signals_end_the_command`, if any."""
    return _first_signal[0] if _first_signal else None


def stop_children(timeout: float = 3.0) -> list[int]:
    """Terminate every descendant of this process (politely, then SIGKILL after ``timeout``);
    returns the pids that were running."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return [child.pid for child in children]


def _exit_later(seconds: float, status: int) -> None:
    """In ``seconds``: stop every child and leave with ``status``, whatever the process is doing then."""

    def expire() -> None:
        stop_children(timeout=1.0)
        os._exit(status)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _on_signal(signum: int, grace: float) -> bool:
    """Steps 1 and 3 of the module doc, once per process; returns whether this was the first signal."""
    with _lock:
        if _first_signal:
            if signum == signal.SIGINT and _first_signal[0] == signal.SIGINT:
                stop_children(timeout=1.0)
                os._exit(128 + signum)
            return False
        _first_signal.append(signum)
    request_stop(signal.Signals(signum).name)
    _exit_later(grace, 128 + signum)
    return True


def _watch_wakeup_fd(read_fd: int, grace: float, done: threading.Event) -> None:
    import select

    while not done.is_set():
        ready, _, _ = select.select([read_fd], [], [], 0.5)
        if not ready:
            continue
        try:
            data = os.read(read_fd, 64)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            return
        for signum in data:
            if signum in _SIGNALS:
                _on_signal(signum, grace)


@contextmanager
def signals_end_the_command(grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT end the command as the module doc says; after a signal,
    leaving the block stops every child process. On a normal exit the children are left to their
    owners (the command stops its Prefect API after delivering the last logs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    raised: list[int] = []

    def handler(signum, frame) -> None:
        _on_signal(signum, grace)  # the watcher thread may have seen the signal first
        if not raised:
            raised.append(signum)
            raise Terminated(signum)

    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    done = threading.Event()
    watcher = threading.Thread(target=_watch_wakeup_fd, args=(read_fd, grace, done), name="ganpipe-signals",
                               daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
        done.set()
        watcher.join(1.0)
        os.close(read_fd)
        os.close(write_fd)
        if _first_signal:
            stop_children()


def exit_soon(status: int, seconds: float = EXIT_SECONDS) -> None:
    """The command has printed its result: if the interpreter's shutdown (joining threads, Prefect's
    at-exit deliveries) takes longer than ``seconds``, end the process with ``status`` anyway."""
    _exit_later(seconds, status)


def owner_token() -> str:
    """``pid:start-time`` of this process, for :data:`OWNER_ENV` (a reused pid does not pass for it)."""
    import psutil

    return f"{os.getpid()}:{psutil.Process().create_time():.3f}"


def _owner_alive(token: str) -> bool:
    import psutil

    pid, _, started = token.partition(":")
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 1.0
    except (psutil.Error, ValueError):
        return False


def exit_with_owner(poll_seconds: float = 1.0, grace: float = GRACE_SECONDS) -> bool:
    """In a process started by `ganpipe serve` (:data:`OWNER_ENV` names it): once the owner is gone,
    request a stop and exit within ``grace`` seconds. Returns whether a watch was started (once per
    process; never in the owner itself)."""
    token = os.environ.get(OWNER_ENV, "")
    if not token or token.split(":")[0] == str(os.getpid()):
        return False
    with _lock:
        if any(t.name == "ganpipe-owner-watch" for t in threading.enumerate()):
            return False

        def watch() -> None:
            while _owner_alive(token):
                time.sleep(poll_seconds)
            request_stop("its ganpipe serve ended")
            _exit_later(grace, 128 + signal.SIGTERM)

        threading.Thread(target=watch, name="ganpipe-owner-watch", daemon=True).start()
    return True
