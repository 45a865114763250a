"""SIGTERM ends a command and every process it started, within 10 s, with a non-zero status, even
when the machine is busy. Also: a Prefect server left by a killed `serve` is replaced, not fatal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.integration


def _session_processes(session: int) -> list[psutil.Process]:
    alive = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return alive


def test_sigterm_under_load_ends_the_command_and_all_its_children(tmp_path):
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    env = {**os.environ, "GANPIPE_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "command.log", "wb")
    command = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "augment", "--data", "digits", "--minority", "3:5", "--steps", "100000",
         "--out", str(tmp_path / "out")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    output = lambda: (tmp_path / "command.log").read_text(errors="replace")[-2000:]  # noqa: E731
    try:
        deadline = time.monotonic() + 240
        # a child that lasts (the temporary Prefect server), not a short-lived helper process that is
        # gone by the next look: wait until the same child is there twice, a second apart
        lasting: set[int] = set()
        while time.monotonic() < deadline and not lasting:
            assert command.poll() is None, output()
            before = {p.pid for p in psutil.Process(command.pid).children(recursive=True)}
            time.sleep(1.0)
            lasting = before & {p.pid for p in psutil.Process(command.pid).children(recursive=True)}
        assert lasting, "the command never started a child process that lasted"
        time.sleep(5)  # into the flow run
        sent = time.monotonic()
        command.send_signal(signal.SIGTERM)  # to the command only, as a scheduler or container runtime does
        try:
            status = command.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the command did not end within 15 s of SIGTERM")
        took = time.monotonic() - sent
        assert status != 0, output()
        assert took < 10.0, f"ended {took:.1f} s after SIGTERM"
        time.sleep(1.0)
        assert _session_processes(command.pid) == [], output()
    finally:
        for process in busy:
            process.kill()
        for process in _session_processes(command.pid):
            process.kill()


def test_a_server_left_by_a_killed_serve_is_replaced(tmp_path):
    from flows.servers import start_prefect_server, stop

    first, _ = start_prefect_server(home=tmp_path / "prefect")
    try:
        # a `serve` killed with SIGKILL never stops its server: the next start must cope
        second, api = start_prefect_server(home=tmp_path / "prefect")
        try:
            assert first.wait(20) is not None
            import urllib.request

            with urllib.request.urlopen(f"{api}/health", timeout=5) as response:
                assert response.status == 200
        finally:
            stop(second)
    finally:
        stop(first)
