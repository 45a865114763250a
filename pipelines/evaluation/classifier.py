"""Downstream classifiers: the models whose scores tell whether synthetic data helped.

Both follow scikit-learn: ``fit(X, y)``, ``predict_proba(X)``, ``predict(X)``, with
``X: (N, C, H, W)`` float32 in [0, 1].

The CNN trains and predicts on its ``device`` (auto, cpu, cuda, cuda:N or mps; resolved at the start
of ``fit``): the network is built on the CPU (initial weights from the seeded CPU RNG) and moved
there, the data stays on the host and moves batch by batch, dropout masks are drawn on the CPU and
moved, and probabilities come back to the host. It trains in float32 everywhere. Logistic regression
runs on the CPU and has no device.

Three training options serve the remedies of a comparison (``pipelines.evaluation.remedies``):

- ``loss="balanced_softmax"`` (Ren et al. 2020, "Balanced Meta-Softmax"): training adds the log of
  each class's share of the training items to the logits before the cross-entropy, prediction uses
  the plain logits, so the model learns the class-balanced posterior (the one minority recall and
  balanced accuracy reward). Logistic regression, one solver run with no loss to change, gets the
  same correction after fitting (post-hoc logit adjustment, Menon et al. 2021): its probabilities are
  divided by the training shares and renormalised.
- ``mixup=alpha`` (Zhang et al. 2018): every batch is replaced by convex mixes of its items with a
  shuffled copy, ``lambda ~ Beta(alpha, alpha)`` per batch, with the labels mixed the same way (soft
  targets that sum to one). Logistic regression gets one mixed copy of the training set, each mixed
  item entered twice, once per label, with sample weights ``lambda`` and ``1 - lambda`` (the same
  cross-entropy as the soft target).
- ``augment=True``: every batch goes through :class:`~pipelines.evaluation.augment.ClassicAugment`
  (a new draw each epoch, as a practitioner's training loop does). Logistic regression gets one
  augmented copy of every training item beside the originals.

Their random draws come from a generator of their own (seeded from ``random_state``), so the batch
order is the same with and without them.

``fit(X, y, sample_weight=w)`` weighs each item's loss by ``w`` (under mixup, each of a mix's two
labels by its own item's weight); the class shares that balanced softmax adds are then the weighted
ones. The GAN arm
that down-weights synthetic items uses it (``pipelines.evaluation.remedies``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from gan_core.layers import items_per_pass
from gan_core.seeding import build_seeded
from pipelines.devices import resolve_device, to_device
from pipelines.stopping import check_stop

CPU = torch.device("cpu")


class SeededDropout(nn.Module):
    """Dropout that draws its masks from its own CPU ``torch.Generator`` (set with :meth:`seed`), not
    from the process-wide RNG that other threads share, and moves them to the device of ``x``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator = torch.Generator(device=CPU)

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=self.generator.device) >= self.p
        return x * to_device(keep, x.device) / (1.0 - self.p)


