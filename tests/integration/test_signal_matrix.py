"""The signal matrix (``benchmarks/signals.py``): every long phase of every command, under CPU load,
ended by SIGINT, SIGTERM and SIGKILL: exit within 10 s with a non-zero status, no process of its
session left, output never presented as complete, no MLflow run left RUNNING. The cells run two at
a time (once, for the module); each cell is a test of its own."""

from __future__ import annotations

import pytest

from benchmarks.signals import PHASES, SIGNALS, run_matrix

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    cells = run_matrix(tmp_path_factory.mktemp("signal-matrix"))
    return {(cell.phase, cell.signal): cell for cell in cells}


@pytest.mark.parametrize("signame", SIGNALS)
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.name.replace(" ", "-").replace(":", ""))
def test_signal_ends_the_phase_cleanly(phase, signame, matrix):
    cell = matrix[(phase.name, signame)]
    assert cell.passed, cell.row()
