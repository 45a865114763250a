"""Recovery without a person: claims of dead owners are taken over, unexpected errors are retried
then recorded, results survive a crash and a re-run continues without duplicating rows."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

from flows import inbox
from flows.params import ScoreInboxParams, ScoreParams
from pipelines.data.results import ResultLog
from pipelines.errors import GanpipeError


def _dead_pid() -> tuple[int, float]:
    import psutil

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(process.pid).create_time()
    process.wait()
    return process.pid, started


def test_a_claim_whose_process_is_gone_is_taken_over(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "in" / "_scored"
    (in_dir / "a").mkdir(parents=True)
    (in_dir / "a" / "x.png").write_bytes(b"")
    pid, started = _dead_pid()
    (out_dir / "a").mkdir(parents=True)
    (out_dir / "a" / ".claimed").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": started}))
    assert [p.name for p in inbox.pending_batches(in_dir, out_dir, settle_seconds=0)] == ["a"]
    assert inbox.claim(out_dir / "a")
    owner = json.loads((out_dir / "a" / ".claimed").read_text())
    assert owner["pid"] != pid and owner["host"] == socket.gethostname()
    # now held by this (live) process: not pending, and a second claim fails
    assert inbox.pending_batches(in_dir, out_dir, settle_seconds=0) == []
    assert not inbox.claim(out_dir / "a")


def test_a_claim_from_another_host_expires_only_with_age(tmp_path, monkeypatch):
    marker = tmp_path / ".claimed"
    marker.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 0}))
    assert inbox.claim_is_live(marker)
    monkeypatch.setattr(inbox, "CLAIM_SECONDS", 0.0)
    assert not inbox.claim_is_live(marker)


def _inbox_with_a_settled_batch(tmp_path: Path, name: str = "a") -> Path:
    """``tmp_path/in`` holding the batch folder ``name``, old enough to be picked up at once."""
    in_dir = tmp_path / "in"
    (in_dir / name).mkdir(parents=True)
    (in_dir / name / "x.png").write_bytes(b"")
    os.utime(in_dir / name / "x.png", (0, 0))
    os.utime(in_dir / name, (0, 0))
    return in_dir


def _scorer(calls: list[str], *failures: Exception):
    """A stand-in for the score flow that raises ``failures`` one per call, then scores."""

    def score(params: ScoreParams) -> dict:
        calls.append(params.batch)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return {"summary": {"message": "ok"}}

    return score


def test_unexpected_errors_are_retried_then_recorded(prefect_harness, tmp_path, monkeypatch):
    """Prefect's own task retries, in a real flow run (only the pauses between attempts are cut)."""
    monkeypatch.setattr(inbox, "score_one", inbox.score_one.with_options(retry_delay_seconds=0))
    in_dir = _inbox_with_a_settled_batch(tmp_path)
    out = in_dir / "_scored" / "a"
    calls = []
    monkeypatch.setattr(inbox.score_flow, "fn", _scorer(calls, ConnectionError("tracking server went away"),
                                                        ConnectionError("tracking server went away")))
    [result] = inbox.score_inbox_flow(ScoreInboxParams(inbox=str(in_dir)))
    assert result["status"] == "scored"
    assert len(calls) == 3 and not (out / ".claimed").exists() and not (out / "error.txt").exists()

    calls.clear()
    monkeypatch.setattr(inbox.score_flow, "fn", _scorer(calls, *[RuntimeError("a bug")] * 3))
    [result] = inbox.score_inbox_flow(ScoreInboxParams(inbox=str(in_dir)))  # the batch is still pending
    assert result["status"] == "error" and len(calls) == 3 and not (out / ".claimed").exists()
    assert (out / "error.txt").read_text().strip() == "failed 3 times, last: RuntimeError: a bug"


def test_an_unreadable_batch_is_recorded_at_once(prefect_harness, tmp_path, monkeypatch):
    monkeypatch.setattr(inbox, "score_one", inbox.score_one.with_options(retry_delay_seconds=0))
    in_dir = _inbox_with_a_settled_batch(tmp_path)
    calls = []
    monkeypatch.setattr(inbox.score_flow, "fn", _scorer(calls, GanpipeError("not an image: x.png")))
    [result] = inbox.score_inbox_flow(ScoreInboxParams(inbox=str(in_dir)))
    assert result["status"] == "error" and len(calls) == 1
    assert (in_dir / "_scored" / "a" / "error.txt").read_text().strip() == "not an image: x.png"


def test_a_plain_function_run_tries_each_batch_once(tmp_path, monkeypatch):
    """``flow.fn`` runs no Prefect task, so there are no Prefect retries: one attempt, then error.txt."""
    in_dir = _inbox_with_a_settled_batch(tmp_path)
    calls = []
    monkeypatch.setattr(inbox.score_flow, "fn", _scorer(calls, ConnectionError("tracking server went away")))
    [result] = inbox.score_inbox_flow.fn(ScoreInboxParams(inbox=str(in_dir)))
    assert result["status"] == "error" and len(calls) == 1
    out = in_dir / "_scored" / "a"
    assert (out / "error.txt").read_text().strip() == "failed once, last: ConnectionError: tracking server went away"
    assert not (out / ".claimed").exists()


def test_the_inbox_and_the_served_deployments_pass_the_device_through(tmp_path, monkeypatch):
    from flows.params import ServeParams
    from flows.serve import deployments

    in_dir = _inbox_with_a_settled_batch(tmp_path)
    seen = []
    monkeypatch.setattr(inbox.score_flow, "fn",
                        lambda params: (seen.append((params.device, params.maps)), {"summary": {"message": "ok"}})[1])
    [result] = inbox.score_inbox_flow.fn(ScoreInboxParams(inbox=str(in_dir), device="cpu"))
    # and each served batch gets the maps of its flagged items, as `ganpipe score` writes them by default
    assert result["status"] == "scored" and seen == [("cpu", "flagged")]
    served = deployments(ServeParams(inbox=str(in_dir), device="cuda:1"), in_dir, in_dir / "_scored")
    assert [d.parameters["params"]["device"] for d in served[:2]] == ["cuda:1", "cuda:1"]  # score-inbox, augment


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
    in_dir = _inbox_with_a_settled_batch(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    assert inbox.score_inbox_flow.fn(ScoreInboxParams(inbox=str(in_dir))) == []
    assert not (in_dir / "_scored" / "a" / ".claimed").exists()  # left for a later poll
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(inbox, "score_batches", lambda calls: [{"batch": c[0], "status": "scored", "message": ""}
                                                               for c in calls])
    assert [r["batch"] for r in inbox.score_inbox_flow.fn(ScoreInboxParams(inbox=str(in_dir)))] == [str(in_dir / "a")]