class SmallCNN(nn.Module):
    """Two conv blocks and a small head, grey or RGB, for any side from 8 to 256 px. Above 64 px
    (``side``) a stem of stride-2 convolutions first brings the side down to 64 or less, so a step
    at 256 px costs about what one at 64 px does; up to 64 px the network is the same at every side."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 32, side: int = 64) -> None:
        super().__init__()
        stem: list[nn.Module] = []
        while side > 64:
            stem += [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_channels, side = width, side // 2
        self.features = nn.Sequential(
            *stem,
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(8),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.dropout = SeededDropout(0.3)  # its masks come from its own generator: see CNNClassifier.fit
        self.head = nn.Sequential(
            self.dropout, nn.Linear(2 * width * 16, 128), nn.ReLU(inplace=True), nn.Linear(128, n_classes)
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, 128)`` penultimate features."""
        return self.head[:3](self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


LOSSES = ("cross_entropy", "balanced_softmax")


def class_shares(y: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Each class's share of the training items ``y``, weighted by ``sample_weight`` when given (a
    class with less than one item's weight counts as one, so its log stays finite): the prior that
    balanced softmax adds to the logits."""
    counts = np.bincount(y, weights=sample_weight, minlength=n_classes)[:n_classes]
    counts = np.maximum(counts, 1.0).astype(np.float64)
    return counts / counts.sum()


def mixup_batch(x: np.ndarray, targets: np.ndarray, lam: float, partner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mixup of a batch: ``lam * x + (1 - lam) * x[partner]`` and the same mix of the one-hot or
    soft ``targets`` (rows that sum to one stay so). Works on numpy arrays and torch tensors."""
    return lam * x + (1.0 - lam) * x[partner], lam * targets + (1.0 - lam) * targets[partner]


def _check_options(loss: str, mixup: float) -> None:
    from pipelines.errors import GanpipeError

    if loss not in LOSSES:
        raise GanpipeError(f"unknown loss {loss!r}; use one of: {', '.join(LOSSES)}")
    if mixup < 0:
        raise GanpipeError(f"mixup alpha must be 0 (off) or positive, got {mixup}")


class CNNClassifier:
    """A small CNN trained with Adam for a fixed number of epochs (no peeking at test data).

    ``class_weight="balanced"`` weights the loss by inverse class frequency (the `class_weight` arm);
    ``loss``, ``mixup`` and ``augment`` are the options of the module's note.
    ``min_steps`` raises the number of epochs on small datasets so training takes at least that many
    optimiser steps.

    ``history_`` holds one record per epoch: ``epoch``, ``loss`` (mean training loss), ``time`` (ms since
    the epoch, when it ended) and, when ``fit`` got ``validation=(X_val, y_val)``, ``val_loss`` and
    ``val_balanced_accuracy``. Validation is scored in eval mode without gradients, so it does not
    change what is learned. ``device_`` is the ``torch.device`` it trained on (see the module's note).
    """

    def __init__(
        self,
        epochs: int = 15,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        class_weight: str | None = None,
        width: int = 32,
        min_steps: int = 0,
        random_state: int = 0,
        device: str = "auto",
        loss: str = "cross_entropy",
        mixup: float = 0.0,
        augment: bool = False,
    ) -> None:
        _check_options(loss, mixup)
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.class_weight = class_weight
        self.width = width
        self.random_state = random_state
        self.device = device
        self.loss = loss
        self.mixup = mixup
        self.augment = augment

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int | None = None,
            validation: tuple[np.ndarray, np.ndarray] | None = None,
            sample_weight: np.ndarray | None = None) -> "CNNClassifier":
        self.device_ = device = resolve_device(self.device)
        rng = np.random.default_rng(self.random_state)
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        model = build_seeded(lambda: SmallCNN(X.shape[1], self.n_classes_, self.width, X.shape[-1]), self.random_state)
        self.model_ = model.to(device)  # built on the CPU (build_seeded), then moved
        self.model_.dropout.seed(self.random_state)
        weight = None
        if self.class_weight == "balanced":
            present = np.unique(y)
            w = np.ones(self.n_classes_, dtype=np.float32)
            w[present] = compute_class_weight("balanced", classes=present, y=y)
            weight = to_device(torch.from_numpy(w), device)
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        # balanced softmax: log training shares added to the logits while training (not when predicting)
        log_prior = (to_device(torch.from_numpy(np.log(class_shares(y, self.n_classes_, sample_weight)).astype(np.float32)),
                               device) if self.loss == "balanced_softmax" else None)
        wt = None if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, dtype=np.float32))
        extra = np.random.default_rng([self.random_state, 1])  # mixup and augmentation draws: the batch order is untouched
        transform = _augmenter(self.random_state) if self.augment else None
        optimiser = torch.optim.Adam(self.model_.parameters(), lr=self.learning_rate)
        xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        yt = torch.from_numpy(y.astype(np.int64))
        self.model_.train()
        batches = max(1, len(yt) // self.batch_size)
        self.history_: list[dict] = []
        for epoch in range(1, max(self.epochs, -(-self.min_steps // batches)) + 1):
            order = torch.from_numpy(rng.permutation(len(yt)))
            losses = []
            for start in range(0, len(order), self.batch_size):
                check_stop()
                idx = order[start : start + self.batch_size]
                if len(idx) < 2:  # BatchNorm needs two items
                    continue
                xb, yb = xt[idx], yt[idx]
                wb = None if wt is None else wt[idx]
                if transform is not None:
                    xb = torch.from_numpy(transform(xb.numpy()))
                optimiser.zero_grad()
                soft = None  # targets as rows: one-hot (or mixed) labels times the items' weights
                if self.mixup > 0 or wb is not None:
                    soft = nn.functional.one_hot(yb, self.n_classes_).float()
                    soft = soft if wb is None else soft * wb[:, None]
                if self.mixup > 0:
                    lam = float(extra.beta(self.mixup, self.mixup))
                    partner = torch.from_numpy(extra.permutation(len(idx)))
                    xb, soft = mixup_batch(xb, soft, lam, partner)
                logits = self.model_(to_device(xb, device))
                if log_prior is not None:
                    logits = logits + log_prior
                loss = (loss_fn(logits, to_device(yb, device)) if soft is None
                        else soft_cross_entropy(logits, to_device(soft, device), weight))
                loss.backward()
                optimiser.step()
                losses.append(loss.detach())  # read once an epoch: .item() here waits for a GPU every batch
            record = {"epoch": epoch, "loss": float(np.mean(torch.stack(losses).double().cpu().numpy())) if losses
                      else float("nan")}
            if validation is not None:
                self.model_.eval()
                record.update(self._validation_record(*validation))
                self.model_.train()
            self.history_.append({**record, "time": int(time.time() * 1000)})
        self.model_.eval()
        return self

    def _validation_record(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        proba = self.predict_proba(X)
        loss = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)).mean()
        return {"val_loss": float(loss), "val_balanced_accuracy": float(balanced_accuracy_score(y, proba.argmax(1)))}

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        per_pass = items_per_pass(xt.shape[-1], 512)
        out = [torch.softmax(self.model_(to_device(xt[i : i + per_pass], self.device_)), dim=1).cpu()
               for i in range(0, len(xt), per_pass)]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def embed(self, X: np.ndarray) -> np.ndarray:
        """Penultimate features ``(N, 128)`` of images ``X: (N, C, H, W)``, on the host (in passes of
        a bounded pixel count: one pass up to 64 px for up to 512 images)."""
        xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        per_pass = items_per_pass(xt.shape[-1], max(1, len(xt)))
        return torch.cat([self.model_.embed(to_device(xt[i : i + per_pass], self.device_)).cpu()
                          for i in range(0, len(xt), per_pass)]).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def _augmenter(seed: int):
    from pipelines.evaluation.augment import ClassicAugment  # albumentations loads only when asked for

    return ClassicAugment(random_state=seed)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against soft ``targets``: rows of label mass (summing to one, or to the item's
    weight); with ``weight``, each class's term is weighted. The batch's loss is the sum over items
    divided by the total weighted label mass, so one-hot targets give the plain mean and, with
    ``weight``, what ``nn.CrossEntropyLoss(weight=...)`` gives for hard labels."""
    weighted = targets if weight is None else targets * weight
    return -(weighted * torch.log_softmax(logits, dim=1)).sum() / weighted.sum()


class LogisticClassifier:
    """Multinomial logistic regression on flattened pixels (the fast, simple option); ``loss``,
    ``mixup`` and ``augment`` as in the module's note."""

    def __init__(self, class_weight: str | None = None, max_iter: int = 500, random_state: int = 0,
                 loss: str = "cross_entropy", mixup: float = 0.0, augment: bool = False) -> None:
        _check_options(loss, mixup)
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state
        self.loss = loss
        self.mixup = mixup
        self.augment = augment

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int | None = None,
            validation: tuple[np.ndarray, np.ndarray] | None = None,
            sample_weight: np.ndarray | None = None) -> "LogisticClassifier":
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        self.prior_ = class_shares(y, self.n_classes_, sample_weight) if self.loss == "balanced_softmax" else None
        extra = np.random.default_rng([self.random_state, 1])
        X = np.asarray(X, dtype=np.float32)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if self.augment:
            X, y = np.concatenate([X, _augmenter(self.random_state)(X)]), np.concatenate([y, y])
            weight = None if weight is None else np.concatenate([weight, weight])
        if self.mixup > 0:
            lam = extra.beta(self.mixup, self.mixup, size=len(X)).astype(np.float32)
            partner = extra.permutation(len(X))
            mixed = lam[:, None, None, None] * X + (1 - lam[:, None, None, None]) * X[partner]
            item = np.ones(len(X)) if weight is None else weight
            X, y = np.concatenate([mixed, mixed]), np.concatenate([y, y[partner]])
            weight = np.concatenate([lam * item, (1 - lam) * item[partner]])
        self.model_ = LogisticRegression(
            max_iter=self.max_iter, class_weight=self.class_weight, random_state=self.random_state
        )
        self.model_.fit(X.reshape(len(X), -1), y, sample_weight=weight)
        self.history_ = []  # one solver run, no epochs
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = np.zeros((len(X), self.n_classes_), dtype=np.float64)
        proba[:, self.model_.classes_] = self.model_.predict_proba(X.reshape(len(X), -1))
        if self.prior_ is not None:  # post-hoc logit adjustment: the class-balanced posterior
            proba = proba / self.prior_
            proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


CLASSIFIERS = {"cnn": CNNClassifier, "logreg": LogisticClassifier}


def make_classifier(name: str, class_weight: str | None = None, epochs: int = 15, random_state: int = 0,
                    device: str = "auto", **options):
    """Build the downstream classifier called ``name`` (``cnn`` or ``logreg``); ``device`` is where the
    CNN trains (logistic regression runs on the CPU); ``options``: ``loss``, ``mixup``, ``augment``
    (the module's note)."""
    from pipelines.errors import GanpipeError

    if name == "cnn":
        return CNNClassifier(epochs=epochs, class_weight=class_weight, random_state=random_state, device=device,
                             **options)
    if name == "logreg":
        return LogisticClassifier(class_weight=class_weight, random_state=random_state, **options)
    raise GanpipeError(f"unknown classifier {name!r}; use one of: {', '.join(CLASSIFIERS)}")
