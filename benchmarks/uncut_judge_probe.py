"""How well can any judge trained on the uncut training split tell a setting's classes apart?
(Direction only: issue 20's agreement target asks 0.9 of the GAN's samples, which no judge can read
more surely than it reads the class's real images.)

    python -m benchmarks.uncut_judge_probe photo-crops-32 0,1

Per seed, on the seed's uncut training split (:func:`pipelines.data.splits.stratified_split`, before
any class is cut), three judges: ``cnn10`` (the synthesis bench's uncut judge,
:func:`benchmarks.synthesis.uncut_judge`: ``FEATURE_NET``'s 10 epochs), ``cnn30`` (the same CNN,
30 epochs) and ``svm`` (an RBF SVM on standardised pixels, class-balanced, as issue 20's probe
used). One JSON line per seed and judge: seconds, accuracy and per-class recall on validation and
on test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.gan_probe import load_setting
from benchmarks.synthesis import COLOUR_SETTINGS, SETTINGS, uncut_judge
from pipelines.data.splits import stratified_split
from pipelines.evaluation.classifier import CNNClassifier
from pipelines.evaluation.sample_quality import FEATURE_NET

JUDGES = ("cnn10", "cnn30", "svm")
SETTING_NAMES = [data for data, _ in SETTINGS] + [f"{name}-{side}" for name, side, _ in COLOUR_SETTINGS]


def recall_report(predicted: np.ndarray, truth: np.ndarray, names) -> dict:
    """Accuracy and per-class recall (classes absent from ``truth`` are left out)."""
    return {"accuracy": round(float((predicted == truth).mean()), 3),
            "recall": {names[k]: round(float((predicted[truth == k] == k).mean()), 3)
                       for k in range(len(names)) if (truth == k).any()}}


def train_judge(name: str, dataset, seed: int):
    """One judge of the module docstring, trained on ``dataset``'s uncut training split for ``seed``
    -> its ``predict(images)``."""
    if name == "cnn10":
        return uncut_judge(dataset, seed).predict
    train = stratified_split(dataset, seed=seed).train
    if name == "cnn30":
        judge = CNNClassifier(**{**FEATURE_NET, "epochs": 30}, class_weight="balanced", random_state=seed + 7)
        return judge.fit(train.x, train.y, n_classes=len(train.class_names)).predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    flat = train.x.reshape(len(train.x), -1)
    model = make_pipeline(StandardScaler(), SVC(C=10, class_weight="balanced")).fit(flat, train.y)
    return lambda images: model.predict(images.reshape(len(images), -1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=SETTING_NAMES)
    parser.add_argument("seeds", help="comma-separated seeds, e.g. 0,1")
    parser.add_argument("--judges", default=",".join(JUDGES), help=f"comma-separated, from {', '.join(JUDGES)}")
    args = parser.parse_args(argv)
    unknown = set(args.judges.split(",")) - set(JUDGES)
    if unknown:
        parser.error(f"unknown judge(s): {', '.join(sorted(unknown))}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        dataset = load_setting(args.data, seed)[0]
        split = stratified_split(dataset, seed=seed)
        names = dataset.class_names
        for name in args.judges.split(","):
            started = time.perf_counter()
            predict = train_judge(name, dataset, seed)
            print(json.dumps({"data": args.data, "seed": seed, "judge": name,
                              "seconds": round(time.perf_counter() - started),
                              "val": recall_report(predict(split.val.x), split.val.y, names),
                              "test": recall_report(predict(split.test.x), split.test.y, names)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
