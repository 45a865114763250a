"""First contact (issue 23): a fresh clone, no venv, ``make demo`` as the very first command while
another process keeps a core busy, repeated; every run must succeed.

Each run clones the checked-out commit into a temporary folder (``git clone`` of this repository:
no venv, no bytecode, no Prefect database, no MLflow store), starts a busy loop, runs ``make demo``
there with a fresh ``PREFECT_HOME``, and records the status, the seconds for the install and for
the demo, and the last line of the demo's output. The clone (several GB with its venv) is deleted
after each run. ``--quick`` runs ``make demo-quick`` once.

    python -m benchmarks.run --only first-run            # 10 runs of make demo (about 2 hours alone)
    GANPIPE_FIRST_RUNS=3 python -m benchmarks.run --only first-run
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipelines.text import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("GANPIPE_FIRST_RUNS", "10"))


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def one_run(target: str, folder: Path, commit: str) -> dict:
    clone = folder / "ganpipe"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", commit], cwd=clone, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PREFECT_", "MLFLOW_", "GANPIPE_"))}
    env.update(PREFECT_HOME=str(folder / "prefect-home"), PATH=os.environ["PATH"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        started = time.monotonic()
        install = subprocess.run(["make", "install"], cwd=clone, env=env, capture_output=True, text=True, timeout=3600)
        installed = time.monotonic()
        demo = subprocess.run(["make", target], cwd=clone, env=env, capture_output=True, text=True, timeout=3600) \
            if install.returncode == 0 else install
        ended = time.monotonic()
    finally:
        busy.kill()
        busy.wait()
    output = (demo.stdout + demo.stderr).strip().splitlines()
    failed = [line for line in output if "Timed out" in line or "Traceback" in line or "ganpipe: error" in line]
    return {"status": demo.returncode, "install s": round(installed - started), "demo s": round(ended - installed),
            "last line": (failed or output or [""])[-1][:140],
            "ok": "yes" if demo.returncode == 0 and not failed else "NO"}


def run(quick: bool) -> str:
    target, runs = ("demo-quick", 1) if quick else ("demo", RUNS)
    commit = head_commit()  # every run measures the same commit, even if commits land while it runs
    rows = []
    for number in range(runs):
        with tempfile.TemporaryDirectory(prefix="ganpipe-first-run-") as tmp:
            row = {"run": number + 1, **one_run(target, Path(tmp), commit)}
            print(f"[first-run] {row}", flush=True)
            rows.append(row)
            shutil.rmtree(Path(tmp) / "ganpipe", ignore_errors=True)
    table = pd.DataFrame(rows)
    passed = int((table["ok"] == "yes").sum())
    return (f"## First contact: `make {target}` as the first command of a fresh clone, {runs} run(s)\n\n"
            f"Each run clones commit {commit[:7]} into an empty folder (no venv, no bytecode, no Prefect database, no MLflow "
            f"store), starts a busy loop in another process and runs `make install`, then `make {target}`. "
            f"{passed} of {runs} succeed.\n\n" + markdown_table(table))
