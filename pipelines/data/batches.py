"""New data batches to score, read in chunks of bounded memory: every item is either read and
validated, or rejected with a reason, and batches are not trusted.

A batch is one of:

- an image folder: every entry in it, sub-folders included, except names starting with ``.`` (hidden
  files and folders). Items are ordered by their path components and their id is the path relative
  to the folder (a name that is not UTF-8 shows its bad bytes as ``\\xNN``). Symlinked folders are not
  entered; a symlink is read only when it resolves inside the batch folder.
- an ``.npz`` with ``x`` (``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``) and optional ``ids``
  (strings or integers), in array order; without ``ids`` the id is ``<file name>#<index>``. Both are
  streamed out of the zip, never loaded whole; object (pickled) arrays are refused.
- a ``.csv`` with a ``path`` column and an optional ``id`` column (an empty id falls back to the
  path), in row order. Relative paths are relative to the CSV, and every path must resolve inside
  the CSV's folder (or under one of ``allow_roots``).

``len(ids) + len(rejected)`` always equals the number of items, and ids are unique among the read
items: a repeated id (CSV or npz ``ids``) is rejected after its first occurrence. Outcomes:

- read: image files are decoded by content (a JPEG named ``.png`` is read), in any mode
  :func:`pipelines.data.images.read_image_files` converts (16-bit grey /65535, palette, CMYK; alpha
  is dropped); a colour file with three equal channels is grey; square-ish images are resized.
  npz integers are /255, or /65535 when any pixel of the batch exceeds 255; floats must be in [0, 1].
- rejected (the reason, as written to ``rejected.csv``): "not an image file (.txt)", "empty file
  (0 bytes)", "unreadable image (...)" (corrupt, truncated), "animated or multi-frame image",
  "image too large (WxH pixels, limit N)" (read from the header, before any pixel is decoded; see
  :func:`pixel_limit`), "wrong channel count", "size WxH cannot be resized ... without distortion",
  "symlink leaves the batch folder", "symlink loop", "dangling symlink", "symlink to a folder (not
  followed)", "not a regular file" (FIFO, device), "path outside the CSV's folder", "file not found",
  "empty path", "duplicate id"; npz items: "contains NaN or infinite values", "pixel values outside
  [0, 1]", "wrong dtype".
- the whole batch is refused with a GanpipeError as :func:`check_batch` lists, and an npz whose zip
  checksums fail is refused by :func:`iter_batch` before its first chunk (one pass reads it through).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zipfile
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from pipelines.data.images import IMAGE_SUFFIXES, read_image_files, resize_images, short_reason
from pipelines.errors import GanpipeError

READ_BYTES = 16 * 2**20  # raw .npz bytes read at once: bounds memory when single images are large


@dataclass(frozen=True)
class Batch:
    """``x: (M, C, H, W)`` float32 in [0, 1] for ``ids``; ``rejected``: ``(id, reason)`` pairs."""

    batch_id: str
    ids: tuple[str, ...]
    x: np.ndarray
    rejected: tuple[tuple[str, str], ...]
    source: str


@dataclass(frozen=True)
class Chunk:
    """Items ``[previous end, end)`` of a batch: ``x: (m, C, H, W)`` float32 in [0, 1] for ``ids``
    and ``(id, reason)`` for the rejected rest, both in item order."""

    ids: tuple[str, ...]
    x: np.ndarray
    rejected: tuple[tuple[str, str], ...]
    end: int


def pixel_limit(image_shape: tuple[int, int, int]) -> int:
    """Most pixels an input image may have: 64 times the model's, and never under 4096x4096."""
    return max(64 * image_shape[1] * image_shape[2], 4096 * 4096)


def read_batch(path: str | Path, image_shape: tuple[int, int, int], batch_id: str | None = None,
               allow_roots: Sequence[str | Path] = ()) -> Batch:
    """The whole batch at ``path`` at once (all chunks of :func:`iter_batch` joined), for a model
    that takes images of ``image_shape = (C, H, W)``.

    The batch id defaults to :func:`batch_digest`, so the same files give the same id.
    Raises GanpipeError only when the batch as a whole cannot be read (see :func:`check_batch`).
    """
    chunks = list(iter_batch(path, image_shape, allow_roots=allow_roots))
    x = np.concatenate([c.x for c in chunks]) if chunks else np.zeros((0, *image_shape), np.float32)
    return Batch(batch_id or batch_digest(path), tuple(i for c in chunks for i in c.ids), x,
                 tuple(r for c in chunks for r in c.rejected), str(Path(path).expanduser()))


