"""Why a GAN's samples that a judge reads right do not help the classifier (round 20 of
docs/gan-synthesis.md; direction only, one seed).

    python -m benchmarks.usefulness_probe colour-mnist-32 1 '{}'
    python -m benchmarks.usefulness_probe colour-mnist-32 1 '{"steps": 4500}' --sheet out/sheet.png
    python -m benchmarks.usefulness_probe colour-mnist-32 1 '{}' --checks remedies

Trains one GAN (``GANOverSampler`` defaults plus the JSON overrides) on the seed's training split
(kept under ``out/probes/`` by setting, seed, config and the code's key, so a second run with other checks reuses it),
then prints one JSON line with the checks asked for:

- ``quality``: the uncut judge's agreement per minority class (the synthesis bench's), the taught
  recall of the GAN's samples (:func:`~pipelines.evaluation.sample_quality.taught_table`) and the
  classification accuracy score (Ravuri & Vinyals 2019): a CNN trained on synthetic images alone,
  every class, scored per class on the real test images;
- ``shortcut``: can a CNN tell the GAN's images of the common classes from their real images (held-out
  accuracy; 0.5 = no)? If it can, a classifier that meets synthetic images in the rare classes only
  may learn "synthetic" as part of the class; and how near the samples' border colours lie to the
  class's own few training images, beside the class's real test images and another class's
  (mean distance to the nearest of them; smaller for the samples = the generator keeps their colours);
- ``remedies``: minority recall (validation, test) and the test confusion of the minority classes for
  ``gan`` (share 1), ``gan`` with synthetic images of the common classes too (as many as each has
  real ones), ``gan+balanced_softmax`` at each synthetic weight, ``balanced_softmax`` and ``none``,
  and each with its head retrained on the real training images, class-balanced (cRT, as SYNAuG's
  last step: logistic regression on the CNN's penultimate features).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.gan_probe import load_setting, setting_parser
from benchmarks.regimes import code_key
from benchmarks.synthesis import save_sample_sheet, uncut_judge_agreement
from pipelines.evaluation.classifier import make_classifier
from pipelines.evaluation.compare import SYNTHETIC_WEIGHTS
from pipelines.evaluation.metrics import classification_report
from pipelines.evaluation.remedies import apply_arm
from pipelines.evaluation.sample_quality import taught_table

CHECKS = ("quality", "shortcut", "remedies")
KEPT = Path(__file__).resolve().parents[1] / "out" / "probes"
CLASSIFIER_EPOCHS = 15  # the compare bench's


def trained_gan(data: str, seed: int, overrides: dict, train, folder: Path = KEPT):
    """The GAN of this setting, seed and config: from ``folder`` when a run made it, else trained and kept."""
    import torch

    from gan_aug import GANOverSampler

    # the code's key too (the bench caches'): a new default, a new GAN
    key = hashlib.sha1((json.dumps(overrides, sort_keys=True) + code_key()).encode()).hexdigest()[:8]
    path = folder / f"gan-{data}-seed{seed}-{key}.pt"
    if path.is_file():
        return GANOverSampler.from_state_dict(torch.load(path, weights_only=False))
    gan = GANOverSampler(random_state=seed, **overrides).fit(train.x, train.y)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(gan.state_dict(), path)
    return gan


def border_colours(x: np.ndarray) -> np.ndarray:
    """``(N, C)``: each image's mean colour over its one-pixel border (the background, for digits)."""
    edges = np.concatenate([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], axis=2)
    return edges.mean(axis=2)


