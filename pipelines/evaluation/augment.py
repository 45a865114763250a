"""Classic (non-GAN) augmentation with albumentations: small affine moves, elastic warps, noise.

This is the standard remedy a GAN has to beat, and a reusable transform for the downstream models.
"""

from __future__ import annotations

from typing import Mapping

import albumentations as A
import numpy as np


class ClassicAugment:
    """Random affine + elastic + Gaussian-noise transform for image batches.

    ``__call__(x)`` takes ``x: (N, C, H, W)`` float32 in [0, 1] and returns a new array of the same
    shape. The strength is set relative to the image size, so it behaves the same at 8x8 and 64x64.
    """

    def __init__(
        self,
        rotate_degrees: float = 10.0,
        translate_fraction: float = 0.08,
        scale_range: tuple[float, float] = (0.9, 1.1),
        elastic_probability: float = 0.5,
        noise_std: float = 0.03,
        random_state: int = 0,
    ) -> None:
        self.rotate_degrees = rotate_degrees
        self.translate_fraction = translate_fraction
        self.scale_range = scale_range
        self.elastic_probability = elastic_probability
        self.noise_std = noise_std
        self.random_state = random_state
        self._compose: A.Compose | None = None
        self._side: int | None = None

    def _pipeline(self, side: int) -> A.Compose:
        if self._compose is None or self._side != side:
            self._compose = A.Compose(
                [
                    A.Affine(
                        scale=self.scale_range,
                        translate_percent=(-self.translate_fraction, self.translate_fraction),
                        rotate=(-self.rotate_degrees, self.rotate_degrees),
                        border_mode=0,
                        fill=0,
                        p=1.0,
                    ),
                    # alpha/sigma in pixels: a gentle warp whose smoothness follows the image size
                    A.ElasticTransform(alpha=side * 0.5, sigma=max(side / 7.0, 1.5), p=self.elastic_probability),
                    A.GaussNoise(std_range=(0.0, self.noise_std), p=1.0 if self.noise_std > 0 else 0.0),
                ],
                seed=self.random_state,
            )
            self._side = side
        return self._compose

    def __call__(self, x: np.ndarray) -> np.ndarray:
        pipeline = self._pipeline(int(max(x.shape[2], x.shape[3])))
        out = np.empty_like(x, dtype=np.float32)
        for i, img in enumerate(x):
            hwc = np.ascontiguousarray(img.transpose(1, 2, 0), dtype=np.float32)
            aug = pipeline(image=hwc)["image"]
            if aug.ndim == 2:
                aug = aug[:, :, None]
            out[i] = aug.transpose(2, 0, 1)
        return np.clip(out, 0.0, 1.0)


def augment_to_counts(
    x: np.ndarray, y: np.ndarray, target_counts: Mapping[int, int], random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Add augmented copies of real images until each class in ``target_counts`` has that many.

    Returns only the new items ``(x_new, y_new)``; sources are drawn uniformly from the real items
    of the class. ``x: (N, C, H, W)`` in [0, 1], ``y: (N,)`` int.
    """
    rng = np.random.default_rng(random_state)
    transform = ClassicAugment(random_state=random_state)
    new_x, new_y = [], []
    for label, target in sorted(target_counts.items()):
        members = np.flatnonzero(y == label)
        missing = int(target) - len(members)
        if missing <= 0 or len(members) == 0:
            continue
        sources = rng.choice(members, size=missing, replace=True)
        new_x.append(transform(x[sources]))
        new_y.append(np.full(missing, label, dtype=np.int64))
    if not new_x:
        return np.zeros((0,) + x.shape[1:], dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(new_x), np.concatenate(new_y)