def check_batch(path: str | Path) -> None:
    """Raise GanpipeError (one line) when the batch as a whole cannot be read: missing, unsupported
    suffix, empty folder; CSV unreadable, without a ``path`` column or without rows; npz unreadable,
    without ``x``, ``x`` not 3- or 4-D or empty, an object (pickled) array, an array stored in
    Fortran order or not of the size its header declares, ``ids`` not one string or integer per
    image. Cheap: lists a folder, reads npz headers only, parses a CSV once keeping nothing; no image
    is decoded (so damage inside an npz's data is found by :func:`iter_batch`)."""
    count_items(path)


def count_items(path: str | Path) -> int:
    """Number of items in the batch at ``path``; raises GanpipeError as :func:`check_batch`."""
    path = _existing(path)
    if path.is_dir():
        return len(_folder_entries(path))
    if path.suffix.lower() == ".npz":
        with _open_npz(path) as npz:
            return npz.count
    return _csv_count(path)


def iter_batch(path: str | Path, image_shape: tuple[int, int, int], chunk_size: int = 4096, skip: int = 0,
               allow_roots: Sequence[str | Path] = ()) -> Iterator[Chunk]:
    """Read the batch at ``path`` for a model taking ``image_shape = (C, H, W)``, ``chunk_size``
    items at a time, starting after the first ``skip`` items (their images are not read; only their
    ids, so a repeated id is still caught). Memory is bounded by ``chunk_size``, not the batch size:
    about ``chunk_size * C * H * W * 4`` bytes of output, npz data read at most 16 MB at a time (and
    its float32 copy), one full-size image at a time from files; besides, a folder's list of names
    and 8 bytes an item to remember ids of CSV and npz ``ids`` batches.

    Chunk ``k`` covers items ``[end of chunk k-1, end)``, at most ``chunk_size`` of them, in the
    order described in the module docstring.

    ``allow_roots``: folders outside the CSV's folder that CSV paths may point into.
    Raises GanpipeError before the first chunk as :func:`check_batch`, and for an npz whose data is
    damaged (zip checksums; an npz is read through once first).
    """
    if chunk_size < 1 or skip < 0:
        raise ValueError(f"chunk_size must be >= 1 and skip >= 0, got {chunk_size} and {skip}")
    path = _existing(path)
    limit = pixel_limit(image_shape)
    if path.is_dir():
        root = Path(os.path.realpath(path))
        entries = ((_printable(rel), rel) for rel in _folder_entries(path))
        yield from _iter_files(entries, lambda rel: _locate_in_folder(root, rel), image_shape, chunk_size, skip,
                               limit, None)
        return
    if path.suffix.lower() == ".npz":
        yield from _iter_npz(path, image_shape, chunk_size, skip, limit)
        return
    roots = [Path(os.path.realpath(path.parent))] + [Path(os.path.realpath(Path(r).expanduser())) for r in allow_roots]
    entries = ((item_id, raw) for rows in _csv_rows(path, chunk_size) for item_id, raw in rows)
    yield from _iter_files(entries, lambda raw: _locate_in_csv(path.parent, raw, roots), image_shape, chunk_size,
                           skip, limit, _SeenIds())


def batch_digest(path: str | Path) -> str:
    """A digest of the batch's content (file names and bytes, read in blocks; a symlink counts by its
    target's name, a CSV by its own bytes), so the same files give the same id."""
    path = _existing(path)
    digest = hashlib.sha1()
    if path.is_dir():
        for rel in _folder_entries(path):
            digest.update(os.fsencode(rel))
            file = path / rel
            if file.is_symlink():
                digest.update(os.fsencode(os.readlink(file)))
            elif file.is_file():
                _hash_file(digest, file)
    else:
        digest.update(path.name.encode())
        _hash_file(digest, path)
    return digest.hexdigest()[:16]


