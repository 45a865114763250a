"""Text for people: progress bars for long work, as log lines (they reach the terminal and the
Prefect run log alike), and Markdown tables (terminal, docs and MLflow). No MLflow, no Prefect.

``progress_bar(done, total, elapsed)`` -> ``[########------------]  40%  200/500  1m05s elapsed, eta 1m38s``.
The ETA extrapolates the rate since ``first_done`` (work done before a resume is not timed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

WIDTH = 20


def duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_bar(done: int, total: int, elapsed: float, first_done: int = 0, unit: str = "") -> str:
    """A bar, the share and count done, the time spent and the estimated time left (once a rate is known)."""
    total = max(int(total), 1)
    done = min(max(int(done), 0), total)
    filled = WIDTH * done // total
    bar = "#" * filled + "-" * (WIDTH - filled)
    line = f"[{bar}] {100 * done // total:3d}%  {done}/{total}{' ' + unit if unit else ''}  {duration(elapsed)} elapsed"
    if done >= total:
        return line + ", done"
    if done > first_done and elapsed > 0:
        line += f", eta {duration(elapsed / (done - first_done) * (total - done))}"
    return line


def markdown_table(table: "pd.DataFrame", float_format: str = "{:.3f}") -> str:
    """A GitHub-style Markdown table (floats to 3 decimals)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return float_format.format(value) if value == value else "n/a"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"
