"""One-seed probe of the conditional GAN's class judge (direction only): how well does the judge the
generator is guided by know each minority class from its few training images?

    python -m benchmarks.judge_probe colour-mnist-64 0 '{"judge_steps": 2400}'
    python -m benchmarks.judge_probe photo-crops-32 0 '{}' --colour   # the judge with DiffAugment's colour op

Trains :func:`gan_aug.train.train_judge` with the ``GANOverSampler`` defaults plus the JSON
overrides of ``GANConfig`` fields (the batch scaled for the image side as a fit scales it) on the
seed's training split of a `synthesis` benchmark setting, then prints one JSON line: seconds, the
judge's accuracy on the validation split and, per minority class, its recall and precision there.
Validation only: nothing here looks at the test split.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from benchmarks.gan_probe import load_setting, setting_parser
from gan_aug import GANOverSampler
from gan_aug.train import train_judge


def judge_report(predicted: np.ndarray, truth: np.ndarray, minority_idx: list[int], names) -> dict:
    """Accuracy, and per minority class recall and precision (0 when the class is never predicted)."""
    recall = {names[k]: round(float((predicted[truth == k] == k).mean()), 3) for k in minority_idx}
    precision = {names[k]: round(float((truth[predicted == k] == k).mean()) if (predicted == k).any() else 0.0, 3)
                 for k in minority_idx}
    return {"accuracy": round(float((predicted == truth).mean()), 3), "minority_recall": recall,
            "minority_precision": precision}


def probe(data: str, seed: int, overrides: dict, colour: bool = False) -> tuple[dict, torch.nn.Module, torch.Tensor, object]:
    """Train the judge of ``data``'s seed split (:func:`gan_aug.train.train_judge`) -> (its
    validation report with the seconds, the judge, the training images in [-1, 1], the splits)."""
    dataset, splits, minority_idx, _ = load_setting(data, seed)
    x = splits.train.x
    config = GANOverSampler(random_state=seed, **overrides).gan_config(len(x), x.shape[-1])
    started = time.perf_counter()
    real = torch.from_numpy(x) * 2 - 1
    judge = train_judge(real, torch.from_numpy(splits.train.y), len(dataset.class_names), config, colour=colour)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        predicted = judge(torch.from_numpy(splits.val.x) * 2 - 1).argmax(1).numpy()
    report = {"judge_seconds": round(seconds), **judge_report(predicted, splits.val.y, minority_idx,
                                                                dataset.class_names)}
    return report, judge, real, splits


def main(argv=None) -> int:
    parser = setting_parser(__doc__)
    parser.add_argument("--colour", action="store_true", help="train the judge with DiffAugment's colour op")
    args = parser.parse_args(argv)
    overrides = json.loads(args.config)
    report, *_ = probe(args.data, args.seed, overrides, args.colour)
    print(json.dumps({"data": args.data, "seed": args.seed, "config": overrides, "colour": args.colour, **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
