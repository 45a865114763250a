"""Untrusted batches (issue 13): every kind of bad input of the test matrix
(``benchmarks/bad_batches.py``), read with ``iter_batch`` for a (1, 28, 28) model, beside
its documented outcome. The matrix is small, so ``quick`` changes nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from pipelines.text import markdown_table
from benchmarks.bad_batches import KINDS, SHAPE, mismatch, read_kind


def run(quick: bool) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ganpipe-bad-inputs-") as tmp:
        for number, kind in enumerate(KINDS):
            work = Path(tmp) / str(number)
            outcome = read_kind(kind, work)
            read = outcome.error is None
            rows.append({
                "kind": kind.name,
                "items": outcome.counted if outcome.counted is not None else "-",
                "scored": sum(reason is None for _, reason in outcome.items) if read else "-",
                "rejected": sum(reason is not None for _, reason in outcome.items) if read else "-",
                "reason": outcome.reasons.replace(str(work), "<tmp>").replace("\n", " "),
                "expected outcome": kind.expected,
                "ok": "yes" if not mismatch(kind, outcome) else "NO",
            })
    table = pd.DataFrame(rows)
    failed = int((table["ok"] == "NO").sum())
    return (f"## Untrusted batches: {len(table)} kinds of bad input\n\n"
            f"Each batch is read with `iter_batch` for a {SHAPE} model; 'ok' compares every item's outcome "
            f"with the documented one. {len(table) - failed} of {len(table)} as documented.\n\n"
            + markdown_table(table))
