"""Colour apart from shape (round 21 of docs/gan-synthesis.md).

Where every image is drawn in colours of its own that say nothing of its class (digits recoloured at
random, parts under differently coloured lights, stains of varying hue), a conditional GAN that draws
colour and shape together spends its few images of a rare class on their colours: on colour digits
with ten images of a class it drew one shape in multi-coloured strokes, and a classifier taught by
those samples knew 4-7% of the class's real images (round 20).

This module splits each image ``x: (C, H, W)`` into a *shape view* and a *palette*. The view ``v:
(1, H, W)`` in [0, 1] is the image projected on its own main colour axis (the first principal
component of its pixels' colours; sign chosen so that the fewer, more extreme pixels are bright, as
ink on paper), min-max scaled. The palette is the per-channel affine map ``x_c ~ a_c v + b_c`` (least
squares) that gives the colours back; ``one_axis_fit`` is how much of the image's colour variance that
map keeps (1 for an image of two colours and their blends). The GAN then learns shapes on the views,
and each sample takes the palette of a random real training image (:func:`colourise`).

:func:`decide` says when to do so, from the training data alone: the images have more than one
channel, one colour axis explains nearly all of each image (:data:`ONE_AXIS_FLOOR` of the colour
variance, median over images), and the class means explain more of the views' pixel variance than of
the images' (:func:`~gan_aug.train.class_signal`): colour hides the class instead of carrying it.
Photo crops, whose colours are their class, fail the last two and keep the joint GAN.
"""

from __future__ import annotations

import numpy as np

COLOUR_MODELS = ("auto", "joint", "apart")
# median share of an image's colour variance that one colour axis must keep for the shape view to
# stand for the image (colour-mnist 1.00; photo crops 0.92, kept joint by the class signal: 0.02 of
# the views' pixel variance against 0.66 of the images')
ONE_AXIS_FLOOR = 0.9
_CHUNK_VALUES = 2 ** 22  # pixel values per chunk of split_colour (its float64 temporaries stay near 100 MB)


def _views(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, c = x.shape[:2]
    flat = np.asarray(x, dtype=np.float64).reshape(n, c, -1)
    centred = flat - flat.mean(axis=2, keepdims=True)
    _, vectors = np.linalg.eigh(np.einsum("ncp,ndp->ncd", centred, centred))
    p = np.einsum("nc,ncp->np", vectors[:, :, -1], centred)  # on the largest eigenvector
    p *= np.where(((p - p.mean(axis=1, keepdims=True)) ** 3).mean(axis=1) < 0, -1.0, 1.0)[:, None]
    low, high = p.min(axis=1, keepdims=True), p.max(axis=1, keepdims=True)
    v = (p - low) / np.maximum(high - low, 1e-8)
    # least squares x_c = a_c v + b_c, per image and channel
    dv = v - v.mean(axis=1, keepdims=True)
    a = np.einsum("np,ncp->nc", dv, centred) / np.maximum((dv ** 2).sum(axis=1), 1e-12)[:, None]
    b = flat.mean(axis=2) - a * v.mean(axis=1)[:, None]
    residual = ((flat - (a[:, :, None] * v[:, None, :] + b[:, :, None])) ** 2).sum(axis=(1, 2))
    total = (centred ** 2).sum(axis=(1, 2))
    fit = np.where(total > 1e-12, 1.0 - residual / np.maximum(total, 1e-12), 1.0)
    return v.reshape(n, 1, *x.shape[2:]), np.stack([a, b], axis=1), fit


def split_colour(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x: (N, C, H, W)`` in [0, 1] -> ``(views (N, 1, H, W) float32 in [0, 1], palettes (N, 2, C)
    float32, one_axis_fit (N,))``: each image's shape view, the ``(a, b)`` of its colours
    (``x_c ~ a_c v + b_c``) and the share of its colour variance that map keeps."""
    chunk = max(1, _CHUNK_VALUES // max(1, int(np.prod(x.shape[1:]))))
    parts = [_views(x[s : s + chunk]) for s in range(0, len(x), chunk)] or [_views(x[:0])]
    views, palettes, fit = (np.concatenate(p) for p in zip(*parts))
    return views.astype(np.float32), palettes.astype(np.float32), fit


def colourise(views: np.ndarray, palettes: np.ndarray, seed: int) -> np.ndarray:
    """Shape views ``(M, 1, H, W)`` in the colours of palettes drawn at random (with replacement,
    seeded) from ``palettes: (N, 2, C)``: ``(M, C, H, W)`` float32 clipped to [0, 1]."""
    if len(views) == 0:
        return np.zeros((0, palettes.shape[2], *views.shape[2:]), dtype=np.float32)
    chosen = palettes[np.random.default_rng(seed).integers(0, len(palettes), len(views))]
    a, b = chosen[:, 0, :, None, None], chosen[:, 1, :, None, None]
    return np.clip(a * views + b, 0.0, 1.0).astype(np.float32)


def decide(x: np.ndarray, y: np.ndarray, colour: str = "auto",
           split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[bool, dict]:
    """``(apart, evidence)`` for training images ``x: (N, C, H, W)`` and labels ``y``: whether to
    learn shape apart from colour under the setting ``colour`` (``"joint"``: never; ``"apart"``:
    whenever the images have colour; ``"auto"``: when the module note's conditions hold), and the
    numbers read: ``one_axis_fit`` (median), ``class_signal_images`` and ``class_signal_views``.
    ``split``: :func:`split_colour` of ``x`` when the caller has it already."""
    if colour not in COLOUR_MODELS:
        raise ValueError(f"colour must be one of {', '.join(map(repr, COLOUR_MODELS))}, got {colour!r}")
    if x.shape[1] < 2 or colour == "joint":
        return False, {}
    from gan_aug.train import class_signal

    views, _, fit = split_colour(x) if split is None else split
    evidence = {"one_axis_fit": float(np.median(fit)), "class_signal_images": class_signal(x, y),
                "class_signal_views": class_signal(views, y)}
    if colour == "apart":
        return True, evidence
    hidden = evidence["class_signal_views"] > evidence["class_signal_images"]  # nan (one class) -> False
    return bool(evidence["one_axis_fit"] >= ONE_AXIS_FLOOR and hidden), evidence
