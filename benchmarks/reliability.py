"""Unattended operation, measured through the ``ganpipe`` command line as an operator runs it.

- **Large batch**: one ``.npz`` of 1,000,000 28x28 images (100,000 with ``--quick``) scored by
  ``ganpipe score``; peak resident memory of the command (and of its whole process tree), time, and
  whether every item is in ``scores.csv`` or ``rejected.csv`` exactly once.
- **Restarts**: ``ganpipe serve`` stopped in the middle of scoring a batch and started again, 20 times
  (2 with ``--quick``), alternating Ctrl-C (SIGINT to its process group) and ``kill -9`` of the
  group; after each restart, the time until the interrupted batch is complete, counted from the
  moment the restarted ``serve`` is ready, and whether its items are all there exactly once.

A small detector (mnist5k, normal class 0, a few steps: its quality does not matter here) is trained
and registered first in a private project home; nothing touches the user's MLflow store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.sources import load_dataset

INTERVAL = 30  # seconds between inbox polls of the served deployment (the README example)
RESTART_BATCH = 100_000  # items per batch in the restart cycles: scoring takes a few seconds


def run(quick: bool = False) -> str:
    with tempfile.TemporaryDirectory(prefix="ganpipe-reliability-") as tmp:
        root = Path(tmp)
        env, images = _trained_home(root)
        large = _large_batch(env, root, images, 100_000 if quick else 1_000_000)
        cycles = _restart_cycles(env, root, images, 2 if quick else 20)
    return large + "\n\n" + cycles


def _trained_home(root: Path) -> tuple[dict, np.ndarray]:
    """A fresh ganpipe home under ``root`` with a detector (mnist5k, digit 0 normal, one epoch)
    registered; -> the environment that uses it and mnist5k's images as uint8 ``(N, 28, 28)``."""
    env = {**os.environ, "GANPIPE_HOME": str(root / "home"), "PREFECT_HOME": str(root / "prefect-client"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    _ganpipe(env, ["train-detector", "--data", "mnist5k", "--normal", "0", "--epochs", "1"], root / "train.log")
    return env, (load_dataset("mnist5k").x[:, 0] * 255).round().astype(np.uint8)


def _ganpipe(env: dict, args: list[str], log: Path, timeout: float = 1800) -> None:
    with open(log, "wb") as out:
        status = subprocess.call([sys.executable, "-m", "flows.cli", *args], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, timeout=timeout)
    if status != 0:
        raise RuntimeError(f"ganpipe {' '.join(args)} failed ({status}): {log.read_text()[-2000:]}")


def _write_batch(path: Path, images: np.ndarray, n: int, tag: str) -> None:
    """``n`` images (the data set repeated, each copy shifted by a pixel so no two copies are equal
    arrays) with ids ``<tag>-<i>``, written uncompressed."""
    x = np.resize(images, (n, *images.shape[1:]))
    x[len(images)::2] = np.roll(x[len(images)::2], 1, axis=2)
    ids = np.array([f"{tag}-{i}" for i in range(n)])
    np.savez(path, x=x, ids=ids)


def _exactly_once(out: Path, n: int, tag: str) -> dict:
    scores = pd.read_csv(out / "scores.csv", usecols=["item_id"], dtype=str, keep_default_na=False)["item_id"]
    rejected = pd.read_csv(out / "rejected.csv", usecols=["item_id"], dtype=str, keep_default_na=False)["item_id"]
    seen = pd.concat([scores, rejected])
    expected = {f"{tag}-{i}" for i in range(n)}
    return {"scored": len(scores), "rejected": len(rejected), "duplicated": int(seen.duplicated().sum()),
            "lost": len(expected - set(seen))}


def _score_batch(env: dict, root: Path, batch: Path, n: int, tag: str, maps: str) -> dict:
    """``ganpipe score batch --maps maps`` in a child, its peak RSS sampled every 0.1 s; -> the row."""
    import psutil

    out = root / f"{batch.stem}-{maps}-out"
    log = open(root / f"score-{maps}.log", "wb")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "score", str(batch), "--out", str(out), "--maps",
                                maps], env=env, stdout=log, stderr=subprocess.STDOUT)
    peak_main = peak_tree = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            main = watched.memory_info().rss
            tree = main + sum(c.memory_info().rss for c in watched.children(recursive=True))
        except psutil.Error:
            break
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if process.wait() != 0:
        raise RuntimeError(f"ganpipe score failed: {(root / f'score-{maps}.log').read_text()[-2000:]}")
    check = _exactly_once(out, n, tag)
    flags = pd.read_csv(out / "scores.csv", usecols=["item_id", "flag"], dtype={"item_id": str}, keep_default_na=False)
    expected = {"none": set(), "flagged": set(flags["item_id"][flags["flag"] == 1]), "all": set(flags["item_id"])}[maps]
    written = set()
    if (out / "maps.npz").exists():
        with np.load(out / "maps.npz") as data:
            written = set(data["item_ids"].tolist())
            check["map rows"] = len(data["item_ids"])
    pngs = sum(1 for _ in (out / "maps").glob("*.png")) if (out / "maps").exists() else 0
    check.update({"maps": maps, "seconds": seconds, "rate": n / seconds, "peak_main": peak_main, "peak_tree": peak_tree,
                  "flagged": int((flags["flag"] == 1).sum()), "pngs": pngs,
                  "maps as asked": written == expected and pngs == len(expected)
                  and check.get("map rows", 0) == len(expected)})
    check["ok"] = (peak_main < 2 * 2**30 and check["lost"] == 0 and check["duplicated"] == 0 and check["maps as asked"])
    return check


