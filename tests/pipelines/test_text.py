from __future__ import annotations

import pytest

from pipelines.text import duration, progress_bar


def test_bar_fills_with_the_work_and_extrapolates_the_rate():
    assert progress_bar(0, 500, 0.0) == "[--------------------]   0%  0/500  0s elapsed"
    line = progress_bar(200, 500, 40.0)
    assert line.startswith("[########------------]  40%  200/500  40s elapsed")
    assert line.endswith("eta 1m00s")  # 300 steps left at 0.2 s a step
    assert progress_bar(500, 500, 100.0).endswith("1m40s elapsed, done")


def test_eta_counts_only_the_work_timed_here():
    # 100 items were done before a resume; 100 more took 10 s: 300 left take 30 s
    assert progress_bar(200, 500, 10.0, first_done=100, unit="items").endswith("200/500 items  10s elapsed, eta 30s")


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (59, "59s"), (61, "1m01s"), (3600 * 2 + 300, "2h05m")])
def test_duration(seconds, text):
    assert duration(seconds) == text
