"""The colour sets of the benchmarks (benchmarks.colour): shapes, classes, colour and determinism."""

from __future__ import annotations

import numpy as np

from benchmarks.colour import MIN_COLOUR_DISTANCE, colour_mnist, grey_mnist, photo_crops
from pipelines.data.images import resize_images
from pipelines.data.sources import load_dataset


def test_recoloured_digits_keep_the_labels_and_vary_the_colour():
    a, b = colour_mnist(32), colour_mnist(32)
    assert a.x.shape == (5000, 3, 32, 32) and a.x.dtype == np.float32 and len(a.class_names) == 10
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)  # seeded
    corners = a.x[:, :, 0, 0]  # background colour (MNIST corners are empty)
    assert corners.std(axis=0).min() > 0.2  # colours vary between images in every channel
    channels_differ = np.abs(a.x[:, 0] - a.x[:, 1]).mean(axis=(1, 2))
    assert (channels_differ > 0.01).mean() > 0.9  # colour, not grey
    spread = a.x.reshape(5000, 3, -1)
    contrast = np.linalg.norm(spread.max(axis=2) - spread.min(axis=2), axis=1)
    assert np.quantile(contrast, 0.01) > MIN_COLOUR_DISTANCE * 0.8  # the digit stands out from its background


def test_photo_crops_are_eight_balanced_classes_of_distinct_texture():
    crops = photo_crops(16, per_class=20)
    assert crops.x.shape == (160, 3, 16, 16) and set(crops.class_counts.values()) == {20}
    assert crops.class_names[0] == "china-top-left" and crops.class_names[-1] == "flower-bottom-right"
    means = np.stack([crops.x[crops.y == k].mean(axis=(0, 2, 3)) for k in range(8)])
    assert len({tuple(np.round(m, 2)) for m in means}) == 8  # every class has its own mean colour
    assert np.array_equal(photo_crops(16, per_class=20).x, crops.x)


def test_grey_mnist_is_mnist5k_resized_the_control_for_colour():
    grey, mnist = grey_mnist(64), load_dataset("mnist5k")
    assert grey.x.shape == (5000, 1, 64, 64) and np.array_equal(grey.y, mnist.y)
    # the same digits: each resized image is closer to its own original than to the next one
    back = resize_images(grey.x[:50], 28)
    own = np.abs(back - mnist.x[:50]).mean(axis=(1, 2, 3))
    other = np.abs(back - np.roll(mnist.x[:50], 1, axis=0)).mean(axis=(1, 2, 3))
    assert (own < other).all()
    assert np.array_equal(grey_mnist(28).x, mnist.x)  # at its own side, unchanged
