"""The ``ganpipe`` command line, built from the parameter models in :mod:`flows.params`: one
subcommand per job, whose options are the model's fields (name, type, default, help) and whose help
is the model's docstring. Each subcommand checks its input (loading the data once), runs one flow
and prints what a person needs next (tables, output paths, the MLflow run id and how to open the UI).

User mistakes (bad path, unknown class, corrupt file, bad option) print one line
``ganpipe: error: ...`` and exit with status 2; no traceback.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Sequence

from cyclopts import App, CycloptsError, MissingArgumentError, Parameter

from flows.params import (
    AugmentParams,
    ClusterParams,
    CompareParams,
    DemoParams,
    DoctorParams,
    JobParams,
    MlflowServerParams,
    ScoreParams,
    ServeParams,
    TrainDetectorParams,
    option_name,
    validated,
)
from pipelines.errors import GanpipeError

EXIT_USER_ERROR = 2

app = App(
    name="ganpipe",
    help=("GAN pipelines for imbalanced and drifting image data: synthesise minority classes, compare against "
          "classic remedies, detect anomalies. Every run is tracked in MLflow and every job is a Prefect flow "
          "that can be scheduled. Run 'ganpipe COMMAND --help' for the options of one command."),
    help_format="plaintext",
    help_on_error=False,
    version=lambda: _version(),
    version_flags=["--version"],
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ganpipe {version('ganpipe')}"
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "ganpipe (not installed)"


REQUIRED: dict[str, list[str]] = {}  # command -> its required arguments, as typed (BATCH, --out)


def missing_arguments(tokens: Sequence[str]) -> str | None:
    """``ganpipe score needs BATCH and --out`` for a command line that lacks required arguments (cyclopts
    names only the first one it misses, and a positional one as an option)."""
    command_name = next((t for t in tokens if not t.startswith("-")), None)
    required = REQUIRED.get(command_name or "", [])
    rest = list(tokens[tokens.index(command_name) + 1:]) if command_name else []
    positional_given = len([t for i, t in enumerate(rest) if not t.startswith("-")
                            and not (i and rest[i - 1].startswith("--") and "=" not in rest[i - 1])])
    absent, positional_seen = [], 0
    for arg in required:
        if arg.startswith("--"):
            if not any(t == arg or t.startswith(arg + "=") for t in rest):
                absent.append(arg)
        else:
            positional_seen += 1
            if positional_seen > positional_given:
                absent.append(arg)
    if not absent:
        return None
    return f"{command_name} needs {' and '.join(absent)}; see 'ganpipe {command_name} --help'"


def command(name: str, *models: type[JobParams], positional: Sequence[str] = ()) -> Callable:
    """Register ``handler(*params)`` as the subcommand ``name`` with options generated from ``models``
    (fields a command line cannot express, such as dicts, are left to Python callers and deployments)."""

    def register(handler: Callable[..., int]) -> Callable[..., int]:
        options = []
        for model in models:
            for field_name, field in model.model_fields.items():
                if field.annotation is dict or getattr(field.annotation, "__origin__", None) is dict:
                    continue
                kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if field_name in positional else inspect.Parameter.KEYWORD_ONLY
                default = inspect.Parameter.empty if field.is_required() else field.get_default(call_default_factory=True)
                options.append(inspect.Parameter(field_name, kind, default=default,
                                                 annotation=Annotated[field.annotation, Parameter(help=field.description)]))
        options.sort(key=lambda p: p.kind)

        def run(*args: Any, **values: Any) -> int:
            values.update(zip(positional, args))
            return handler(*(validated(m, {k: v for k, v in values.items() if k in m.model_fields}, tuple(positional))
                             for m in models))

        run.__signature__ = inspect.Signature(options)
        REQUIRED[name] = [option_name(p.name, tuple(positional)) for p in options if p.default is inspect.Parameter.empty]
        run.__doc__ = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(models[0].__doc__ or "").split("\n\n"))
        app.command(run, name=name)
        return handler

    return register


def run_flow(flow: Callable[..., dict], *args: Any) -> dict:
    """Run a flow against the local Prefect API (or ``PREFECT_API_URL``'s), with Prefect's own INFO
    lines kept off the terminal unless ``GANPIPE_LOG_LEVEL`` asks for them."""
    from flows.servers import local_prefect_api

    with local_prefect_api():
        quiet_prefect_console(os.environ.get("GANPIPE_LOG_LEVEL", "WARNING"))
        return flow(*args)


def quiet_prefect_console(level: str) -> None:
    """Keep the terminal to ganpipe's news: Prefect's own records below ``level`` (a flow run began,
    its link into an API that ends with the command, its final state) are dropped by the console
    handler; ganpipe's progress lines, which go through Prefect's run logger, stay."""
    import prefect

    threshold = logging.getLevelName(level.upper())
    threshold = threshold if isinstance(threshold, int) else logging.WARNING
    prefect_code = str(Path(prefect.__file__).parent)

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= threshold or not record.pathname.startswith(prefect_code)

    keep.ganpipe_quiet = True
    for handler in logging.getLogger().handlers:
        if not any(getattr(f, "ganpipe_quiet", False) for f in handler.filters):
            handler.addFilter(keep)


def print_run(run_id: str, charts: bool = False) -> None:
    """The MLflow run a command made and how to look at it (with ``charts``, a compare parent's
    children as charts grouped by arm)."""
    from pipelines.tracking.comparison import chart_view_url
    from pipelines.tracking.runs import run_url, ui_command

    print(f"MLflow run: {run_url(run_id)}")
    if charts and (view := chart_view_url(run_id)):
        print(f"Arms side by side: {view}")
    print(f"Open the MLflow UI with:\n  {ui_command()}")


@command("demo", DemoParams)
def demo(params: DemoParams) -> int:
    from flows.demo import WHY_DIGITS, demo_flow
    from pipelines.text import markdown_table
    from pipelines.tracking.comparison import chart_view_url
    from pipelines.tracking.runs import run_url, ui_command

    result = run_flow(demo_flow, params)
    augmented, compared, settings = result["augment"], result["compare"], result["settings"]
    quality = augmented["quality"]
    print(f"\n== augment: {settings['data']}, minority {settings['minority']}, {settings['gan_steps']} GAN steps "
          f"({augmented['seconds']:.0f} s) ==\n")
    print(markdown_table(quality[["class", "method", "frechet", "coverage", "label_agreement", "near_duplicate_share"]]))
    print(f"Synthetic dataset: {augmented['out']}/synthetic.npz ({augmented['synthetic']} items), MLflow run "
          f"{augmented['run_id']}")
    if augmented.get("validated_gain") is not None:
        print(augmented["validated_gain"].text())
    summary = compared["summary"]
    print(f"\n== compare: {settings['seeds']} seeds, {settings['classifier']} ({settings['epochs']} epochs), "
          "metrics on the untouched test split ==\n")
    print(markdown_table(summary[[c for c in summary.columns if not c.endswith(("_low", "_high"))]]))
    print(compared["text"])
    print("\n" + WHY_DIGITS)
    print(f"Sample grids (real training images in the first row): {augmented['out']}/samples_<class>.png and the "
          "augment run's figures/ in MLflow.")
    print(f"MLflow runs: augment {augmented['run_id']}, compare {compared['run_id']}")
    print(f"  augment: {run_url(augmented['run_id'])}\n  compare: {run_url(compared['run_id'])}")
    if view := chart_view_url(compared["run_id"]):
        print(f"  arms side by side: {view}")
    print(f"Open the MLflow UI with:\n  {ui_command()}")
    return 0


@command("augment", AugmentParams)
def augment(params: AugmentParams) -> int:
    from flows.augment import augment_flow, plan
    from pipelines.text import markdown_table

    plan.prepare(params)  # every user error surfaces before the flow run starts, which then takes this plan
    result = run_flow(augment_flow, params)
    columns = ["class", "method", "frechet", "precision", "recall", "coverage", "label_agreement", "near_duplicate_share"]
    print(f"\nSynthesised per class: {result['to_make']}  (GAN training {result['seconds']:.0f} s)")
    print("\nSample quality against held-out real images (lower frechet is better; the rest higher, "
          "except near_duplicate_share):\n")
    print(markdown_table(result["quality"][columns]))
    print(f"Wrote {result['synthetic']} synthetic items to {result['out']}/synthetic.npz, "
          f"{result['out']}/images/ and {result['out']}/manifest.csv")
    print(f"Registered generator: {params.model_name} version {result['model_version']}")
    if result["validated_gain"] is not None:
        print(f"\n{result['validated_gain'].text()}\n(The registered version is tagged validated_gain; test split "
              "untouched: `ganpipe compare` measures on it over several seeds.)")
    print_run(result["run_id"])
    return 0


@command("train-detector", TrainDetectorParams)
def train_detector(params: TrainDetectorParams) -> int:
    import pandas as pd

    from flows.detector import normal_classes, train_detector_flow
    from pipelines.text import markdown_table

    normal_classes.prepare(params)  # every user error surfaces before the flow run starts, which takes this plan
    result = run_flow(train_detector_flow, params)
    rows = [{"split": split, **metrics} for split, metrics in result["metrics"].items()]
    print(f"\nTrained in {result['seconds']:.0f} s; threshold {result['threshold']:.4g} "
          f"(target false positive rate {params.target_fpr:.1%} on held-out normal images)\n")
    print(markdown_table(pd.DataFrame(rows)))
    state = "is now" if result["champion"] else "is not"
    print(f"Registered model {params.name} version {result['version']} ({state} the champion)")
    print_run(result["run_id"])
    return 0


@command("score", ScoreParams, positional=("batch",))
def score(params: ScoreParams) -> int:
    from pipelines.data.specs import check_batch_path

    check_batch_path(params.batch)  # before the heavy imports: a mistyped path answers at once
    from flows.detector import registered_detector, score_flow
    from pipelines.data.batches import check_batch
    from pipelines.tracking.runs import check_tracking

    # user errors, a tracking server that is down and a model that cannot score end here, before any server starts
    check_batch(params.batch)
    check_tracking()
    registered_detector(params.model, params.device)
    result = run_flow(score_flow, params)
    summary = result["summary"]
    print()
    print(summary["message"])
    if result["repeated"]:
        print(f"Batch {result['batch_id']} was already scored with version {result['model_version']}: "
              f"reusing MLflow run {result['run_id']} (no duplicate run)")
    print(f"Wrote {result['out']}/scores.csv ({summary['scored']} items) and "
          f"{result['out']}/rejected.csv ({summary['rejected']} items)")
    out = Path(result["out"])
    if (out / "maps.npz").exists():
        print(f"Anomaly maps: {out}/maps/ (image and map side by side, per {params.maps} item), {out}/maps.npz"
              + (f", the most anomalous in {out}/top_anomalies.png" if (out / "top_anomalies.png").exists() else ""))
    print_run(result["run_id"])
    return 0


@command("compare", CompareParams, ClusterParams)
def compare(params: CompareParams, cluster: ClusterParams) -> int:
    from flows.common import task_runner
    from flows.compare import compare_flow, plan
    from pipelines.text import markdown_table

    # bad input and a missing generator fail here, in one line, before any server starts; the flow takes this plan
    plan.prepare(params)
    runner = task_runner(cluster.dask_address, cluster.dask_workers)
    result = run_flow(compare_flow.with_options(task_runner=runner), params)
    summary = result["summary"]
    columns = [c for c in summary.columns if not c.endswith(("_low", "_high"))]
    print(f"\nMean over {params.seeds} seeds on the untouched test split (intervals in {result['out']}/comparison.md):\n")
    print(markdown_table(summary[columns]))
    print(result["text"])
    print(f"\nWrote {result['out']}/comparison.csv and {result['out']}/comparison.md")
    print_run(result["run_id"], charts=True)
    return 0


@command("serve", ServeParams)
def serve(params: ServeParams) -> int:
    from flows.serve import serve_forever

    return serve_forever(params)


@command("doctor", DoctorParams)
def doctor(params: DoctorParams) -> int:
    import platform

    import torch

    from pipelines.devices import device_name, pick_device
    from pipelines.tracking.runs import tracking_uri

    cuda = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    print(f"{_version()}, Python {platform.python_version()}, torch {torch.__version__} ({cuda})")
    device, why = pick_device(params.device)
    print(f"device: {device_name(device)} (--device {params.device}: {why})")
    print(f"torch threads: {torch.get_num_threads()} of {os.cpu_count()} CPU cores")
    print(f"MLflow tracking: {tracking_uri()}")
    return 0


@command("mlflow-server", MlflowServerParams)
def mlflow_server(params: MlflowServerParams) -> int:
    from flows.servers import run_mlflow_server, server_url

    url = server_url(params.host, params.port)
    print(f"MLflow server on {url}; point flows at it with\n"
          f"  export MLFLOW_TRACKING_URI={url}", flush=True)
    try:
        return run_mlflow_server(params.port, params.backend_store_uri,
                                 Path(params.artifacts).expanduser() if params.artifacts else None, params.host)
    except KeyboardInterrupt as exc:
        return 128 + getattr(exc, "signum", 2)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ganpipe`` program. Run as a program (``argv`` None), SIGTERM/SIGINT end it and every
    process it started (:mod:`flows.lifecycle`), and the process ends at most
    :data:`~flows.lifecycle.EXIT_SECONDS` after it printed; called from Python, signals stay the caller's."""
    from contextlib import nullcontext

    from flows.lifecycle import exit_soon, received_signal, signals_end_the_command

    # The local Prefect API's telemetry heartbeat races the flow for its SQLite file.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    level = os.environ.get("GANPIPE_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # MLflow's own INFO lines (creating tables, starting the system-metrics thread) are not the user's news;
    # mlflow sets its logger's level when it is imported, so it reads the level from its environment variable
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", level)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", level.lower())  # a local Dask cluster's INFO lines too
    logging.getLogger("mlflow").setLevel(level)
    tokens = list(sys.argv[1:] if argv is None else argv)
    status = 0
    try:
        with signals_end_the_command() if argv is None else nullcontext():
            result = app(tokens, exit_on_error=False, print_error=False, result_action="return_value")
        status = result if isinstance(result, int) else 0
    except (CycloptsError, GanpipeError) as exc:
        text = (isinstance(exc, MissingArgumentError) and missing_arguments(tokens)) or str(exc)
        print(f"ganpipe: error: {' '.join(text.split())}", file=sys.stderr)
        status = EXIT_USER_ERROR
    except BaseException as exc:  # noqa: BLE001 - a signal may surface as Prefect's own exception
        signum = received_signal() or getattr(exc, "signum", None)
        if signum is None:
            if not isinstance(exc, KeyboardInterrupt):
                raise
            signum = 2
        print(f"ganpipe: stopped by {signal_name(signum)}; checkpoints are kept, output of the interrupted "
              "step is incomplete", file=sys.stderr)
        status = 128 + signum
    if argv is None:
        sys.stdout.flush()
        exit_soon(status)
    return status


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


if __name__ == "__main__":
    sys.exit(main())
