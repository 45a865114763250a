"""``GANOverSampler``: the conditional GAN as an imbalanced-learn over-sampler.

It drops into ``imblearn.pipeline.Pipeline`` beside ``SMOTE``::

    Pipeline([("gan", GANOverSampler(image_shape=(1, 28, 28), random_state=0)),
              ("clf", LogisticRegression())])

``X`` is either images ``(N, C, H, W)`` in [0, 1] or the same images flattened to ``(N, C*H*W)``
with ``image_shape=(C, H, W)``; the output has the layout of the input.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from imblearn.over_sampling.base import BaseOverSampler

from gan_aug.train import GANConfig, Progress, TrainedGAN, steps_for_epochs, train_conditional_gan

log = logging.getLogger(__name__)


class GANOverSampler(BaseOverSampler):
    """Over-sample rare classes with images from a class-conditional GAN trained on all classes.

    Parameters
    ----------
    sampling_strategy : as in imbalanced-learn ("auto", "minority", "not majority", a float or a
        dict ``{class: target_count}``).
    epochs : passes over the training images; ``None`` trains for ``steps`` generator steps.
    steps : generator steps when ``epochs`` is None.
    image_shape : ``(C, H, W)`` when ``X`` is flattened; inferred from 4-D ``X`` otherwise.
    config : further :class:`~gan_aug.train.GANConfig` fields as a dict (e.g. ``{"loss": "wgan-gp"}``).
    checkpoint_path : where to checkpoint; an interrupted fit resumes from it.
    random_state : seed for training and sampling.

    Attributes
    ----------
    gan_ : the trained :class:`~gan_aug.train.TrainedGAN`; ``classes_``: the labels seen in ``fit``.
    """

    _sampling_type = "over-sampling"

    def __init__(
        self,
        sampling_strategy="auto",
        epochs: float | None = None,
        steps: int = 1500,
        image_shape: tuple[int, int, int] | None = None,
        config: dict | None = None,
        checkpoint_path: str | Path | None = None,
        progress: Progress | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__(sampling_strategy=sampling_strategy)
        self.epochs = epochs
        self.steps = steps
        self.image_shape = image_shape
        self.config = config
        self.checkpoint_path = checkpoint_path
        self.progress = progress
        self.random_state = random_state

    def fit_resample(self, X, y, **params):
        """Train the GAN and return real + synthetic items (synthetic appended after the real ones)."""
        X = np.asarray(X)
        self._input_shape = tuple(X.shape[1:]) if X.ndim == 4 else None
        if X.ndim == 4:
            flat, y_out = super().fit_resample(X.reshape(len(X), -1), y, **params)
            return flat.reshape((-1, *self._input_shape)), y_out
        return super().fit_resample(X, y, **params)

    def _images(self, X: np.ndarray) -> np.ndarray:
        shape = getattr(self, "_input_shape", None) or self.image_shape
        if shape is None:
            raise ValueError("X is flattened: pass image_shape=(C, H, W), or give X as (N, C, H, W)")
        if X.shape[1] != int(np.prod(shape)):
            raise ValueError(f"X has {X.shape[1]} features but image shape {tuple(shape)} needs {int(np.prod(shape))}")
        return X.reshape((-1, *shape)).astype(np.float32)

    def _fit_resample(self, X, y):
        images = self._images(X)
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)
        settings = dict(self.config or {})
        settings["seed"] = self.random_state
        if self.epochs is not None:
            settings["steps"] = steps_for_epochs(self.epochs, len(y), settings.get("batch_size", 64))
        else:
            settings.setdefault("steps", self.steps)
        self.gan_: TrainedGAN = train_conditional_gan(
            images, codes, len(self.classes_), GANConfig(**settings), self.checkpoint_path, self.progress
        )
        new_x, new_y = [X], [y]
        for offset, (label, n) in enumerate(sorted(self.sampling_strategy_.items())):
            if n <= 0:
                continue
            fake = self.sample(label, n, seed=self.random_state + 1 + offset)
            new_x.append(fake.reshape(n, -1))
            new_y.append(np.full(n, label, dtype=np.asarray(y).dtype))
        return np.concatenate(new_x).astype(X.dtype, copy=False), np.concatenate(new_y)

    def sample(self, class_label, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` synthetic images of ``class_label`` as ``(n, C, H, W)`` in [0, 1]."""
        if not hasattr(self, "gan_"):
            raise ValueError("GANOverSampler is not fitted: call fit_resample first")
        matches = np.flatnonzero(self.classes_ == class_label)
        if len(matches) == 0:
            raise ValueError(f"unknown class {class_label!r}; fitted classes: {list(self.classes_)}")
        labels = np.full(int(n), matches[0])
        return self.gan_.sample(labels, seed=self.random_state if seed is None else seed)
