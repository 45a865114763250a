"""Image files and arrays to ``(N, C, H, W)`` float32 in [0, 1]: the one decoder, resizer and
channel converter every data source and batch reader uses."""

from __future__ import annotations

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
    """

    x: np.ndarray
    ok_ids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]


def read_image_files(
    paths: Sequence[Path | str],
    image_size: int | None = None,
    channels: int | None = None,
    ids: Sequence[str] | None = None,
    strict_channels: bool = False,
) -> ImageReadResult:
    """Read image files without ever raising for one bad file.

    A file that cannot be decoded (missing, truncated, not an image) is rejected with its reason.
    With ``image_size`` every image is resized to it, unless it is far from square (aspect ratio
    off by more than 10%), which is rejected; without it every image must share the most common
    size, and the others are rejected naming their size. ``channels`` sets grey (1) or RGB (3): by
    default the batch is grey unless any image is in colour; with ``strict_channels`` an image of
    another channel count is rejected instead of converted (a colour file whose three channels are
    equal counts as grey).
    """
    ids = [str(p) for p in paths] if ids is None else list(ids)
    decoded: list[tuple[str, np.ndarray]] = []
    rejected: list[tuple[str, str]] = []
    for item_id, path in zip(ids, paths):
        try:
            decoded.append((item_id, _decode(Path(path))))
        except _BadImage as exc:
            rejected.append((item_id, str(exc)))

    if channels is None:
        channels = 3 if any(a.shape[2] == 3 for _, a in decoded) else 1
    if image_size is None and decoded:
        sizes = Counter(a.shape[:2] for _, a in decoded)
        target = sizes.most_common(1)[0][0]
    else:
        target = (image_size, image_size) if image_size else None

    kept_ids: list[str] = []
    arrays: list[np.ndarray] = []
    for item_id, arr in decoded:
        if strict_channels and arr.shape[2] != channels:
            rejected.append((item_id, f"wrong channel count: image has {arr.shape[2]}, expected {channels}"))
            continue
        if image_size is not None and abs(arr.shape[0] / arr.shape[1] - 1.0) > 0.1:
            rejected.append((item_id, f"size {arr.shape[1]}x{arr.shape[0]} cannot be resized to "
                                      f"{image_size}x{image_size} without distortion"))
            continue
        if image_size is None and arr.shape[:2] != target:
            rejected.append(
                (item_id, f"size {arr.shape[1]}x{arr.shape[0]} differs from {target[1]}x{target[0]}; "
                          "declare an image size to resize")
            )
            continue
        arr = convert_channels(arr, channels)
        if arr.shape[:2] != target:
            arr = resize_images(arr.transpose(2, 0, 1)[None], target)[0].transpose(1, 2, 0)
        kept_ids.append(item_id)
        arrays.append(arr)

    if arrays:
        x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32)
    else:
        h, w = target if target else (0, 0)
        x = np.zeros((0, channels, h, w), dtype=np.float32)
    order = {item_id: i for i, item_id in enumerate(ids)}
    rejected.sort(key=lambda r: order[r[0]])
    return ImageReadResult(x=x, ok_ids=tuple(kept_ids), rejected=tuple(rejected))


class _BadImage(Exception):
    pass


def _decode(path: Path) -> np.ndarray:
    """One image file -> ``(H, W, C)`` float32 in [0, 1] with C in {1, 3}."""
    if not path.is_file():
        raise _BadImage("file not found")
    try:
        with Image.open(path) as img:
            img.load()  # forces a full decode, so truncated files fail here
            if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
                grey = img.convert("F") if img.mode.startswith("I") or img.mode == "F" else img.convert("L")
                arr = np.asarray(grey, dtype=np.float32)
                if img.mode.startswith("I"):
                    arr = arr / (65535.0 if arr.max() > 255 else 255.0)
                elif img.mode != "F":
                    arr = arr / 255.0
                arr = arr[:, :, None]
            else:
                arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
                if np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 0], arr[:, :, 2]):
                    arr = arr[:, :, :1]  # a grey image stored as RGB
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _BadImage(f"unreadable image ({short_reason(exc)})") from None
    if not np.isfinite(arr).all():
        raise _BadImage("image contains NaN or infinite values")
    h, w = arr.shape[:2]
    if min(h, w) < 1:
        raise _BadImage("image has no pixels")
    return np.clip(arr, 0.0, 1.0)


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
