"""Recovery without a person: claims of dead owners are taken over, unexpected errors are retried
then recorded, results survive a crash and a re-run continues without duplicating rows."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import pandas as pd

from flows import serve
from flows.params import ScoreParams
from pipelines.data.results import ResultLog


def _dead_pid() -> tuple[int, float]:
    import psutil

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(process.pid).create_time()
    process.wait()
    return process.pid, started


def test_a_claim_whose_process_is_gone_is_taken_over(tmp_path):
    inbox, outbox = tmp_path / "in", tmp_path / "in" / "_scored"
    (inbox / "a").mkdir(parents=True)
    (inbox / "a" / "x.png").write_bytes(b"")
    pid, started = _dead_pid()
    (outbox / "a").mkdir(parents=True)
    (outbox / "a" / ".claimed").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": started}))
    assert [p.name for p in serve.pending_batches(inbox, outbox, settle_seconds=0)] == ["a"]
    assert serve.claim(outbox / "a")
    owner = json.loads((outbox / "a" / ".claimed").read_text())
    assert owner["pid"] != pid and owner["host"] == socket.gethostname()
    # now held by this (live) process: not pending, and a second claim fails
    assert serve.pending_batches(inbox, outbox, settle_seconds=0) == []
    assert not serve.claim(outbox / "a")


def test_a_claim_from_another_host_expires_only_with_age(tmp_path, monkeypatch):
    marker = tmp_path / ".claimed"
    marker.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 0}))
    assert serve.claim_is_live(marker)
    monkeypatch.setattr(serve, "CLAIM_SECONDS", 0.0)
    assert not serve.claim_is_live(marker)


def test_unexpected_errors_are_retried_then_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "RETRY_DELAYS", (0.0, 0.0))
    calls = []

    def flaky(params: ScoreParams) -> dict:
        calls.append(params.batch)
        if len(calls) < 3:
            raise ConnectionError("tracking server went away")
        return {"summary": {"message": "ok"}}

    monkeypatch.setattr(serve.score_flow, "fn", flaky)
    out = tmp_path / "out"
    assert serve.claim(out)
    assert serve.score_one.fn("batch.npz", str(out), "models:/m@champion")["status"] == "scored"
    assert len(calls) == 3 and not (out / ".claimed").exists() and not (out / "error.txt").exists()

    def broken(params: ScoreParams) -> dict:
        raise RuntimeError("a bug")

    monkeypatch.setattr(serve.score_flow, "fn", broken)
    result = serve.score_one.fn("batch.npz", str(out), "models:/m@champion")
    assert result["status"] == "error"
    assert (out / "error.txt").read_text().strip() == "failed 3 times, last: RuntimeError: a bug"


def _rows(ids: list[str], status: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": ids, "status": status, "reason": ["" if s == "scored" else "bad" for s in status],
                         "score": [float(i) if s == "scored" else float("nan") for i, s in enumerate(status)],
                         "flag": [1 if s == "scored" else None for s in status]})


def test_results_resume_after_a_half_written_chunk_without_duplicates(tmp_path):
    odd = ["a,b", 'quote"d', "new\nline", "NA", "ünï cödé"]
    log = ResultLog(tmp_path)
    assert log.resume() == 0
    log.append(_rows(odd[:3], ["scored", "rejected", "scored"]), 3)
    with open(tmp_path / ".items.partial.csv", "a") as handle:  # a crash in the middle of the next chunk
        handle.write('"NA",scored,,3.0,1\n"ünï')
    again = ResultLog(tmp_path)
    assert again.resume() == 3
    again.append(_rows(odd[3:], ["scored", "scored"]), 5)
    counts = again.finish(tmp_path / "scores.csv", tmp_path / "rejected.csv")
    scores = pd.read_csv(tmp_path / "scores.csv", dtype={"item_id": str}, keep_default_na=False)
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    assert scores["item_id"].tolist() == ["a,b", "new\nline", "NA", "ünï cödé"]
    assert rejected.to_dict("records") == [{"item_id": 'quote"d', "reason": "bad"}]
    assert counts == {"scored": 4, "rejected": 1, "flagged": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rejected.csv", "scores.csv"]


def test_results_without_progress_start_over(tmp_path):
    (tmp_path / ".items.partial.csv").write_text("item_id,status,reason\nx,scored,\n")
    assert ResultLog(tmp_path).resume() == 0
    assert not (tmp_path / ".items.partial.csv").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tracking_server_down_fails_score_before_any_work(tmp_path, monkeypatch):
    from flows.cli import main

    batch = tmp_path / "b.npz"
    import numpy as np

    np.savez(batch, x=np.zeros((2, 28, 28), np.float32))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    assert main(["score", str(batch), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_inbox_waits_while_the_tracking_server_is_down(tmp_path, monkeypatch):
    from flows.params import ScoreInboxParams

    inbox = tmp_path / "in"
    (inbox / "a").mkdir(parents=True)
    (inbox / "a" / "x.png").write_bytes(b"")
    import os

    os.utime(inbox / "a" / "x.png", (0, 0))
    os.utime(inbox / "a", (0, 0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    assert serve.score_inbox_flow.fn(ScoreInboxParams(inbox=str(inbox))) == []
    assert not (inbox / "_scored" / "a" / ".claimed").exists()  # left for a later poll
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(serve, "fan_out", lambda task_, calls: [{"batch": c[0], "status": "scored", "message": ""}
                                                                   for c in calls])
    assert [r["batch"] for r in serve.score_inbox_flow.fn(ScoreInboxParams(inbox=str(inbox)))] == [str(inbox / "a")]
