"""The signal matrix (``benchmarks/signals.py``): every long phase of every command, under CPU load,
ended by a signal: exit within 10 s with a non-zero status, no process of its session left, output
never presented as complete, no MLflow run left RUNNING. ``make bench`` runs every phase with SIGINT,
SIGTERM and SIGKILL; here every phase runs once with one of them (:data:`benchmarks.signals.TEST_CELLS`,
each signal on two or three phases). The cells run two at a time (once, for the module); each cell is a
test of its own."""

from __future__ import annotations

import pytest

from benchmarks.signals import PHASES, SIGNALS, TEST_CELLS, run_matrix

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    cells = run_matrix(tmp_path_factory.mktemp("signal-matrix"), plan=TEST_CELLS)
    return {(cell.phase, cell.signal): cell for cell in cells}


def test_the_cells_cover_every_phase_and_signal():
    assert [phase for phase, _ in TEST_CELLS] == list(PHASES)
    assert {signame for _, signame in TEST_CELLS} == set(SIGNALS)


@pytest.mark.parametrize(("phase", "signame"), TEST_CELLS,
                         ids=[f"{p.name.replace(' ', '-').replace(':', '')}-{s}" for p, s in TEST_CELLS])
def test_signal_ends_the_phase_cleanly(phase, signame, matrix):
    cell = matrix[(phase.name, signame)]
    assert cell.passed, cell.row()