def _large_batch(env: dict, root: Path, images: np.ndarray, n: int) -> str:
    batch = root / "large.npz"
    _write_batch(batch, images, n, "big")
    row = _score_batch(env, root, batch, n, "big", "none")
    return "\n".join([
        f"### A {n:,}-image batch through `ganpipe score --maps none`",
        "",
        "| items | seconds (whole command) | images/s | peak RSS of the command | peak RSS, command + children "
        "| scored | rejected | lost | duplicated | target (RSS < 2 GB, 0 lost, 0 duplicated) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {n:,} | {row['seconds']:.0f} | {row['rate']:,.0f} | {row['peak_main'] / 2**20:,.0f} MB "
        f"| {row['peak_tree'] / 2**20:,.0f} MB | {row['scored']:,} | {row['rejected']:,} | {row['lost']} "
        f"| {row['duplicated']} | {'met' if row['ok'] else 'missed'} |",
        "",
        f"The batch file holds {n * 784 / 2**20:,.0f} MB of uint8 pixels (4x that as float32); it is read and "
        "scored 4,096 items at a time. The children are Prefect's temporary API server.",
    ])


def run_maps(quick: bool = False) -> str:
    """A 100,000-image batch scored three times, ``--maps none``, ``flagged`` (the default) and ``all``:
    rate, peak memory, every item once, and a map (a PNG overlay and a ``maps.npz`` row) for exactly
    the items asked for (issue 21)."""
    n = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="ganpipe-maps-") as tmp:
        root = Path(tmp)
        env, images = _trained_home(root)
        batch = root / "maps.npz"
        _write_batch(batch, images, n, "m")
        rows = [_score_batch(env, root, batch, n, "m", maps) for maps in ("none", "flagged", "all")]
    lines = [
        f"## Scoring with anomaly maps: a {n:,}-image batch (issue 21)",
        "",
        "`ganpipe score batch.npz --maps none|flagged|all` on mnist5k images (digit 0 normal, so about 90% of "
        "the batch is anomalous) with a detector from `ganpipe train-detector --data mnist5k --normal 0 --epochs 1`. "
        "A map is a PNG overlay in `maps/` and a row of `maps.npz`, written chunk by chunk as the items are scored.",
        "",
        "| --maps | items | seconds (whole command) | images/s | peak RSS of the command | peak RSS, command + children "
        "| scored | lost | duplicated | flagged | maps written (PNG / npz rows) | maps for exactly the asked items "
        "| target (RSS < 2 GB, 0 lost, 0 duplicated, maps as asked) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    note = ("The seconds are the whole command's, its start (Prefect's temporary server, the model from the "
            "registry) included; a map costs the feature map's pass over the item and the encoding of its PNG "
            "overlay (the image beside the map, upscaled to at least 96 px).")
    for row in rows:
        lines.append(
            f"| {row['maps']} | {n:,} | {row['seconds']:.0f} | {row['rate']:,.0f} | {row['peak_main'] / 2**20:,.0f} MB "
            f"| {row['peak_tree'] / 2**20:,.0f} MB | {row['scored']:,} | {row['lost']} | {row['duplicated']} "
            f"| {row['flagged']:,} | {row['pngs']:,} / {row.get('map rows', 0):,} | {row['maps as asked']} "
            f"| {'met' if row['ok'] else 'missed'} |")
    return "\n".join([*lines, "", note])


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f": {log.read_text()[-3000:]}" if log else ""))
        time.sleep(0.2)
    return time.monotonic() - start


