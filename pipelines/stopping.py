"""A process-wide request to stop: a command's signal handler sets it (``flows.lifecycle``); long
loops (GAN and detector training steps, classifier epochs, compare arms, scored chunks, images read)
call :func:`check_stop` between steps, which raises :class:`Stopped`. Worker threads cannot be
interrupted by a signal, so this is how a SIGTERM reaches the training that runs in them.

Imports nothing of ganpipe: every package may use it, the GAN families included.
"""

from __future__ import annotations

import threading

_requested = threading.Event()
_reason: list[str] = []


class Stopped(KeyboardInterrupt):
    """Raised by :func:`check_stop` once a stop was requested. A ``KeyboardInterrupt``, so the
    ``except Exception`` of a retry loop does not swallow it and MLflow runs end as KILLED."""


def request_stop(reason: str) -> None:
    """Ask every loop of this process to stop at its next check (``reason``: e.g. ``"SIGTERM"``)."""
    if not _requested.is_set():
        _reason.append(reason)
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def check_stop() -> None:
    """Raise :class:`Stopped` if a stop was requested; cheap enough for every training step."""
    if _requested.is_set():
        raise Stopped(_reason[0] if _reason else "stop requested")


def clear_stop() -> None:
    """Forget a stop request (for a long-lived process that handled it, and for tests)."""
    _requested.clear()
    _reason.clear()
