"""Shared fixtures. Tests never touch ~/.prefect, the project's MLflow store or the network."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Before prefect or mlflow are imported anywhere: private homes for the whole session.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="ganpipe-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["GANPIPE_HOME"] = str(_SESSION_DIR / "home")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def migrated_mlflow_db() -> Path:
    """An SQLite MLflow store with its migrations applied once per session."""
    from mlflow.tracking import MlflowClient

    db = _SESSION_DIR / "template" / "mlflow.db"
    db.parent.mkdir(parents=True)
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, migrated_mlflow_db) -> str:
    """A fresh copy of the migrated store; GANPIPE_HOME points at the test's own folder."""
    home = tmp_path / "home"
    (home / "mlflow").mkdir(parents=True)
    shutil.copy(migrated_mlflow_db, home / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("GANPIPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session (flows run under real Prefect)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (H, W) or (H, W, 3) uint8 as a PNG, creating folders."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Three classes of 12x12 grey PNGs: 'bolt' 6 images, 'nut' 5, 'washer' 4."""
    rng = np.random.default_rng(0)
    root = tmp_path / "parts"
    for name, n in [("bolt", 6), ("nut", 5), ("washer", 4)]:
        for i in range(n):
            write_png(root / name / f"{i:02d}.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    return root


class RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it calls ``exec``, which writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def write_code_pickle(path: Path, marker: Path, torch_format: bool) -> Path:
    """Overwrite ``path`` with a dict holding :class:`RunsCodeWhenUnpickled`, as ``torch.save`` writes it
    (zip) or as a bare pickle."""
    import pickle

    import torch

    payload = {"weight": RunsCodeWhenUnpickled(marker)}
    if torch_format:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # torch.load's own protocol
    return path