def _start_serve(env: dict, inbox: Path, log: Path) -> tuple[subprocess.Popen, float]:
    start = time.monotonic()
    out = open(log, "ab")
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--inbox", str(inbox), "--interval",
                                str(INTERVAL)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    size = log.stat().st_size if log.exists() else 0

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}: {log.read_text()[-3000:]}")
        with open(log, "rb") as handle:
            handle.seek(size)
            return b"Serving 3 deployments" in handle.read()

    _wait(ready, 180, "serve to be ready", log)
    return process, time.monotonic() - start


def _stop_serve(process: subprocess.Popen, how: str) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT if how == "Ctrl-C" else signal.SIGKILL)
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


def _restart_cycles(env: dict, root: Path, images: np.ndarray, cycles: int) -> str:
    inbox = root / "inbox"
    inbox.mkdir()
    log = root / "serve.log"
    serve, _ = _start_serve(env, inbox, log)
    rows = []
    try:
        for cycle in range(cycles):
            how = "Ctrl-C" if cycle % 2 == 0 else "kill -9"
            name = f"batch-{cycle:02d}"
            staged = root / f"{name}.npz"
            _write_batch(staged, images, RESTART_BATCH, name)
            os.replace(staged, inbox / f"{name}.npz")
            out = inbox / "_scored" / name
            _wait(lambda: (out / ".items.progress").exists() or (out / "scores.csv").exists(), 6 * INTERVAL,
                  f"{name} to be in scoring", log)
            interrupted = not (out / "scores.csv").exists()
            _stop_serve(serve, how)
            serve, ready_after = _start_serve(env, inbox, log)
            waited = _wait(lambda: (out / "scores.csv").exists(), 10 * INTERVAL, f"{name} to be scored", log)
            rows.append({"cycle": cycle + 1, "stopped with": how, "interrupted mid-batch": interrupted,
                         "restart until ready (s)": round(ready_after, 1),
                         "ready until batch complete (s)": round(waited, 1),
                         **_exactly_once(out, RESTART_BATCH, name)})
            (inbox / f"{name}.npz").unlink()  # keep the disk use flat
    finally:
        _stop_serve(serve, "Ctrl-C")
    table = pd.DataFrame(rows)
    within = int((table["ready until batch complete (s)"] <= 2 * INTERVAL).sum())
    lost, duplicated = int(table["lost"].sum()), int(table["duplicated"].sum())
    met = within == len(table) and lost == 0 and duplicated == 0
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns)
    body = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False))
    return "\n".join([
        f"### `ganpipe serve` stopped mid-batch and restarted, {cycles} times (poll interval {INTERVAL} s)",
        "",
        header,
        body,
        "",
        f"Batches complete within two intervals ({2 * INTERVAL} s) of the restarted serve being ready: "
        f"{within} of {len(table)}; items lost: {lost}; items duplicated: {duplicated} "
        f"(target: all, 0, 0: {'met' if met else 'missed'}). Each batch holds {RESTART_BATCH:,} images.",
    ])
