"""Results written as they are computed, so a crash loses at most the chunk in flight and a re-run
continues where the last one stopped, without duplicating a row.

Rows go to ``.items.partial.csv`` in the output folder, one block per chunk; after each block
``.items.progress`` gets a line ``<items done> <file size>``. A resumed log cuts the partial file back
to the size of the last complete block, so a block that was half written is written again, once.
:meth:`ResultLog.finish` splits the rows into ``scores.csv`` (status ``scored``) and
``rejected.csv`` (``item_id, reason``), each written under a temporary name and renamed when
complete (``rejected.csv`` first: ``scores.csv`` marks a finished batch), then drops the partial files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

ITEMS = ".items.partial.csv"
PROGRESS = ".items.progress"


class ResultLog:
    """Append-only, resumable rows for one output folder. Every row has ``item_id``, ``status``
    (``scored`` or ``rejected``) and ``reason``; scored rows add their score columns."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.items, self.progress = self.folder / ITEMS, self.folder / PROGRESS
        self.columns: list[str] | None = None

    def resume(self) -> int:
        """Items already done by an earlier run (0 when there is nothing to continue)."""
        done, size = 0, 0
        if self.progress.exists() and self.items.exists():
            for line in self.progress.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and all(p.isdigit() for p in parts):
                    done, size = int(parts[0]), int(parts[1])
        if size == 0:
            self.items.unlink(missing_ok=True)
            self.progress.unlink(missing_ok=True)
            return 0
        with open(self.items, "r+b") as handle:
            handle.truncate(size)
        self.columns = list(pd.read_csv(self.items, nrows=0).columns)
        return done

    def append(self, rows: pd.DataFrame, done: int) -> None:
        """Write one chunk's rows (in item order), then record that ``done`` items are finished."""
        if self.columns is None:
            self.columns = list(rows.columns)
            header = True
        else:
            missing = set(self.columns) ^ set(rows.columns)
            if missing and len(rows):
                raise ValueError(f"rows must have the columns {self.columns}, differ in {sorted(missing)}")
            rows = rows.reindex(columns=self.columns)
            header = False
        with open(self.items, "a", newline="", encoding="utf-8") as handle:
            rows.to_csv(handle, index=False, header=header)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        with open(self.progress, "a") as handle:
            handle.write(f"{done} {size}\n")
            handle.flush()
            os.fsync(handle.fileno())

    def finish(self, scores: str | Path, rejected: str | Path, chunksize: int = 100_000) -> dict[str, int]:
        """Split the rows into the two result files (each renamed into place when complete) and drop
        the partial files. Returns the number of scored items, rejected items and flagged items."""
        scores, rejected = Path(scores), Path(rejected)
        counts = {"scored": 0, "rejected": 0, "flagged": 0}
        tmp_scores, tmp_rejected = scores.with_name(scores.name + ".tmp"), rejected.with_name(rejected.name + ".tmp")
        score_columns = [c for c in (self.columns or ["item_id"]) if c not in ("status", "reason")]
        with open(tmp_scores, "w", newline="", encoding="utf-8") as out_s, \
                open(tmp_rejected, "w", newline="", encoding="utf-8") as out_r:
            pd.DataFrame(columns=score_columns).to_csv(out_s, index=False)
            pd.DataFrame(columns=["item_id", "reason"]).to_csv(out_r, index=False)
            if self.items.exists():
                for part in pd.read_csv(self.items, dtype=str, keep_default_na=False, chunksize=chunksize):
                    scored = part["status"] == "scored"
                    part.loc[scored, score_columns].to_csv(out_s, index=False, header=False)
                    part.loc[~scored, ["item_id", "reason"]].to_csv(out_r, index=False, header=False)
                    counts["scored"] += int(scored.sum())
                    counts["rejected"] += int((~scored).sum())
                    if "flag" in part.columns:
                        counts["flagged"] += int((pd.to_numeric(part.loc[scored, "flag"], errors="coerce") == 1).sum())
        os.replace(tmp_rejected, rejected)
        os.replace(tmp_scores, scores)
        self.items.unlink(missing_ok=True)
        self.progress.unlink(missing_ok=True)
        return counts
