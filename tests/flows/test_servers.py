"""The local Prefect API a one-shot command runs against: it starts on a cold home while the
machine is busy, dies with the command even on SIGKILL, and a start that fails is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from pipelines.errors import GanpipeError

pytestmark = pytest.mark.integration


def test_local_api_starts_on_a_cold_home_under_cpu_load(tmp_path, monkeypatch):
    from flows.servers import local_prefect_api

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "cold"))  # no database yet: the first start migrates it
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(restore_defaults={PREFECT_API_URL}), local_prefect_api() as api:
            with urllib.request.urlopen(f"{api}/health", timeout=10) as response:
                assert response.status == 200
            port = api.rsplit(":", 1)[1].split("/")[0]  # a test harness may run a Prefect server of its own
            server = [p for p in psutil.Process().children() if port in p.cmdline()]
            assert len(server) == 1 and os.getsid(server[0].pid) != os.getsid(0)  # its own session
        assert not server[0].is_running() or server[0].status() == psutil.STATUS_ZOMBIE
    finally:
        for process in busy:
            process.kill()
    assert (tmp_path / "cold" / "prefect.db").exists()


def test_a_start_that_times_out_is_one_line_naming_the_log(tmp_path, monkeypatch):
    from flows.servers import local_prefect_api

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(GanpipeError) as caught:
        with local_prefect_api(timeout=0.2):
            pass
    message = str(caught.value)
    assert "\n" not in message and "ganpipe-api.log" in message and "GANPIPE_PREFECT_START_SECONDS" in message


def test_the_local_api_dies_with_a_command_killed_by_sigkill(tmp_path):
    code = ("import time; from flows.servers import local_prefect_api\n"
            "with local_prefect_api() as api:\n    print(api, flush=True); time.sleep(600)\n")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home")}
    env.pop("PREFECT_API_URL", None)
    command = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        api = command.stdout.readline().strip()
        assert api.startswith("http://127.0.0.1:")
        children = psutil.Process(command.pid).children(recursive=True)
        command.send_signal(signal.SIGKILL)
        command.wait(10)
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
    finally:
        command.kill()
