"""The standard remedies for class imbalance, as arms of a comparison.

Every arm sees only the training split. The resampling arms bring each minority class up to the
same target count, so they differ only in *how* the missing items are made; the loss arms
(``class_weight``, ``balanced_softmax``) keep the real items and change how the classifier weighs
them.

- ``none``: the real items as they are.
- ``class_weight``: inverse-frequency class weights in the loss.
- ``balanced_softmax``: the loss-level remedy of today's long-tail work (Ren et al. 2020): the log
  class shares are added to the logits while training. Chosen over focal loss and LDAM-DRW because it
  has no setting to tune (focal loss has its gamma, LDAM its margin scale and the epoch at which the
  re-weighting starts): with no validation budget spent on it, it is as strong as it is on any data.
- ``ros``: random copies of real minority items; ``smote``: interpolations between a minority item and
  its minority neighbours (imbalanced-learn).
- ``albumentations``: the missing items are classically augmented copies (affine, elastic, noise),
  made once.
- ``ros+albumentations``: random copies, and every training batch (all classes) augmented anew each
  epoch, the way a practitioner's training loop does it.
- ``mixup``: random copies, then mixup (Zhang et al. 2018, ``alpha`` :data:`MIXUP_ALPHA`) of every
  batch with mixed labels: over-sampled first, so mixes meet the minority classes as often as the
  others (mixup on the imbalanced set alone hardly reaches them).
- ``gan``, ``gan+albumentations``, ``gan+mixup``, ``gan+balanced_softmax``: synthetic items from the
  GAN (see :func:`apply_arm`), alone or combined with a classic remedy. ``gan+albumentations`` and
  ``gan+mixup`` train on the ``gan`` arm's items (real, synthetic and random copies) with the
  training of ``ros+albumentations`` (every batch augmented anew) and ``mixup``: each is its
  classic twin with some random copies swapped for GAN images, so the pair measures what the GAN's
  images add to the training a practitioner runs anyway. ``gan+balanced_softmax`` adds a synthetic
  item for every missing one, weighs each synthetic item's loss by ``synthetic_weight`` (synthetic
  images are worth less than real ones, as DiffuLT found) and trains with balanced softmax over the
  weighted class counts: weight 1 is the balanced set with a plain loss, weight towards 0 is
  balanced softmax on the real items alone.

See :mod:`pipelines.evaluation.classifier` for how the classifier carries out ``loss``, ``mixup`` and
``augment``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from imblearn.over_sampling import SMOTE, RandomOverSampler

from pipelines.data.sources import ImageDataset
from pipelines.errors import GanpipeError
from pipelines.evaluation.arms import ARMS, GAN_ARMS
from pipelines.evaluation.augment import augment_to_counts

Synthesise = Callable[[np.ndarray, int], np.ndarray]  # (labels, seed) -> images
MIXUP_ALPHA = 0.4  # Beta(alpha, alpha) mixing weights: fastai's default, gentle for small images and few items
# the classifier options of the arms that change training rather than (only) the data
TRAINING = {"class_weight": {"class_weight": "balanced"}, "balanced_softmax": {"loss": "balanced_softmax"},
            "ros+albumentations": {"augment": True}, "mixup": {"mixup": MIXUP_ALPHA}, "gan+mixup": {"mixup": MIXUP_ALPHA},
            "gan+albumentations": {"augment": True}, "gan+balanced_softmax": {"loss": "balanced_softmax"}}


def apply_arm(
    arm: str,
    train: ImageDataset,
    targets: Mapping[int, int],
    seed: int,
    synthesise: Synthesise | None = None,
    synthetic_share: float = 1.0,
    synthetic_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Training of one arm: ``(x, y, options)``, ``options`` the classifier settings it needs (see
    :data:`TRAINING`; empty for the data-only arms) and, for ``gan+balanced_softmax``, the
    ``sample_weight`` of every item for ``fit`` (1 for real items, ``synthetic_weight`` for
    synthetic ones). ``targets`` maps minority class index to
    the item count it is brought up to; ``synthesise`` makes GAN images for the GAN arms. In the
    ``gan``, ``gan+albumentations`` and ``gan+mixup`` arms ``synthetic_share`` of the added items are
    synthetic and the rest random copies of real ones (the classifier of ``gan+albumentations`` then
    augments every batch anew, that of ``gan+mixup`` mixes them)."""
    if arm not in ARMS:
        raise GanpipeError(f"unknown arm {arm!r}; choose from: {', '.join(ARMS)}")
    x, y = train.x, train.y
    missing = {k: int(t - np.sum(y == k)) for k, t in targets.items() if t > np.sum(y == k)}
    if arm == "none" or not missing:
        return x, y, {}
    options = dict(TRAINING.get(arm, {}))
    if arm in ("class_weight", "balanced_softmax"):
        return x, y, options
    if arm in ("ros", "smote", "ros+albumentations", "mixup"):
        strategy = {k: int(t) for k, t in targets.items() if k in missing}
        if arm != "smote":
            sampler = RandomOverSampler(sampling_strategy=strategy, random_state=seed)
        else:
            smallest = min(int(np.sum(y == k)) for k in missing)
            if smallest < 2:
                raise GanpipeError("SMOTE needs at least 2 training items in every minority class")
            sampler = SMOTE(sampling_strategy=strategy, k_neighbors=min(5, smallest - 1), random_state=seed)
        flat, y_new = sampler.fit_resample(x.reshape(len(x), -1), y)
        return flat.reshape((-1, *x.shape[1:])).astype(np.float32), y_new, options
    if arm == "albumentations":
        new_x, new_y = augment_to_counts(x, y, targets, random_state=seed)
        return np.concatenate([x, new_x]), np.concatenate([y, new_y]), options
    if arm in GAN_ARMS:
        if synthesise is None:
            raise ValueError(f"arm {arm!r} needs a synthesise function")
        share = 1.0 if arm == "gan+balanced_softmax" else synthetic_share
        gan_share = {k: int(np.ceil(n * share)) for k, n in missing.items()}
        labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in sorted(gan_share.items())])
        parts_x, parts_y = [x, synthesise(labels, seed)], [y, labels]
        if arm == "gan+balanced_softmax":
            options["sample_weight"] = np.concatenate([np.ones(len(y)), np.full(len(labels), float(synthetic_weight))])
        else:
            rng = np.random.default_rng(seed)
            copies = np.concatenate([rng.choice(np.flatnonzero(y == k), n - gan_share[k]) for k, n in sorted(missing.items())])
            parts_x.append(x[copies])
            parts_y.append(y[copies])
        return np.concatenate(parts_x).astype(np.float32), np.concatenate(parts_y), options
    raise AssertionError(f"arm {arm!r} is listed but has no recipe")
