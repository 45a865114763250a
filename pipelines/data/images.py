"""Image files and arrays to ``(N, C, H, W)`` float32 in [0, 1]: the one decoder, resizer and
channel converter every data source and batch reader uses."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.errors import GanpipeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, the weights PIL uses for "L"


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB on the last axis: ``(..., C)`` -> ``(..., channels)`` (RGB to grey by luma)."""
    if x.shape[-1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    return (x @ LUMA)[..., None]


def resize_images(x: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize ``x: (N, C, H, W)`` in [0, 1] to ``(N, C, size, size)`` (or ``(N, C, h, w)`` for
    ``size=(h, w)``) with bilinear filtering."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    out = np.empty((x.shape[0], x.shape[1], h, w), dtype=np.float32)
    for i, img in enumerate(x):
        for c, plane in enumerate(img):
            pil = Image.fromarray(plane.astype(np.float32), mode="F")
            out[i, c] = np.asarray(pil.resize((w, h), Image.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class ImageReadResult:
    """Outcome of reading a list of image files: what was read and why the rest was not.

    ``x: (M, C, H, W)`` float32 in [0, 1] for the ``ok_ids`` (in input order); ``rejected`` holds
    ``(id, reason)`` for every other input, so ``len(ok_ids) + len(rejected)`` equals the input count.
    ``grey_to_rgb``: grey images converted to RGB because others were in colour (channels not declared).
    """

    x: np.ndarray
    ok_ids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]
    grey_to_rgb: int = 0


def read_image_files(
    paths: Sequence[Path | str],
    image_size: int | None = None,
    channels: int | None = None,
    ids: Sequence[str] | None = None,
    strict_channels: bool = False,
    max_pixels: int | None = None,
) -> ImageReadResult:
    """Read image files without ever raising for one bad file.

    A file that cannot be decoded (missing, empty, truncated, not an image, animated, more than
    ``max_pixels`` pixels) is rejected with its reason. With ``image_size`` every image is resized to
    it, unless it is far from square (aspect ratio off by more than 10%), which is rejected; without
    it every image must share the most common size, and the others are rejected naming their size.
    ``channels`` sets grey (1) or RGB (3): by default the batch is grey unless any image is in colour;
    with ``strict_channels`` an image of another channel count is rejected instead of converted (a
    colour file whose three channels are equal counts as grey). With both ``image_size`` and
    ``channels`` each image is resized as soon as it is decoded, so memory holds one full-size image.
    """
    ids = [str(p) for p in paths] if ids is None else list(ids)
    fit_now = image_size is not None and channels is not None
    target = (image_size, image_size) if image_size else None
    decoded: list[tuple[str, np.ndarray]] = []
    rejected: list[tuple[str, str]] = []
    for item_id, path in zip(ids, paths):
        try:
            arr = _decode(Path(path), max_pixels)
            decoded.append((item_id, _fit(arr, target, channels, strict_channels) if fit_now else arr))
        except _BadImage as exc:
            rejected.append((item_id, str(exc)))

    grey_to_rgb = 0
    if not fit_now:
        if channels is None:
            channels = 3 if any(a.shape[2] == 3 for _, a in decoded) else 1
            grey_to_rgb = sum(a.shape[2] == 1 for _, a in decoded) if channels == 3 else 0
        if target is None and decoded:
            target = Counter(a.shape[:2] for _, a in decoded).most_common(1)[0][0]
        fitted = []
        for item_id, arr in decoded:
            try:
                fitted.append((item_id, _fit(arr, target, channels, strict_channels, declared=image_size is not None)))
            except _BadImage as exc:
                rejected.append((item_id, str(exc)))
        decoded = fitted

    if decoded:
        x = np.stack([a for _, a in decoded]).transpose(0, 3, 1, 2).astype(np.float32)
    else:
        h, w = target if target else (0, 0)
        x = np.zeros((0, channels, h, w), dtype=np.float32)
    order = {item_id: i for i, item_id in enumerate(ids)}
    rejected.sort(key=lambda r: order[r[0]])
    return ImageReadResult(x=x, ok_ids=tuple(i for i, _ in decoded), rejected=tuple(rejected), grey_to_rgb=grey_to_rgb)


class _BadImage(Exception):
    pass


def _fit(arr: np.ndarray, target: tuple[int, int], channels: int, strict_channels: bool,
         declared: bool = True) -> np.ndarray:
    """One decoded ``(H, W, C)`` image -> ``(*target, channels)``, or _BadImage saying why not."""
    if strict_channels and arr.shape[2] != channels:
        raise _BadImage(f"wrong channel count: image has {arr.shape[2]}, expected {channels}")
    if declared and abs(arr.shape[0] / arr.shape[1] - 1.0) > 0.1:
        raise _BadImage(f"size {arr.shape[1]}x{arr.shape[0]} cannot be resized to {target[1]}x{target[0]} "
                        "without distortion")
    if not declared and arr.shape[:2] != target:
        raise _BadImage(f"size {arr.shape[1]}x{arr.shape[0]} differs from {target[1]}x{target[0]}; "
                        "declare an image size to resize")
    arr = convert_channels(arr, channels)
    if arr.shape[:2] != target:
        arr = resize_images(arr.transpose(2, 0, 1)[None], target)[0].transpose(1, 2, 0)
    return arr


def _decode(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """One image file -> ``(H, W, C)`` float32 in [0, 1] with C in {1, 3}.

    Modes: 1/L/LA and 8-bit ints are grey /255, 16-bit (I;16) grey /65535, 32-bit ints /65535 when
    any value exceeds 255 (else /255), float (F) as stored and clipped; P, PA, RGB, RGBA, CMYK and
    YCbCr become RGB through PIL (alpha is dropped, not composited). Animated or multi-frame files
    are rejected, and so is an image of more than ``max_pixels`` pixels, before its pixels are decoded.
    """
    if not path.is_file():
        raise _BadImage("file not found")
    if path.stat().st_size == 0:
        raise _BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if max_pixels is not None and width * height > max_pixels:
                    raise _BadImage(f"image too large ({width}x{height} pixels, limit {max_pixels})")
                if getattr(img, "is_animated", False):
                    raise _BadImage("animated or multi-frame image; give one frame per file")
                img.load()  # forces a full decode, so truncated files fail here
                arr = _to_array(img)
    except _BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _BadImage("image too large (PIL decompression bomb limit)") from None
    except UnidentifiedImageError:  # its message holds the full path, which a reason must not
        raise _BadImage("unreadable image (not a known image format)") from None
    except Exception as exc:  # decoders raise many kinds of error on hostile bytes; each is one rejected file
        raise _BadImage(f"unreadable image ({short_reason(exc)})") from None
    if not np.isfinite(arr).all():
        raise _BadImage("image contains NaN or infinite values")
    h, w = arr.shape[:2]
    if min(h, w) < 1:
        raise _BadImage("image has no pixels")
    return np.clip(arr, 0.0, 1.0)


def _to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"), dtype=np.float32)[:, :, None] / 255.0
    if img.mode.startswith("I;16"):
        return np.asarray(img.convert("F"), dtype=np.float32)[:, :, None] / 65535.0
    if img.mode in ("I", "F"):
        arr = np.asarray(img.convert("F"), dtype=np.float32)[:, :, None]
        return arr if img.mode == "F" else arr / (65535.0 if arr.max() > 255 else 255.0)
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 0], arr[:, :, 2]):
        return arr[:, :, :1]  # a grey image stored as RGB
    return arr


def short_reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def images_to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """Validate an image array and bring it to ``(N, C, H, W)`` float32 in [0, 1].

    Accepts ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C in {1, 3}; integer pixel
    values are read as 0..255 (0..65535 for 16-bit), floats must already be in [0, 1].
    """
    if x.dtype.kind not in "uif" or x.dtype == np.bool_:
        raise GanpipeError(f"{where}: images must be numeric, got dtype {x.dtype}")
    if len(x) == 0:
        raise GanpipeError(f"{where}: no images (x is empty)")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3):
            raise GanpipeError(f"{where}: cannot find a channel axis of size 1 or 3 in shape {x.shape}")
    else:
        raise GanpipeError(f"{where}: images must be (N,H,W), (N,H,W,C) or (N,C,H,W), got shape {x.shape}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise GanpipeError(
                f"{where}: {len(idx)} image(s) contain NaN or infinite values, first at index {idx[0]}"
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise GanpipeError(
                f"{where}: float pixel values span [{lo:g}, {hi:g}]; expected [0, 1] (or integer 0..255)"
            )
        return x.astype(np.float32)
    scale = 65535.0 if x.max() > 255 else 255.0
    if x.min() < 0:
        raise GanpipeError(f"{where}: negative integer pixel values (min {x.min()})")
    return (x.astype(np.float32) / scale).astype(np.float32)
