"""Does this synthetic set beat the best classic remedy? A quick comparison on the validation split.

``augment`` ends with it: the same classifier is trained on the real training items plus the
exported synthetic items, and under each classic remedy (:data:`CLASSIC`, every one brought to the
same per-class counts); all are scored on the validation split, never the test split. The best
classic remedy is the one with the highest validation minority recall, and the synthetic set's
gain over it comes with a 95% interval from a paired bootstrap over validation items (resampled
within each class, so every class keeps its count).

The synthetic set is tried in each way of :data:`USES` (alone, and under the classifier's
on-the-fly augmentation: on issue 22's digits grid the GAN arm validation chose always paired the images
with a classic remedy, never used them alone), and the best way on validation is the one compared.

Both sides are chosen on the same items the gain is measured on, the synthetic set's use from
:data:`USES` and the classic remedy from seven: the classic side has more winner's luck in its
number, so the verdict errs against the GAN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from pipelines.data.splits import Splits
from pipelines.evaluation.classifier import make_classifier
from pipelines.evaluation.remedies import apply_arm
from pipelines.stopping import check_stop

CLASSIC = ("class_weight", "balanced_softmax", "ros", "smote", "albumentations", "ros+albumentations", "mixup")
# the ways the synthetic set is tried: the classifier options of each (see pipelines.evaluation.remedies.TRAINING)
USES = {"alone": {}, "with on-the-fly augmentation": {"augment": True}}
RESAMPLES = 2000


@dataclass(frozen=True)
class ValidatedGain:
    """The verdict: validation minority recall of the synthetic set (``gan``) and of every classic
    remedy (``classic``), the best of them (``best``), the gain over it with its interval, and the
    ``verdict`` (``gain``: the interval is above zero; ``loss``: below; else ``no clear difference``);
    ``use``: the way of :data:`USES` that ``gan`` is of (the best on validation), ``uses`` every way's
    validation minority recall."""

    gan: float
    classic: dict[str, float]
    best: str
    difference: float
    low: float
    high: float
    verdict: str
    items: int  # validation items of the minority classes
    use: str
    uses: dict[str, float]

    def tag(self) -> str:
        """``"+0.031 [-0.010, +0.072] (synthetic set alone) vs ros on validation minority recall: no clear
        difference"``."""
        return (f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] (synthetic set {self.use}) vs {self.best} "
                f"on validation minority recall: {self.verdict}")

    def text(self) -> str:
        others = ", ".join(f"{arm} {value:.3f}" for arm, value in sorted(self.classic.items(), key=lambda kv: -kv[1]))
        ways = ", ".join(f"{use} {value:.3f}" for use, value in self.uses.items())
        return (f"Validated gain: the synthetic set, best used {self.use} (on validation: {ways}), reaches minority "
                f"recall {self.gan:.3f} on the validation split, "
                f"the best classic remedy {self.best} {self.classic[self.best]:.3f}: {self.difference:+.3f}, 95% "
                f"interval [{self.low:+.3f}, {self.high:+.3f}] ({self.items} validation items of the minority classes): "
                f"{self.verdict}. Every classic remedy: {others}.")


def minority_recall_hits(y_true: np.ndarray, y_pred: np.ndarray, minority: Sequence[int]) -> list[np.ndarray]:
    """Per minority class, whether each of its items was predicted right."""
    return [(y_pred[y_true == k] == k) for k in minority]


def paired_bootstrap(hits_a: list[np.ndarray], hits_b: list[np.ndarray], resamples: int = RESAMPLES, seed: int = 0
                     ) -> tuple[float, float, float]:
    """Difference of minority recall (mean over classes of each class's recall) between two
    classifiers on the same items, and its 95% percentile interval when items are resampled within
    each class (the same draw for both)."""
    rng = np.random.default_rng(seed)
    observed = float(np.mean([a.mean() - b.mean() for a, b in zip(hits_a, hits_b)]))
    draws = np.zeros(resamples)
    for a, b in zip(hits_a, hits_b):
        picks = rng.integers(0, len(a), size=(resamples, len(a)))
        draws += a[picks].mean(axis=1) - b[picks].mean(axis=1)
    draws /= len(hits_a)
    low, high = np.percentile(draws, [2.5, 97.5])
    return observed, float(low), float(high)


def validated_gain(splits: Splits, minority: Sequence[int], synthetic: tuple[np.ndarray, np.ndarray],
                   classifier: str = "cnn", epochs: int = 15, seed: int = 0, device: str = "auto",
                   arms: Sequence[str] = CLASSIC, progress: Callable[[str], None] | None = None) -> ValidatedGain:
    """Train ``classifier`` on the training split plus ``synthetic = (x, y)`` and under each classic
    remedy of ``arms`` (brought to the per-class counts the synthetic set reaches); score each on the
    validation split; see the module's note."""
    train, val = splits.train, splits.val
    x_syn, y_syn = synthetic
    counts = np.bincount(np.concatenate([train.y, y_syn]), minlength=len(train.class_names))
    targets: Mapping[int, int] = {k: int(counts[k]) for k in minority}
    n_classes = len(train.class_names)

    def fit_predict(name: str, x: np.ndarray, y: np.ndarray, options: dict) -> list[np.ndarray]:
        check_stop()
        started = time.time()
        model = make_classifier(classifier, epochs=epochs, random_state=seed, device=device, **options)
        model.fit(x, y, n_classes=n_classes)
        hits = minority_recall_hits(val.y, model.predict(val.x), minority)
        if progress is not None:
            progress(f"validated gain: {name} in {time.time() - started:.0f} s, validation minority recall "
                     f"{np.mean([h.mean() for h in hits]):.3f}")
        return hits

    x_all, y_all = np.concatenate([train.x, x_syn]).astype(np.float32), np.concatenate([train.y, y_syn])
    use_hits = {use: fit_predict(f"synthetic set {use}", x_all, y_all, dict(options)) for use, options in USES.items()}
    use_recall = {use: float(np.mean([h.mean() for h in hits])) for use, hits in use_hits.items()}
    use = max(USES, key=lambda u: use_recall[u])  # first way wins ties
    gan_hits = use_hits[use]
    classic_hits = {}
    for arm in arms:
        x, y, options = apply_arm(arm, train, targets, seed)
        classic_hits[arm] = fit_predict(arm, x, y, options)
    recall = {arm: float(np.mean([h.mean() for h in hits])) for arm, hits in classic_hits.items()}
    best = max(arms, key=lambda arm: recall[arm])  # first arm wins ties
    difference, low, high = paired_bootstrap(gan_hits, classic_hits[best], seed=seed)
    verdict = "gain" if low > 0 else "loss" if high < 0 else "no clear difference"
    return ValidatedGain(use_recall[use], recall, best, difference, low, high, verdict,
                         int(sum(len(h) for h in gan_hits)), use, use_recall)
