"""Probe of GAN-arm variants on the cells of the regime grid (issue 22, item 3: each tried on
validation, kept or dropped in docs/gan-synthesis.md). Direction only: `make bench` decides.

    python -m benchmarks.arm_probe digits 0,1,2            # every cell of the digits grid
    python -m benchmarks.arm_probe mnist5k 0,1,2 --cells 25

Per cell and seed one GAN with `augment`'s defaults (as the grid trains it) serves every variant;
the same small CNN (15 epochs) trains under each. Variants of `gan+albumentations` (GAN images for
the missing minority items, the rest random copies, every batch augmented anew), each with its
settings chosen per seed on validation:

- `gan+albumentations`: the arm as shipped, synthetic share from (0.5, 0.75, 1.0);
- `fine shares`: share from (0.5, 0.625, 0.75, 0.875, 1.0) (the issue's finer grid);
- `synthetic weight`: share 1.0, each synthetic item's loss weighted by 0.25, 0.5 or 1 (DiffuLT's
  down-weighting, under the augmenting classifier);
- `judge soft labels`: share from (0.5, 0.75, 1.0), each synthetic item's target the GAN judge's
  class probabilities over its two likeliest classes (renormalised), as two weighted copies of the
  item: the same loss as a soft label, with the classifier's weighted cross-entropy.

Beside them `balanced_softmax` and `ros+albumentations`, the best non-GAN arms of the grids so far.
Prints one JSON line per cell and seed, then a table: mean minority recall on test per cell, and
each variant minus `gan+albumentations` (paired over every cell and seed).

With ``--freeze`` it tries FreezeD (Mo et al. 2020) instead, adapted to one GAN of every class:
for the last third of the steps the critic's first two convolutions are frozen (trained on every
class until then, they stay as the majority taught them), either with the class draws unchanged
(`freeze critic`) or with only the minority classes drawn (`freeze critic, minority fine-tune`: the
fine-tuning on the target classes of FreezeD). Each trains its own GAN; the classifier is
`gan+albumentations`'s (shares 0.5, 0.75, 1.0 on validation). This mode reaches into the GAN's
training loop from outside (it wraps two of its methods), as a probe may; a kept variant would
become a `GANConfig` option.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
import torch

from benchmarks.regimes import DATA, cell_splits, cells_of, dataset_of
from gan_aug import GANOverSampler
from pipelines.evaluation import compare
from pipelines.evaluation.compare import evaluate_arms
from pipelines.evaluation.remedies import apply_arm

BASE = "gan+albumentations"
VARIANTS = {
    "fine shares": [{"synthetic_share": s} for s in (0.5, 0.625, 0.75, 0.875, 1.0)],
    "synthetic weight": [{"synthetic_share": 1.0, "synthetic_weight": w} for w in (0.25, 0.5, 1.0)],
    "judge soft labels": [{"synthetic_share": s, "soft": True} for s in (0.5, 0.75, 1.0)],
}


def variant_arm(gan: GANOverSampler):
    """An ``apply_arm`` for the variants: ``gan+albumentations`` with a synthetic item weight or the
    judge's soft labels (as weighted copies)."""
    def arm(name, train, targets, seed, synthesise=None, synthetic_share=1.0, synthetic_weight=1.0, soft=False):
        x, y, options = apply_arm(BASE, train, targets, seed, synthesise, synthetic_share=synthetic_share)
        n_real = len(train.y)
        missing = {k: int(t - np.sum(train.y == k)) for k, t in targets.items() if t > np.sum(train.y == k)}
        n_syn = sum(int(np.ceil(n * synthetic_share)) for n in missing.values())
        weights = np.ones(len(y))
        weights[n_real:n_real + n_syn] = synthetic_weight
        if soft and n_syn:
            judge = gan.gan_.judge
            images = torch.from_numpy(x[n_real:n_real + n_syn] * 2.0 - 1.0).to(gan.gan_.device)
            with torch.no_grad():
                proba = torch.softmax(judge(images).float(), dim=1).cpu().numpy()
            top = np.argsort(-proba, axis=1)[:, :2]
            mass = np.take_along_axis(proba, top, axis=1)
            mass = mass / mass.sum(axis=1, keepdims=True)
            synthetic = slice(n_real, n_real + n_syn)
            x = np.concatenate([x[:n_real], x[synthetic], x[synthetic], x[n_real + n_syn:]])
            y = np.concatenate([y[:n_real], gan.classes_[top[:, 0]], gan.classes_[top[:, 1]], y[n_real + n_syn:]])
            weights = np.concatenate([np.ones(n_real), mass[:, 0], mass[:, 1], np.ones(len(weights) - n_real - n_syn)])
        return x, y, {**options, "sample_weight": weights}
    return arm