def _hash_file(digest, file: Path) -> None:
    try:
        with open(file, "rb") as handle:
            while block := handle.read(2**20):
                digest.update(block)
    except OSError:
        pass  # an unreadable file counts by its name; reading it rejects it


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise GanpipeError(f"batch not found: {path}")
    if not path.is_dir() and path.suffix.lower() not in (".npz", ".csv"):
        raise GanpipeError(f"unsupported batch {path}: give a folder of images, an .npz or a .csv of image paths")
    return path


# ---------------------------------------------------------------------------- files (folder, CSV)


def _iter_files(entries: Iterable[tuple[str, str]], locate: Callable[[str], Path | str],
                image_shape: tuple[int, int, int], chunk_size: int, skip: int, limit: int,
                seen: _SeenIds | None) -> Iterator[Chunk]:
    """Chunks of ``entries`` ``(item id, where)``: ``locate(where)`` gives the file to read or the
    reason it is rejected; ``seen`` (when ids may repeat) rejects a repeated id."""
    entries = iter(entries)
    done = 0
    while done < skip and (group := list(islice(entries, min(chunk_size, skip - done)))):
        if seen is not None:
            seen.first_time([item_id for item_id, _ in group])
        done += len(group)
    while group := list(islice(entries, chunk_size)):
        first = seen.first_time([item_id for item_id, _ in group]) if seen is not None else [True] * len(group)
        rejected, files, file_ids, position = [], [], [], {}
        for i, ((item_id, where), is_first) in enumerate(zip(group, first)):
            target = locate(where) if is_first else "duplicate id"
            if isinstance(target, str):
                rejected.append((i, item_id, target))
            else:
                files.append(target)
                file_ids.append(item_id)
                position[item_id] = i  # ids read here are unique: a repeat was rejected above
        result = read_image_files(files, image_size=image_shape[1], channels=image_shape[0], ids=file_ids,
                                  strict_channels=True, max_pixels=limit)
        rejected += [(position[item_id], item_id, reason) for item_id, reason in result.rejected]
        done += len(group)
        yield Chunk(result.ok_ids, result.x, tuple((item_id, reason) for _, item_id, reason in sorted(rejected)), done)


def _folder_entries(root: Path) -> list[str]:
    """Paths relative to ``root`` of every entry that is not a real folder, sorted by components;
    names starting with ``.`` are skipped and symlinked folders are not entered."""
    found: list[tuple[str, ...]] = []
    stack: list[tuple[str, ...]] = [()]
    while stack:
        parts = stack.pop()
        try:
            with os.scandir(root.joinpath(*parts)) as scan:
                for entry in scan:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((*parts, entry.name))
                    else:
                        found.append((*parts, entry.name))
        except OSError:
            if parts:
                found.append(parts)  # an unreadable sub-folder is an item, rejected when located
            else:
                raise GanpipeError(f"cannot list batch folder {root}") from None
    if not found:
        raise GanpipeError(f"empty batch folder: {root}")
    return ["/".join(parts) for parts in sorted(found)]


