"""Runs: where ganpipe's MLflow store is, experiment names, run tags, and how params, metrics,
figures and tables are logged.

- Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<home>/mlflow/mlflow.db``.
- Artifacts of local stores go to ``<home>/mlflow/artifacts/<experiment>``; a tracking server
  decides for itself.
- ``<home>`` is ``GANPIPE_HOME`` when set, else the project checkout this package lives in (the
  folder holding ``pyproject.toml``), else the working directory.

Runs are handled through :class:`TrackedRun`, which carries its run id explicitly, so logging works
the same from any thread or Prefect task. Flows pass the Prefect flow-run id as a tag; this module
does not import Prefect.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from pipelines.stopping import stop_requested
from pipelines.text import markdown_table

PREFECT_RUN_TAG = "prefect.flow_run_id"
OWNER_TAG = "ganpipe.owner"  # host, pid and start time of the process that opened the run
COMMAND_TAG = "ganpipe.command"  # the command line that made the run
VERSION_TAG = "ganpipe.version"
DESCRIPTION_TAG = "mlflow.note.content"  # the description the UI shows on a run's or an experiment's page
# MLflow 3's UI opens an experiment in its GenAI view (traces, token usage) unless told it is model
# training. The 3.17 UI takes the view from the link's ``workflowType`` (else the browser's last
# choice), so every link ganpipe prints carries it; the kind tag, which that UI writes when a user sets
# an experiment's type and reads when its view switch is off, records it in the store.
KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
EXPERIMENTS = {
    "demo": "ganpipe-demo",
    "augment": "ganpipe-augment",
    "compare": "ganpipe-compare",
    "detector": "ganpipe-detector",
    "score": "ganpipe-score",
    "monitoring": "ganpipe-monitoring",
}
DESCRIPTIONS = {  # experiment name -> its description in the UI
    "ganpipe-demo": "The one-command demo: augment (a conditional GAN makes minority-class images) and compare "
                    "(a classifier trained under every remedy) on a small dataset.",
    "ganpipe-augment": "`ganpipe augment`: a conditional GAN trained on the minority classes; each run holds its "
                       "sample quality against held-out real images, sample grids, the synthetic dataset and the "
                       "registered generator.",
    "ganpipe-compare": "`ganpipe compare`: did the GAN help? Each parent run holds the verdict, the per-arm means and "
                       "95% intervals (`arm/<arm>/<metric>`, tags `best_arm`, `best_non_gan_arm`, `gan_gain`, "
                       "`gan_significant`); its child runs are one arm and seed each.",
    "ganpipe-detector": "`ganpipe train-detector`: the anomaly GAN trained on normal images, its threshold and "
                        "detection metrics on held-out images, and the registered detector.",
    "ganpipe-score": "`ganpipe score` and the score-inbox deployment: one run per batch scored, with its anomaly "
                     "rate and the model version that scored it.",
    "ganpipe-monitoring": "One run per registered detector: the anomaly rate and mean score of every batch it "
                          "scored, over time.",
}


def project_home() -> Path:
    """Folder that holds ``mlflow/`` (see module doc)."""
    if os.environ.get("GANPIPE_HOME"):
        return Path(os.environ["GANPIPE_HOME"]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


def tracking_uri() -> str:
    """The MLflow tracking URI in force (env override, else the project's SQLite store)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = project_home() / "mlflow" / "mlflow.db"
    return f"sqlite:///{db}"


def artifact_root() -> Path:
    return project_home() / "mlflow" / "artifacts"


def _is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def client():
    """An ``MlflowClient`` bound to :func:`tracking_uri`; also sets mlflow's global URI."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def check_tracking(timeout: float = 5.0) -> None:
    """Raise GanpipeError (one line) when the tracking URI is a server that does not answer; local
    stores always pass. Commands call it before doing work, so a server that is down costs nothing."""
    import urllib.error
    import urllib.request

    from pipelines.errors import GanpipeError

    uri = tracking_uri()
    if _is_local_store(uri) or not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"status {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise GanpipeError(f"MLflow tracking server {uri} is not reachable ({problem}); nothing was done")


def experiment_id(name: str) -> str:
    """Id of experiment ``name``, created on first use (with a local artifact folder for local stores)
    as a model-training experiment with its description (:func:`experiment_tags`); an experiment made
    before it had them gets the missing ones."""
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        artifact_location = None
        if _is_local_store(tracking_uri()):
            folder = artifact_root() / name
            folder.mkdir(parents=True, exist_ok=True)
            artifact_location = folder.as_uri()
        try:
            return mlflow_client.create_experiment(name, artifact_location=artifact_location, tags=experiment_tags(name))
        except Exception:  # created concurrently by another process: use theirs
            found = mlflow_client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in experiment_tags(name).items():
        if key not in found.tags:
            mlflow_client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def experiment_tags(name: str) -> dict[str, str]:
    """The tags ganpipe gives experiment ``name``: its kind (model training, so the UI shows runs,
    metrics and models rather than traces) and, for ganpipe's own experiments, a description."""
    tags = {KIND_TAG: MODEL_TRAINING_KIND}
    if name in DESCRIPTIONS:
        tags[DESCRIPTION_TAG] = DESCRIPTIONS[name]
    return tags


class TrackedRun:
    """One MLflow run, addressed by id. All ``log_*`` methods are safe to call from any thread."""

    def __init__(self, mlflow_client, run_id: str, experiment_id: str) -> None:
        self.client = mlflow_client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, prefix: str = "",
                    timestamp: int | None = None) -> None:
        """Log ``metrics`` at ``step`` and ``timestamp`` (ms since the epoch; default: now), in batches."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000) if timestamp is None else int(timestamp)
        items = [
            Metric(_metric_key(prefix + str(k)), float(v), now, step or 0)
            for k, v in metrics.items()
            if v is not None and v == v  # NaN metrics are left out, not logged as NaN
        ]
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start : start + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_figure(self, figure, artifact_file: str) -> None:
        """Log a matplotlib figure as PNG and close it."""
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        """Log an ``(H, W, 3)`` uint8 picture under ``key`` at ``step``: the UI shows the series with a step slider."""
        self.client.log_image(self.run_id, image, key=key, step=int(step))

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_table(self, table: pd.DataFrame, artifact_file: str) -> None:
        """Log a table as CSV and as Markdown (same name, ``.md``)."""
        stem = artifact_file[:-4] if artifact_file.endswith(".csv") else artifact_file
        self.log_text(table.to_csv(index=False), stem + ".csv")
        self.log_text(markdown_table(table), stem + ".md")

    def log_dataset(self, x, y, name: str, context: str, data: str) -> str:
        """Log images ``x`` (with labels ``y`` or None) as an MLflow dataset input of this run (the
        UI's Datasets column), tagged with its ``context`` (train, validation, test, synthetic) and
        made from the data spec ``data``; returns the dataset's digest."""
        from mlflow.entities import DatasetInput, InputTag

        dataset = _numpy_dataset(x, y, name, data)
        entity = dataset._to_mlflow_entity()
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, [InputTag("mlflow.data.context", context)])])
        return entity.digest

    def log_data_inputs(self, inputs: Sequence[Mapping[str, Any]], name: str, data: str) -> None:
        """Log datasets described, not held: each of ``inputs`` (from
        :func:`pipelines.evaluation.compare.data_input`: context, digest, items, shape) becomes a dataset
        input ``<name>-<context>`` of this run made from the data spec ``data``, so the UI's Datasets
        column shows what an arm trained on and was measured with, without the arrays being shipped."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        entries = [DatasetInput(Dataset(name=f"{name}-{item['context']}", digest=str(item["digest"]), source_type="code",
                                        source=json.dumps({"tags": {"ganpipe.data": data}}),
                                        profile=json.dumps({"features_shape": [item["items"], *item["shape"]]})),
                                [InputTag("mlflow.data.context", str(item["context"]))]) for item in inputs]
        if entries:
            self.client.log_inputs(self.run_id, datasets=entries)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)


def _numpy_dataset(x, y, name: str, data: str):
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    return mlflow.data.from_numpy(x, targets=y, name=name, source=CodeDatasetSource({"ganpipe.data": data}))


def dataset_digest(x, y) -> str:
    """The digest MLflow gives images ``x`` with labels ``y`` (as :meth:`TrackedRun.log_dataset` logs it):
    equal digests, equal data."""
    return _numpy_dataset(x, y, "digest", "").digest


@contextmanager
def start_run(
    experiment: str,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
    parent: TrackedRun | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
    system_metrics: bool = False,
) -> Iterator[TrackedRun]:
    """Open a run in ``experiment`` (a key of :data:`EXPERIMENTS` or a full name); it is marked
    FINISHED on exit, FAILED (with the error as its description) when the block raises.
    ``start_time``/``end_time`` (seconds since the epoch) record work that ran before the run was
    logged, such as one arm of a comparison, so the UI shows its real duration. ``system_metrics``:
    CPU, memory, disk and network every 10 s as ``system/`` metrics while the block runs (long runs)."""
    name = EXPERIMENTS.get(experiment, experiment)
    mlflow_client = client()
    exp_id = experiment_id(name)
    end_orphaned_runs()
    all_tags = {**dict(_source_tags()), OWNER_TAG: _owner_tag(),
                **{str(k): str(v) for k, v in (tags or {}).items() if v is not None}}
    if parent is not None:
        all_tags["mlflow.parentRunId"] = parent.run_id
    run = mlflow_client.create_run(exp_id, run_name=run_name, tags=all_tags,
                                   start_time=None if start_time is None else int(start_time * 1000))
    tracked = TrackedRun(mlflow_client, run.info.run_id, exp_id)
    monitor = None
    if system_metrics:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(tracked.run_id, sampling_interval=10, tracking_uri=tracking_uri())
        monitor.start()
    try:
        yield tracked
    except BaseException as exc:
        if monitor is not None:
            monitor.finish()
        # the UI shows why: the error on the run's page (description) and as a tag to filter on
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:5000]
        mlflow_client.set_tag(tracked.run_id, "ganpipe.error", reason)
        mlflow_client.set_tag(tracked.run_id, DESCRIPTION_TAG, f"**Failed**: {reason}")
        stopped = isinstance(exc, KeyboardInterrupt) or stop_requested()  # a signal may arrive as Prefect's own exception
        mlflow_client.set_terminated(tracked.run_id, status="KILLED" if stopped else "FAILED")
        raise
    if monitor is not None:
        monitor.finish()
    mlflow_client.set_terminated(tracked.run_id, status="FINISHED",
                                 end_time=None if end_time is None else int(end_time * 1000))


def _owner_tag() -> str:
    import json
    import socket

    import psutil

    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": round(psutil.Process().create_time(), 3)})


def _owner_is_gone(tag: str | None) -> bool:
    """Whether the process named by an :data:`OWNER_TAG` value ran on this host and is gone (a reused
    pid does not pass for it). Runs of other hosts, and runs without the tag, are never judged."""
    import json
    import socket

    import psutil

    try:
        owner = json.loads(tag or "")
        if owner.get("host") != socket.gethostname():
            return False
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) >= 1.0
    except psutil.NoSuchProcess:
        return True
    except (ValueError, TypeError, KeyError, AttributeError, psutil.Error):
        return False


_swept: list[str] = []


def end_orphaned_runs() -> int:
    """End as KILLED the RUNNING runs of ganpipe's experiments whose process died without ending them
    (``kill -9``, a crash of the machine), so the UI does not show them running forever. Once per
    process and tracking URI; returns how many were ended."""
    uri = tracking_uri()
    if uri in _swept:
        return 0
    _swept.append(uri)
    mlflow_client = client()
    ids = [e.experiment_id for e in (mlflow_client.get_experiment_by_name(n) for n in EXPERIMENTS.values()) if e]
    if not ids:
        return 0
    ended = 0
    for run in mlflow_client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if _owner_is_gone(run.data.tags.get(OWNER_TAG)):
            mlflow_client.set_tag(run.info.run_id, DESCRIPTION_TAG,
                                  "**Killed**: its process ended without closing the run (found by a later ganpipe command)")
            mlflow_client.set_tag(run.info.run_id, "ganpipe.error", "process died")
            mlflow_client.set_terminated(run.info.run_id, status="KILLED")
            ended += 1
    return ended


@lru_cache(maxsize=1)
def _source_tags() -> tuple[tuple[str, str], ...]:
    return tuple(source_tags().items())


def source_tags() -> dict[str, str]:
    """The user, source and git commit tags ``mlflow.start_run`` would set (``create_run`` does not),
    so the UI's "Created by" and "Source" columns are filled; and what made the run: the command
    line (:data:`COMMAND_TAG`, the program's name and its arguments) and the ganpipe version
    (:data:`VERSION_TAG`), so a run can be repeated and its results traced to the code."""
    import getpass
    import shlex
    import subprocess
    import sys

    program = Path(sys.argv[0]).name or "python"
    tags = {"mlflow.source.type": "JOB", "mlflow.source.name": program,
            COMMAND_TAG: shlex.join([program, *sys.argv[1:]])[:5000], VERSION_TAG: ganpipe_version()}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):
        pass
    checkout = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if len(commit) == 40:
        tags["mlflow.source.git.commit"] = commit
    return tags


def ganpipe_version() -> str:
    """The installed ganpipe's version, or ``not installed`` (a source tree run without installing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ganpipe")
    except PackageNotFoundError:
        return "not installed"


def ui_command() -> str:
    """The shell command that opens the MLflow UI on the store in force."""
    uri = tracking_uri()
    if not _is_local_store(uri):
        return f"open {uri} in a browser"
    return f".venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def ui_base() -> str:
    """Where the MLflow UI is: the tracking server, or the UI that :func:`ui_command` starts."""
    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def run_url(run_id: str) -> str:
    """The run's page in the MLflow UI (its model-training view): on the tracking server, or on the
    UI that :func:`ui_command` starts."""
    experiment = client().get_run(run_id).info.experiment_id
    return f"{ui_base()}/#/experiments/{experiment}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _metric_key(key: str) -> str:
    # MLflow keys allow letters, digits, _ - . / and spaces; class names from folders may hold others
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


def find_runs(experiment: str, tags: Mapping[str, str]) -> list[str]:
    """Ids of finished runs in ``experiment`` carrying all ``tags`` (newest first)."""
    name = EXPERIMENTS.get(experiment, experiment)
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        return []
    query = " and ".join([f"tags.`{k}` = '{v}'" for k, v in tags.items()] + ["attributes.status = 'FINISHED'"])
    runs = mlflow_client.search_runs([found.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"])
    return [r.info.run_id for r in runs]
