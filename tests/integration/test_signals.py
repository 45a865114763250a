"""A Prefect server left by a killed `serve` is replaced, not fatal. (SIGINT, SIGTERM and SIGKILL in
every phase of every command, under load, are the cells of tests/integration/test_signal_matrix.py.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


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