def _printable(rel: str) -> str:
    """A folder id that encodes as UTF-8 (undecodable bytes of a file name become ``\\xNN``)."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _locate_in_folder(root: Path, rel: str) -> Path | str:
    file = root / rel
    try:
        mode = os.lstat(file).st_mode
    except OSError:
        return "file not found"
    if stat.S_ISLNK(mode):
        if not Path(os.path.realpath(file)).is_relative_to(root):
            return "symlink leaves the batch folder"
        try:
            mode = os.stat(file).st_mode
        except OSError as exc:
            return "symlink loop" if exc.errno == errno.ELOOP else "dangling symlink (its target is missing)"
        if stat.S_ISDIR(mode):
            return "symlink to a folder (not followed)"
    elif stat.S_ISDIR(mode):
        return "unreadable folder"
    return _regular_image(file, mode)


def _csv_tables(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    try:
        with pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_size) as reader:
            yield from reader
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise GanpipeError(f"{path}: not a readable CSV ({short_reason(exc)})") from None


def _csv_count(path: Path) -> int:
    """Rows of a CSV batch, parsing the whole file once; GanpipeError for a CSV that is unreadable,
    lacks a ``path`` column or lists nothing."""
    total = 0
    for table in _csv_tables(path, 65536):
        if "path" not in table.columns:
            raise GanpipeError(f"{path}: needs a 'path' column; found {', '.join(map(str, table.columns)) or 'none'}")
        total += len(table)
    if not total:
        raise GanpipeError(f"empty batch: {path} lists no images")
    return total


def _csv_rows(path: Path, chunk_size: int) -> Iterator[list[tuple[str, str]]]:
    """``(item id, path)`` rows of a CSV batch, ``chunk_size`` rows at a time, after :func:`_csv_count`
    has checked the whole file."""
    _csv_count(path)
    start = 0
    for table in _csv_tables(path, chunk_size):
        paths = table["path"].tolist()
        ids = table["id"].tolist() if "id" in table.columns else paths
        yield [(item_id or raw or f"{path.name}#{start + i}", raw) for i, (item_id, raw) in enumerate(zip(ids, paths))]
        start += len(table)


def _locate_in_csv(folder: Path, raw: str, roots: list[Path]) -> Path | str:
    if not raw:
        return "empty path"
    try:
        file = folder / raw
        real = Path(os.path.realpath(file))
    except ValueError:
        return "invalid path (contains a NUL byte)"
    if not any(real.is_relative_to(root) for root in roots):
        return "path outside the CSV's folder"
    try:
        mode = os.stat(file).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return "file not found" if exc.errno == errno.ENOENT else f"unreadable path ({exc.strerror})"
    return _regular_image(file, mode)


def _regular_image(file: Path, mode: int) -> Path | str:
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if file.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file ({file.suffix or 'no extension'})"
    return file


class _SeenIds:
    """The ids met so far, as a sorted array of 64-bit digests (8 bytes an item; two different ids
    share a digest with odds of about n**2 / 2**65)."""

    def __init__(self) -> None:
        self.digests = np.zeros(0, np.uint64)

    def first_time(self, ids: Sequence[str]) -> list[bool]:
        """For each of ``ids``, whether it is met here for the first time (and remember them all)."""
        keys = np.array([int.from_bytes(hashlib.blake2b(i.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                        "little") for i in ids], np.uint64)
        first = np.zeros(len(keys), bool)
        first[np.unique(keys, return_index=True)[1]] = True
        pos = np.searchsorted(self.digests, keys)
        known = self.digests[np.minimum(pos, len(self.digests) - 1)] == keys if len(self.digests) else first & False
        first &= ~known
        new = np.sort(keys[first])
        self.digests = np.insert(self.digests, np.searchsorted(self.digests, new), new)
        return first.tolist()


# ---------------------------------------------------------------------------- npz


@dataclass(frozen=True)
class _Npy:
    """Header of one ``.npy`` member of an npz: its data starts ``offset`` bytes into the member."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class _Npz:
    archive: zipfile.ZipFile
    x: _Npy
    ids: _Npy | None

    @property
    def count(self) -> int:
        return self.x.shape[0]


ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError,
              NotImplementedError, zlib.error)


@contextmanager
def _open_npz(path: Path) -> Iterator[_Npz]:
    """The npz's ``x`` and ``ids`` headers, checked (GanpipeError), with the archive open."""
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise GanpipeError(f"{path}: not a readable .npz file ({short_reason(exc)})") from None
    with archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        if "x" not in members:
            raise GanpipeError(f"{path}: missing array x; found {', '.join(members) or 'none'}")
        x = _npy_header(path, archive, members["x"])
        if len(x.shape) not in (3, 4) or x.shape[0] == 0:
            raise GanpipeError(f"{path}: x must hold images as (N, H, W), (N, H, W, C) or (N, C, H, W) with N > 0; "
                               f"got shape {x.shape}")
        ids = _npy_header(path, archive, members["ids"]) if "ids" in members else None
        if ids is not None and (ids.dtype.kind not in "USiu" or ids.shape != x.shape[:1]):
            raise GanpipeError(f"{path}: ids must be one string or integer per image; x has {x.shape[0]} images, "
                               f"ids has shape {ids.shape} and dtype {ids.dtype}")
        yield _Npz(archive, x, ids)