def nearest_distance(points: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over ``points`` of the distance to the nearest of ``anchors``."""
    return float(np.sqrt(((points[:, None] - anchors[None]) ** 2).sum(-1)).min(axis=1).mean())


def main(argv=None) -> int:
    parser = setting_parser(__doc__)
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated, of: {', '.join(CHECKS)}")
    parser.add_argument("--sheet", type=Path, help="save real training images and samples of each minority class "
                                                   "and of one common class here (PNG)")
    args = parser.parse_args(argv)
    checks = [c for c in args.checks.split(",") if c]
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        parser.error(f"unknown check(s): {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    dataset, splits, minority_idx, targets = load_setting(args.data, args.seed)
    train, seed = splits.train, args.seed
    n_classes, names = len(train.class_names), train.class_names
    overrides = json.loads(args.config)
    gan = trained_gan(args.data, seed, overrides, train)
    synthesise = lambda labels, s: gan.generate(labels, seed=s + 1)  # noqa: E731 (as compare shifts it)
    common = [k for k in range(n_classes) if k not in minority_idx]

    def fit(x, y, sample_weight=None, epochs=CLASSIFIER_EPOCHS, **options):
        model = make_classifier("cnn", epochs=epochs, random_state=seed, **options)
        return model.fit(x, y, n_classes=n_classes, validation=(splits.val.x, splits.val.y),
                         **({} if sample_weight is None else {"sample_weight": sample_weight}))

    def recall(proba_val, proba_test) -> dict:
        val, _ = classification_report(splits.val.y, proba_val, names, minority_idx)
        test, _ = classification_report(splits.test.y, proba_test, names, minority_idx)
        predicted = proba_test.argmax(axis=1)
        return {"val_test": [round(val["minority_recall"], 3), round(test["minority_recall"], 3)],
                "test_predicted_as": {names[k]: np.bincount(predicted[splits.test.y == k], minlength=n_classes).tolist()
                                      for k in minority_idx}}

    def head_retrained(model) -> dict:
        from sklearn.linear_model import LogisticRegression

        head = LogisticRegression(class_weight="balanced", max_iter=2000).fit(model.embed(train.x), train.y)
        return recall(head.predict_proba(model.embed(splits.val.x)), head.predict_proba(model.embed(splits.test.x)))

    out: dict = {"data": args.data, "seed": seed, "config": overrides, "gan_seconds": round(gan.gan_.seconds)}
    if "quality" in checks:
        uncut, _ = uncut_judge_agreement(dataset, splits, minority_idx, gan, seed)
        taught = taught_table(splits, lambda labels, s: gan.generate(labels, seed=s + 10_000), minority_idx, seed)
        every = np.repeat(np.arange(n_classes), int(np.bincount(train.y).max()))
        predicted = fit(synthesise(every, seed + 55), every).predict(splits.test.x)
        cas = [float((predicted[splits.test.y == k] == k).mean()) for k in range(n_classes)]
        out["quality"] = {"uncut_judge_agreement": [round(v, 3) for v in uncut.values()],
                          "taught_recall": {m: r.taught_recall.round(3).tolist() for m, r in taught.groupby("method", sort=False)},
                          "cas_minority": [round(cas[k], 3) for k in minority_idx],
                          "cas_common_mean": round(float(np.mean([cas[k] for k in common])), 3)}
    if "shortcut" in checks:
        real = train.x[np.isin(train.y, common)]
        fake = synthesise(train.y[np.isin(train.y, common)], seed + 99)
        x, y = np.concatenate([real, fake]), np.repeat([0, 1], len(real))
        order = np.random.default_rng(seed).permutation(len(y))
        first, second = order[: len(y) // 2], order[len(y) // 2:]
        judge = make_classifier("cnn", epochs=5, random_state=seed).fit(x[first], y[first], n_classes=2)
        colours = {}
        for k in minority_idx:
            own = border_colours(train.x[train.y == k])
            other = next(c for c in common if (splits.test.y == c).any())
            colours[names[k]] = {
                "samples": round(nearest_distance(border_colours(gan.generate(np.full(300, k), seed=seed + 5)), own), 3),
                "real_test": round(nearest_distance(border_colours(splits.test.x[splits.test.y == k]), own), 3),
                "other_class_real": round(nearest_distance(border_colours(splits.test.x[splits.test.y == other]), own), 3)}
        out["shortcut"] = {"real_vs_synthetic_accuracy": round(float((judge.predict(x[second]) == y[second]).mean()), 3),
                           "border_colour_distance_to_own_training_images": colours}
    if "remedies" in checks:
        found = {}
        for arm in ("none", "balanced_softmax", "gan"):
            x, y, options = apply_arm(arm, train, targets, seed, synthesise, synthetic_share=1.0)
            model = fit(x, y, **options)
            found[arm] = recall(model.predict_proba(splits.val.x), model.predict_proba(splits.test.x))
            found[f"{arm}+crt"] = head_retrained(model)
            if arm == "gan":
                labels = np.concatenate([np.full(int((train.y == k).sum()), k) for k in common])
                model = fit(np.concatenate([x, synthesise(labels, seed + 77)]), np.concatenate([y, labels]))
                found["gan, common classes too"] = recall(model.predict_proba(splits.val.x), model.predict_proba(splits.test.x))
        for weight in SYNTHETIC_WEIGHTS:
            x, y, options = apply_arm("gan+balanced_softmax", train, targets, seed, synthesise, synthetic_weight=weight)
            model = fit(x, y, **options)
            found[f"gan+balanced_softmax w={weight}"] = recall(model.predict_proba(splits.val.x),
                                                               model.predict_proba(splits.test.x))
        out["remedies"] = found
    if args.sheet is not None:  # the synthesis bench's sheet, with one common class below the rare ones
        save_sample_sheet(splits, [*minority_idx, common[0]], gan, seed, args.sheet)
        out["sheet"] = str(args.sheet)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
