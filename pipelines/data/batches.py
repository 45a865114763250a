"""New data batches to score: every item is either read and validated, or rejected with a reason.

A batch is an image folder (every file in it, sub-folders included), an ``.npz`` with ``x`` (and
optional ``ids``), or a ``.csv`` with a ``path`` column (optional ``id``; relative paths are
relative to the CSV). ``len(ids) + len(rejected)`` always equals the number of items in the batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.images import IMAGE_SUFFIXES, read_image_files, resize_images
from pipelines.errors import GanpipeError


@dataclass(frozen=True)
class Batch:
    """``x: (M, C, H, W)`` float32 in [0, 1] for ``ids``; ``rejected``: ``(id, reason)`` pairs."""

    batch_id: str
    ids: tuple[str, ...]
    x: np.ndarray
    rejected: tuple[tuple[str, str], ...]
    source: str


def read_batch(path: str | Path, image_shape: tuple[int, int, int], batch_id: str | None = None) -> Batch:
    """Read the batch at ``path`` for a model that takes images of ``image_shape = (C, H, W)``.

    The batch id defaults to a digest of the batch's content, so the same files give the same id.
    Raises GanpipeError only when the batch as a whole cannot be read (missing, empty, wrong format).
    """
    path = Path(path).expanduser()
    channels, size = image_shape[0], image_shape[1]
    if not path.exists():
        raise GanpipeError(f"batch not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise GanpipeError(f"empty batch folder: {path}")
        ids, x, rejected = _read_files(files, [str(p.relative_to(path)) for p in files], channels, size)
    elif path.suffix.lower() == ".npz":
        ids, x, rejected = _read_npz(path, channels, size)
    elif path.suffix.lower() == ".csv":
        ids, x, rejected = _read_csv(path, channels, size)
    else:
        raise GanpipeError(f"unsupported batch {path}: give a folder of images, an .npz or a .csv of image paths")
    return Batch(batch_id or _content_id(path), ids, x, rejected, str(path))


def _read_files(files: list[Path], ids: list[str], channels: int, size: int):
    images, image_ids, rejected = [], [], []
    for file, item_id in zip(files, ids):
        if file.suffix.lower() in IMAGE_SUFFIXES:
            images.append(file)
            image_ids.append(item_id)
        else:
            rejected.append((item_id, f"not an image file ({file.suffix or 'no extension'})"))
    result = read_image_files(images, image_size=size, channels=channels, ids=image_ids, strict_channels=True)
    order = {item_id: i for i, item_id in enumerate(ids)}
    all_rejected = sorted(rejected + list(result.rejected), key=lambda r: order[r[0]])
    return result.ok_ids, result.x, tuple(all_rejected)


def _read_csv(path: Path, channels: int, size: int):
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise GanpipeError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if "path" not in table.columns:
        raise GanpipeError(f"{path}: needs a 'path' column; found {', '.join(map(str, table.columns)) or 'none'}")
    if table.empty:
        raise GanpipeError(f"empty batch: {path} lists no images")
    ids = table["id"].astype(str).tolist() if "id" in table.columns else table["path"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise GanpipeError(f"{path}: item ids must be unique")
    files = [Path(p) if Path(p).is_absolute() else path.parent / p for p in table["path"].astype(str)]
    return _read_files(files, ids, channels, size)


def _read_npz(path: Path, channels: int, size: int):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise GanpipeError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]})") from None
    if "x" not in arrays:
        raise GanpipeError(f"{path}: missing array x; found {', '.join(arrays) or 'none'}")
    x = arrays["x"]
    ids = [str(i) for i in arrays["ids"]] if "ids" in arrays else [f"{path.name}#{i}" for i in range(len(x))]
    if len(ids) != len(x) or len(x) == 0:
        raise GanpipeError(f"{path}: {len(x)} images and {len(ids)} ids; need one id per image and at least one image")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.dtype.kind not in "uif":
        reason = f"wrong shape {tuple(arrays['x'].shape[1:])} or dtype {arrays['x'].dtype} for images"
        return (), np.zeros((0, channels, size, size), np.float32), tuple((i, reason) for i in ids)
    values = x.astype(np.float32)
    if x.dtype.kind in "ui":
        values = values / (65535.0 if x.max() > 255 else 255.0)
    rejected: dict[int, str] = {}
    if x.shape[1] != channels:
        rejected = {i: f"wrong channel count: image has {x.shape[1]}, expected {channels}" for i in range(len(x))}
    elif abs(x.shape[2] / x.shape[3] - 1.0) > 0.1:
        rejected = {i: f"size {x.shape[3]}x{x.shape[2]} cannot be resized to {size}x{size} without distortion"
                    for i in range(len(x))}
    else:
        for i in np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1)):
            rejected[int(i)] = "contains NaN or infinite values"
        for i in np.flatnonzero(((values < 0) | (values > 1)).reshape(len(values), -1).any(axis=1)):
            rejected.setdefault(int(i), "pixel values outside [0, 1]")
    keep = [i for i in range(len(x)) if i not in rejected]
    kept = values[keep]
    if len(kept) and kept.shape[2:] != (size, size):
        kept = resize_images(kept, size)
    if not len(kept):
        kept = np.zeros((0, channels, size, size), np.float32)
    return tuple(ids[i] for i in keep), kept, tuple((ids[i], rejected[i]) for i in sorted(rejected))


def _content_id(path: Path) -> str:
    digest = hashlib.sha1()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