def _npy_header(path: Path, archive: zipfile.ZipFile, name: str) -> _Npy:
    key = name.removesuffix(".npy")
    try:
        with archive.open(name) as member:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version[0]}.{version[1]}")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(member)
            npy = _Npy(name, tuple(shape), dtype, member.tell())
        stored = archive.getinfo(name).file_size - npy.offset
    except ZIP_ERRORS as exc:
        raise GanpipeError(f"{path}: not a readable .npz file ({key}: {short_reason(exc)})") from None
    if dtype.hasobject:
        raise GanpipeError(f"{path}: {key} is an object array; only numeric images and string or integer ids "
                           "are read (never pickles)")
    if fortran_order and len(shape) > 1:
        raise GanpipeError(f"{path}: {key} is stored in Fortran order; save np.ascontiguousarray({key}) instead")
    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if stored != declared:
        raise GanpipeError(f"{path}: {key} is damaged: its header declares {declared} bytes, the archive holds {stored}")
    return npy


class _NpyStream:
    """Items of one ``.npy`` member, read in order straight out of the zip (compressed or not)."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, npy: _Npy, start: int) -> None:
        self.path, self.npy = path, npy
        self.member = archive.open(npy.name)
        self.start: int | None = start

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` items."""
        want = n * self.npy.item_bytes
        try:
            if self.start is not None:  # forward seeks decompress and drop the data in bounded blocks
                self.member.seek(self.npy.offset + self.start * self.npy.item_bytes)
                self.start = None
            data = self.member.read(want)
        except ZIP_ERRORS as exc:  # only when the file changed since _verify read it
            raise GanpipeError(f"{self.path}: {self.npy.name} is damaged ({short_reason(exc)})") from None
        if len(data) != want:
            raise GanpipeError(f"{self.path}: {self.npy.name} is damaged (its data ends early)")
        return np.frombuffer(data, self.npy.dtype).reshape(n, *self.npy.shape[1:])

    def __enter__(self) -> _NpyStream:
        return self

    def __exit__(self, *exc) -> None:
        self.member.close()