def report(cell, seed: int, gan_seconds, rows: list[dict]) -> list[dict]:
    """Print one cell and seed's rows as a JSON line (floats to 3 places); -> the rows."""
    print(json.dumps({"cell": str(cell), "seed": seed, "gan_seconds": gan_seconds,
                      "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}),
          flush=True)
    return rows


FREEZE_FROM = 2 / 3  # the share of the steps after which the critic's early layers are frozen
FROZEN_MODULES = 4  # the critic's first two convolutions and their activations


def freezed_gan(splits, minority_idx: list[int], seed: int, minority_only: bool, **settings) -> GANOverSampler:
    """A default GAN (``settings`` override ``GANOverSampler``'s) whose critic's early layers freeze for
    the last third of the steps (and, with ``minority_only``, whose class draws then take only the
    minority classes)."""
    from gan_aug import train

    batches, started = [], train.Minibatches.__init__
    after_step = train.Bookkeeping.after_step

    def remember(self, *args, **kwargs):
        started(self, *args, **kwargs)
        batches.append(self)

    def freeze_then_step(self, done, d_loss, g):
        if done == int(self.config.steps * FREEZE_FROM):
            for module in list(self.nets.discriminator.features)[:FROZEN_MODULES]:
                module.requires_grad_(False)
            if minority_only:
                p = torch.zeros_like(batches[-1].class_p)
                p[minority_idx] = 1.0 / len(minority_idx)
                batches[-1].class_p = p
        after_step(self, done, d_loss, g)

    train.Minibatches.__init__, train.Bookkeeping.after_step = remember, freeze_then_step
    try:
        return GANOverSampler(random_state=seed, **settings).fit(splits.train.x, splits.train.y)
    finally:
        train.Minibatches.__init__, train.Bookkeeping.after_step = started, after_step


def run_freeze_seed(dataset, data: str, cell, seed: int) -> list[dict]:
    splits, minority_idx, targets = cell_splits(dataset, DATA[data], cell, seed)
    out, seconds = [], {}
    for name, minority_only in (("freeze critic", False), ("freeze critic, minority fine-tune", True)):
        gan = freezed_gan(splits, minority_idx, seed, minority_only)
        seconds[name] = round(gan.gan_.seconds)
        row, = evaluate_arms(splits, minority_idx, targets, [BASE], "cnn", 15, seed, gan.generate)
        out.append({"cell": str(cell), "seed": seed, "arm": name, "val": row["val_minority_recall"],
                    "test": row["minority_recall"], "synthetic_share": row["synthetic_share"]})
    return report(cell, seed, seconds, out)


def run_seed(dataset, data: str, cell, seed: int) -> list[dict]:
    splits, minority_idx, targets = cell_splits(dataset, DATA[data], cell, seed)
    gan = GANOverSampler(random_state=seed).fit(splits.train.x, splits.train.y)
    rows = evaluate_arms(splits, minority_idx, targets, ["balanced_softmax", "ros+albumentations", BASE], "cnn", 15,
                         seed, gan.generate)
    shipped_apply, shipped_choices = compare.apply_arm, compare.CHOICES[BASE]
    try:
        compare.apply_arm = variant_arm(gan)
        for variant, choices in VARIANTS.items():
            compare.CHOICES[BASE] = choices
            row, = evaluate_arms(splits, minority_idx, targets, [BASE], "cnn", 15, seed, gan.generate)
            rows.append({**row, "arm": variant})
    finally:
        compare.apply_arm, compare.CHOICES[BASE] = shipped_apply, shipped_choices  # in place: others hold this dict
    out = [{"cell": str(cell), "seed": seed, "arm": r["arm"], "val": r["val_minority_recall"],
            "test": r["minority_recall"], **{k: r[k] for k in ("synthetic_share", "synthetic_weight", "soft")
                                             if k in r}} for r in rows]
    return report(cell, seed, round(gan.gan_.seconds), out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=list(DATA))
    parser.add_argument("seeds", help="comma-separated seeds")
    parser.add_argument("--cells", default=None, help="comma-separated cells (default: every cell of the grid)")
    parser.add_argument("--freeze", action="store_true", help="the FreezeD variants instead (see above)")
    args = parser.parse_args(argv)
    dataset = dataset_of(args.data)
    cells = cells_of(dataset)
    if args.cells:
        cells = [c for c in cells if str(c) in args.cells.split(",")]
    one = run_freeze_seed if args.freeze else run_seed
    rows = [r for cell in cells for seed in map(int, args.seeds.split(",")) for r in one(dataset, args.data, cell, seed)]
    table = pd.DataFrame(rows)
    test = table.pivot_table(index=["cell", "seed"], columns="arm", values="test")
    print(test.groupby(level=0).mean().round(3).to_string())
    if BASE not in test:  # --freeze: compare with a run without it
        return 0
    diff = test.sub(test[BASE], axis=0).drop(columns=BASE)
    print("minus gan+albumentations over every cell and seed: mean", diff.mean().round(3).to_dict(),
          "sd", diff.std().round(3).to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
