"""Ending cleanly: SIGTERM and SIGINT end a ``ganpipe`` command, and every process it started,
within :data:`GRACE_SECONDS` plus a few seconds, with a non-zero status.

A command may have children of its own: Prefect's temporary API server (a uvicorn process), a local
Dask cluster, the flow-run processes `ganpipe serve` starts. On a signal the main thread gets
:class:`Terminated` (a ``KeyboardInterrupt``, so Prefect marks the run cancelled/crashed and the
``finally`` blocks run); if the process has not ended after :data:`GRACE_SECONDS` (a library waiting
on a lock, a server that does not answer), a watchdog stops every child and exits the process.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

GRACE_SECONDS = 6.0


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (or SIGINT): unwind, then exit with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_children(timeout: float = 3.0) -> list[int]:
    """Terminate every descendant of this process (politely, then SIGKILL after ``timeout``);
    returns the pids that were still running."""
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


def _watchdog(signum: int, grace: float) -> None:
    def expire() -> None:
        stop_children(timeout=1.0)
        os._exit(128 + signum)

    timer = threading.Timer(grace, expire)
    timer.daemon = True
    timer.start()


@contextmanager
def signals_end_the_command(grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT raise :class:`Terminated` in the main thread and arm the
    watchdog; after a signal, leaving the block stops every child process. On a normal exit the
    children are left to their owners (Prefect stops its temporary server after delivering the
    last logs) and swept once more when the interpreter exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, frame) -> None:
        if not received:
            _watchdog(signum, grace)
        received.append(signum)
        if len(received) == 1:
            raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    atexit.register(stop_children)  # registered first, so it runs after Prefect's own exit handlers
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if received:
            stop_children()