def _iter_npz(path: Path, image_shape: tuple[int, int, int], chunk_size: int, skip: int,
              limit: int) -> Iterator[Chunk]:
    """Chunks of an npz batch: ``x`` and ``ids`` stream out of the zip ``chunk_size`` items at a time
    (``x`` in reads of at most READ_BYTES), after one pass that checks them (see :func:`_verify`)."""
    with _open_npz(path) as npz, ExitStack() as streams:
        every_item, to_nchw = _npz_layout(npz.x, image_shape, limit)
        scale = _verify(path, npz)
        seen = _SeenIds() if npz.ids is not None else None
        ids_stream = streams.enter_context(_NpyStream(path, npz.archive, npz.ids, 0)) if npz.ids is not None else None
        done = 0
        while done < min(skip, npz.count):
            n = min(chunk_size, skip - done, npz.count - done)
            if ids_stream is not None:
                seen.first_time(_id_strings(ids_stream.read(n), path, done))
            done += n
        if every_item is None and done < npz.count:
            x_stream = streams.enter_context(_NpyStream(path, npz.archive, npz.x, done))
        per_read = max(1, READ_BYTES // max(1, npz.x.item_bytes))
        while done < npz.count:
            n = min(chunk_size, npz.count - done)
            ids = [f"{path.name}#{i}" for i in range(done, done + n)]
            reasons: dict[int, str] = {}
            if ids_stream is not None:
                ids = _id_strings(ids_stream.read(n), path, done)
                reasons = {i: "duplicate id" for i, first in enumerate(seen.first_time(ids)) if not first}
            parts = []
            if every_item is not None:
                reasons = {i: reasons.get(i, every_item) for i in range(n)}
            else:
                for start in range(0, n, per_read):
                    raw = x_stream.read(min(per_read, n - start))
                    parts.append(_npz_images(to_nchw(raw), scale, start, reasons, image_shape))
            done += n
            x = np.concatenate(parts) if parts else np.zeros((0, *image_shape), np.float32)
            yield Chunk(tuple(ids[i] for i in range(n) if i not in reasons), x,
                        tuple((ids[i], reasons[i]) for i in sorted(reasons)), done)


def _verify(path: Path, npz: _Npz) -> float:
    """Read ``x`` and ``ids`` through once in 1 MB blocks, so the zip's checksums refuse a damaged
    npz (GanpipeError) before any item is scored; returns the divisor of ``x``'s pixels: 1 for
    floats, 255 for integers, 65535 when an integer pixel of the batch exceeds 255."""
    wide_int = npz.x.dtype.kind in "iu" and npz.x.dtype.itemsize > 1
    high = 0
    for npy in (npz.x, npz.ids):
        if npy is None:
            continue
        try:
            with npz.archive.open(npy.name) as member:
                member.read(npy.offset)
                while block := member.read(2**20):  # a whole number of elements: itemsize divides 2**20
                    if wide_int and npy is npz.x:
                        high = max(high, int(np.frombuffer(block, npy.dtype).max()))
        except ZIP_ERRORS as exc:
            raise GanpipeError(f"{path}: {npy.name} is damaged ({short_reason(exc)})") from None
    if npz.x.dtype.kind not in "iu":
        return 1.0
    return 65535.0 if high > 255 else 255.0


def _npz_layout(x: _Npy, image_shape: tuple[int, int, int], limit: int):
    """The reason every item of ``x`` is rejected (or None) and the function that makes raw items NCHW."""
    channels, height, width = image_shape
    shape = x.shape[1:]
    if len(shape) == 2:
        (h, w), c, to_nchw = shape, 1, lambda a: a[:, None]
    elif shape[0] not in (1, 3) and shape[2] in (1, 3):
        (h, w, c), to_nchw = shape, lambda a: a.transpose(0, 3, 1, 2)
    else:
        (c, h, w), to_nchw = shape, lambda a: a
    if x.dtype.kind not in "uif":
        return f"wrong dtype {x.dtype} for images (need integers or floats)", to_nchw
    if c != channels:
        return f"wrong channel count: image has {c}, expected {channels}", to_nchw
    if h * w == 0:
        return "image has no pixels", to_nchw
    if h * w > limit:
        return f"image too large ({w}x{h} pixels, limit {limit})", to_nchw
    if abs(h / w - 1.0) > 0.1:
        return f"size {w}x{h} cannot be resized to {width}x{height} without distortion", to_nchw
    return None, to_nchw


def _npz_images(raw: np.ndarray, scale: float, start: int, reasons: dict[int, str],
                image_shape: tuple[int, int, int]) -> np.ndarray:
    """Items ``start, start + 1, ...`` of a chunk, ``raw: (k, C, h, w)``: the valid ones as
    ``(m, *image_shape)`` float32 in [0, 1]; the others get their reason in ``reasons``."""
    values = raw.astype(np.float32)
    if scale != 1.0:
        values /= scale
    flat = values.reshape(len(values), -1)
    not_finite = ~np.isfinite(flat).all(axis=1)
    out_of_range = ((flat < 0) | (flat > 1)).any(axis=1)
    for j in range(len(values)):
        if start + j not in reasons and not_finite[j]:
            reasons[start + j] = "contains NaN or infinite values"
        elif start + j not in reasons and out_of_range[j]:
            reasons[start + j] = "pixel values outside [0, 1]"
    keep = [j for j in range(len(values)) if start + j not in reasons]
    kept = values if len(keep) == len(values) else values[keep]
    if kept.shape[2:] != image_shape[1:] and len(kept):
        kept = resize_images(kept, image_shape[1:])
    return kept if len(kept) else np.zeros((0, *image_shape), np.float32)


def _id_strings(values: np.ndarray, path: Path, start: int) -> list[str]:
    """npz ids as strings (bytes decoded as UTF-8); an empty id becomes ``<file name>#<index>``."""
    if values.dtype.kind == "S":
        texts = [v.decode("utf-8", "backslashreplace") for v in values.tolist()]
    else:
        texts = [str(v) for v in values.tolist()]
    return [text or f"{path.name}#{start + i}" for i, text in enumerate(texts)]
