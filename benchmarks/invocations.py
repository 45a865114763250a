"""Wrong invocations (issue 23): what a new user types by mistake, and what ganpipe answers.

Every case runs the real command line (``python -m flows.cli``) in a fresh process with its own
homes and records the exit status, the seconds until the process ended and what it printed. A case
passes when the status is 2, stderr is one line starting ``ganpipe: error:`` that contains the
expected words (the option as the user typed it, or the file), stdout is empty, and, when the
mistake can be seen without reading data or the registry, the answer took at most
:data:`FAST_SECONDS`. ``tests/flows/test_invocations.py`` runs every case; ``make bench`` tabulates them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.text import markdown_table

FAST_SECONDS = 2.0


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # ``{work}`` is the case's folder, prepared by :func:`prepare`
    expect: tuple[str, ...]  # words the one line must contain
    reads_data: bool = False  # the mistake shows only once data or the registry is read


CASES = (
    Case("command typo", ("augmnt",), ("augmnt",)),
    Case("option typo", ("augment", "--stepz", "10"), ("--stepz",)),
    Case("option without its value", ("augment", "--steps"), ("--steps",)),
    Case("not a number", ("augment", "--steps", "abc"), ("--steps", "abc")),
    Case("zero steps", ("augment", "--steps", "0"), ("--steps", ">= 1")),
    Case("image size too small", ("augment", "--image-size", "4"), ("--image-size", "8")),
    Case("image size too large", ("augment", "--image-size", "1000"), ("--image-size", "256")),
    Case("minority count not a number", ("augment", "--minority", "2:abc"), ("--minority", "'abc'")),
    Case("minority empty", ("augment", "--minority", ""), ("--minority", "no classes")),
    Case("minority class twice", ("augment", "--minority", "2:10,2:5"), ("--minority", "twice")),
    Case("negative seed", ("augment", "--seed", "-1"), ("--seed",)),
    Case("unknown data source", ("augment", "--data", "imagenet"), ("--data", "imagenet")),
    Case("data folder missing", ("augment", "--data", "folder:{work}/nowhere"), ("nowhere", "not found")),
    Case("data file not an npz", ("augment", "--data", "npz:{work}/passwd"), ("passwd", "not a readable .npz"),
         reads_data=True),
    Case("data folder is a file", ("augment", "--data", "folder:{work}/passwd"), ("passwd", "not a folder")),
    Case("data folder with one class", ("augment", "--data", "folder:{work}/one-class", "--minority", "a:2"),
         ("one-class", "one class"), reads_data=True),
    Case("unknown minority class", ("augment", "--data", "digits", "--minority", "12:5"), ("'12'",), reads_data=True),
    Case("minority count above the class size", ("augment", "--data", "digits", "--minority", "3:5000"),
         ("3:5000",), reads_data=True),
    Case("one seed", ("compare", "--seeds", "1"), ("--seeds", "2 or more")),
    Case("zero seeds", ("compare", "--seeds", "0"), ("--seeds", "2 or more")),
    Case("unknown arm", ("compare", "--arms", "none,foo"), ("--arms", "foo")),
    Case("unknown classifier", ("compare", "--classifier", "svm"), ("--classifier", "svm")),
    Case("compare minority without a count", ("compare", "--minority", "3"), ("--minority", "CLASS:N")),
    Case("sweep not numbers", ("compare", "--sweep", "5,x"), ("--sweep", "x")),
    Case("two clusters", ("compare", "--dask-workers", "2", "--dask-address", "tcp://h:1"),
         ("--dask-address", "--dask-workers")),
    Case("score without arguments", ("score",), ("BATCH", "--out")),
    Case("score without --out", ("score", "{work}/batch.npz"), ("--out",)),
    Case("score a batch that does not exist", ("score", "{work}/missing.npz", "--out", "{work}/scored"),
         ("missing.npz",)),
    Case("score with an unknown model", ("score", "{work}/batch.npz", "--out", "{work}/scored", "--model",
                                         "models:/nope@champion"), ("nope",), reads_data=True),
    Case("unknown detector score", ("train-detector", "--score", "foo"), ("--score", "foo")),
    Case("false positive rate too high", ("train-detector", "--target-fpr", "0.7"), ("--target-fpr",)),
    Case("unknown normal class", ("train-detector", "--data", "digits", "--normal", "42"), ("'42'",), reads_data=True),
    Case("detector on a one-class folder", ("train-detector", "--data", "folder:{work}/one-class", "--normal", "a"),
         ("one class",), reads_data=True),
    Case("inbox is a file", ("serve", "--inbox", "{work}/passwd"), ("--inbox", "passwd", "not a folder")),
    Case("zero interval", ("serve", "--inbox", "{work}/inbox", "--interval", "0"), ("--interval", ">= 1")),
    Case("port out of range", ("mlflow-server", "--port", "70000"), ("--port", "65535")),
)


def prepare(work: Path) -> None:
    """The files the cases point at: a one-class image folder, a text file, a small batch."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        folder = work / "one-class" / "a"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    (work / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    np.savez(work / "batch.npz", x=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8))


def check(case: Case, work: Path) -> dict:
    """Run one case; returns its row (``ok`` says whether it passes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "GANPIPE_"))}
    env.update(GANPIPE_HOME=str(work / "home"), PREFECT_HOME=str(work / "prefect"))
    argv = [a.replace("{work}", str(work)) for a in case.argv]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    message = lines[-1] if lines else ""
    problems = []
    if done.returncode != 2:
        problems.append(f"status {done.returncode}")
    if len(lines) != 1 or not message.startswith("ganpipe: error: "):
        problems.append(f"{len(lines)} lines on stderr")
    if done.stdout.strip():
        problems.append("stdout not empty")
    missing = [w for w in case.expect if w.replace("{work}", str(work)) not in message]
    if missing:
        problems.append(f"does not say {missing}")
    if not case.reads_data and seconds > FAST_SECONDS:
        problems.append(f"{seconds:.1f} s")
    return {"mistake": case.name, "command": "ganpipe " + " ".join(case.argv).replace("{work}/", ""),
            "status": done.returncode, "seconds": round(seconds, 2),
            "message": message.replace(str(work) + "/", "").replace(str(work), "."),
            "ok": "yes" if not problems else "NO: " + "; ".join(problems)}


def run(quick: bool) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ganpipe-invocations-") as tmp:
        work = Path(tmp)
        prepare(work)
        for case in CASES:
            rows.append(check(case, work))
    table = pd.DataFrame(rows)
    table["command"] = table["command"].map(lambda c: f"`{c}`")
    passed = int((table["ok"] == "yes").sum())
    fast = table[[not c.reads_data for c in CASES]]["seconds"]
    return (f"## Wrong invocations: {len(table)} mistakes a new user makes\n\n"
            "Each runs the real command line in a fresh process. Every one must exit with status 2 and one line "
            "on stderr that names the option as typed (or the file), with nothing on stdout; those that need no "
            f"data or registry must answer within {FAST_SECONDS:.0f} s (slowest here: {fast.max():.2f} s). "
            f"{passed} of {len(table)} pass. The same cases run in `make test` (`tests/flows/test_invocations.py`).\n\n"
            + markdown_table(table, float_format="{:.2f}"))
