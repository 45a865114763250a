"""One-seed probe of a cGAN setting (direction only; `make bench` gives the multi-seed numbers).

    python -m benchmarks.gan_probe digits 0 '{"guide_confidence": 0.5}'
    python -m benchmarks.gan_probe mnist5k 0 '{}' ros,gan
    python -m benchmarks.gan_probe photo-crops-32 0 '{}' ''     # a colour setting; '' runs no arms
    python -m benchmarks.gan_probe grey-mnist-64 0 '{}' ''      # colour-mnist-64's digits in grey
    python -m benchmarks.gan_probe colour-mnist-32 0 '{}' '' --oracle-judge   # a diagnostic (round 17)

Trains one GAN (`GANOverSampler` defaults plus the JSON overrides of `GANConfig` fields) on the
seed's training split of the `synthesis` benchmark setting, then prints one JSON line: GAN seconds,
per minority class the label agreement, near-duplicate share (after the novelty filter, and raw:
without it) and coverage of its samples, the label agreement by a judge trained on the uncut training
split (as the synthesis bench measures it) with the classes that judge gives the samples
(`uncut_judge_predictions`: per minority class, counts of each predicted class, after the novelty
filter and raw), the taught recall of the GAN's, SMOTE's and classic augmentation's samples
(:func:`~pipelines.evaluation.sample_quality.taught_table`), and per arm the minority recall on validation and test
(with the synthetic share chosen on validation).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks.colour import load_colour
from benchmarks.synthesis import COLOUR_SETTINGS, SETTINGS, uncut_judge, uncut_judge_agreement
from gan_aug import GANOverSampler
from pipelines.data.sources import load_dataset
from pipelines.data.splits import stratified_split
from pipelines.evaluation.compare import evaluate_arms, seed_splits
from pipelines.evaluation.quality import memorisation
from pipelines.evaluation.sample_quality import SAMPLES, compare_sample_quality, taught_table


COLOUR = {f"{name}-{side}": (name, side, minority) for name, side, minority in COLOUR_SETTINGS}
# a probe-only setting that splits colour-mnist-64's failure into one of colour and one of size (with
# colour-mnist-32): the same digits and minority cut in grey at 64 px
COLOUR["grey-mnist-64"] = ("grey-mnist", 64, COLOUR["colour-mnist-64"][2])


def setting_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every probe takes: a benchmark setting, a seed and ``GANConfig`` overrides."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=[data for data, _ in SETTINGS] + list(COLOUR))
    parser.add_argument("seed", type=int)
    parser.add_argument("config", nargs="?", default="{}", help="JSON object of GANConfig fields")
    return parser


def load_setting(data: str, seed: int):
    """``(dataset, splits, minority_idx, targets)`` of a setting of :data:`SETTINGS` or :data:`COLOUR`."""
    if data in COLOUR:
        name, side, minority = COLOUR[data]
        dataset = load_colour(name, side)
    else:
        minority, dataset = dict(SETTINGS)[data], load_dataset(data)
    return (dataset, *seed_splits(dataset, dict(minority), seed))


def use_uncut_judge(dataset, seed: int) -> None:
    """Make every GAN fit of this process train its class judge on the seed's uncut training split
    (the same images, before the minority classes were cut) instead of the data it is given."""
    import torch

    from gan_aug import train

    uncut = stratified_split(dataset, seed=seed).train
    x, y = torch.from_numpy(uncut.x) * 2.0 - 1.0, torch.from_numpy(np.asarray(uncut.y, dtype=np.int64))
    given = train.train_judge

    def oracle(_x, _y, n_classes, config, device, *args, **kwargs):
        return given(x, y, n_classes, config, device, *args, **kwargs)

    train.train_judge = oracle


def main(argv=None) -> int:
    parser = setting_parser(__doc__)
    parser.add_argument("arms", nargs="?", default="ros,gan", help="comma-separated compare arms")
    parser.add_argument("--oracle-judge", action="store_true",
                        help="diagnostic only: the GAN's class judge trains on the uncut training split "
                             "(every image of the minority classes), which no real fit can do; it tells a "
                             "generator that cannot draw the class from a guide that does not know it")
    args = parser.parse_args(argv)
    overrides = json.loads(args.config)
    dataset, splits, minority_idx, targets = load_setting(args.data, args.seed)
    if args.oracle_judge:
        use_uncut_judge(dataset, args.seed)
    gan = GANOverSampler(random_state=args.seed, **overrides).fit(splits.train.x, splits.train.y)
    quality = compare_sample_quality(splits, lambda labels, s: gan.generate(labels, seed=s + 10_000), minority_idx,
                                     args.seed)
    taught = taught_table(splits, lambda labels, s: gan.generate(labels, seed=s + 10_000), minority_idx, args.seed)
    quality = quality[quality.method == "gan"]
    raw = [memorisation(gan.generate(np.full(SAMPLES, k), seed=args.seed + 10_000, novelty=False),
                        splits.train.x[splits.train.y == k])["near_duplicate_share"] for k in minority_idx]
    judge = uncut_judge(dataset, args.seed)
    uncut, _ = uncut_judge_agreement(dataset, splits, minority_idx, gan, args.seed, judge)
    n_classes = len(dataset.class_names)
    predicted = {dataset.class_names[k]: {
        view: np.bincount(judge.predict(gan.generate(np.full(SAMPLES, k), seed=args.seed + 20_000, novelty=novelty)),
                          minlength=n_classes).tolist()
        for view, novelty in (("filtered", True), ("raw", False))} for k in minority_idx}
    arms = [a for a in args.arms.split(",") if a]
    rows = evaluate_arms(splits, minority_idx, targets, arms, "cnn", 15, args.seed, gan.generate) if arms else []
    print(json.dumps({
        "data": args.data, "seed": args.seed, "config": overrides, "gan_seconds": round(gan.gan_.seconds),
        "label_agreement": quality.label_agreement.round(3).tolist(),
        "near_duplicate_share": quality.near_duplicate_share.round(3).tolist(),
        "raw_near_duplicate_share": np.round(raw, 3).tolist(),
        "coverage": quality.coverage.round(3).tolist(),
        "taught_recall": {m: rows.taught_recall.round(3).tolist() for m, rows in taught.groupby("method", sort=False)},
        "uncut_judge_agreement": [round(v, 3) for v in uncut.values()],
        "uncut_judge_predictions": predicted,
        "minority_recall_val_test_share": {r["arm"]: (round(r["val_minority_recall"], 3), round(r["minority_recall"], 3),
                                                      r.get("synthetic_share")) for r in rows},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
