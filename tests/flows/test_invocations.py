"""Every wrong invocation of the catalogue (``benchmarks/invocations.py``) exits 2 with one line that
names the option as typed, nothing on stdout, and in under 2 s when no data must be read."""

from __future__ import annotations

import pytest

from benchmarks.invocations import CASES, check, prepare


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("invocations")
    prepare(folder)
    return folder


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_wrong_invocation_gets_one_clear_line(case, work):
    row = check(case, work)
    assert row["ok"] == "yes", row


def test_the_catalogue_covers_at_least_25_mistakes():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
