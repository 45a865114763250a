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


def test_a_flow_run_of_a_command_can_be_browsed_after_it(tmp_path, monkeypatch):
    """The run's ``prefect.flow_run_url`` tag names a flow run that still exists when the command's
    local API is gone: a later server on the same PREFECT_HOME (as ``prefect server start`` is) has it."""
    import json

    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.common import prefect_tags
    from flows.servers import BROWSE_URL, local_prefect_api
    from pipelines.tracking.runs import PREFECT_RUN_TAG

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)

    @flow
    def tagged() -> dict:
        return prefect_tags()

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with local_prefect_api():
            tags = tagged()
        run_id = tags[PREFECT_RUN_TAG]
        assert tags["prefect.flow_run_url"] == f"{BROWSE_URL}/runs/flow-run/{run_id}"
        assert "prefect server start" in tags["prefect.browse"] and str(tmp_path / "home") in tags["prefect.browse"]
        with local_prefect_api() as api:  # the command is over; a new server on the same home
            with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as response:
                assert json.load(response)["state"]["type"] == "COMPLETED"


def test_against_a_server_the_flow_run_link_is_that_servers_ui():
    from flows.servers import flow_run_url

    assert flow_run_url("abc", "http://prefect.internal:4200/api") == ("http://prefect.internal:4200/runs/flow-run/abc", None)
