"""Bad-input matrix for batch reading: one untrusted batch per kind and its documented outcome.

Each kind writes its batch into an empty work folder (files meant to be out of reach go in
``work/outside``) and says, item by item in batch order, whether the item is scored (``None``) or
rejected (a substring of the reason), or that the whole batch is refused (``error``). The tests
assert the outcomes; ``benchmarks/bad_inputs.py`` tabulates them (here, so the benchmarks need nothing from ``tests/``).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.data.batches import count_items, iter_batch
from pipelines.errors import GanpipeError

SHAPE = (1, 28, 28)  # the model every kind is read for
GREY = np.tile((np.arange(28) * 9).astype(np.uint8), (28, 1))  # a 28x28 grey ramp, 0..243
NOISE = np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)  # its PNG is ~800 bytes, so a cut hits pixels


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[Path], Path]  # work folder -> the batch
    items: tuple[tuple[str, str | None], ...] = ()  # (id, None = scored | reason substring), in batch order
    error: str | None = None  # the whole batch is refused with this GanpipeError
    allow: tuple[str, ...] = ()  # allow_roots, relative to the work folder
    pixel: float | None = None  # expected x[0, 0, 0, 1] of the first scored item
    late: bool = False  # the error is found by iter_batch, not by check_batch (which reads headers only)

    @property
    def expected(self) -> str:
        if self.error:
            return f"batch refused: {self.error}"
        scored = ["scored"] if any(reason is None for _, reason in self.items) else []
        return "; ".join(scored + [f"rejected: {r}" for r in sorted({reason for _, reason in self.items if reason})])


@dataclass
class Outcome:
    """What reading a kind's batch gave: every item as ``(id, reason or None)``, chunk by chunk
    (scored ones first in each), with the count from ``count_items``."""

    items: list[tuple[str, str | None]] = field(default_factory=list)
    first_pixel: float | None = None
    error: str | None = None
    counted: int | None = None

    @property
    def reasons(self) -> str:
        return self.error or "; ".join(sorted({r for _, r in self.items if r})) or "-"


def read_kind(kind: Kind, work: Path, chunk_size: int = 4096) -> Outcome:
    """Build ``kind`` in ``work`` and read it with ``iter_batch`` for a ``SHAPE`` model."""
    work.mkdir(parents=True, exist_ok=True)
    batch = kind.build(work)
    outcome = Outcome()
    try:
        outcome.counted = count_items(batch)
        for chunk in iter_batch(batch, SHAPE, chunk_size=chunk_size, allow_roots=[work / r for r in kind.allow]):
            outcome.items += [(i, None) for i in chunk.ids] + list(chunk.rejected)
            if outcome.first_pixel is None and len(chunk.x):
                outcome.first_pixel = float(chunk.x[0, 0, 0, 1])
    except GanpipeError as exc:
        outcome.error = str(exc)
    return outcome


def mismatch(kind: Kind, outcome: Outcome) -> str:
    """What differs from the documented outcome ('' when nothing does)."""
    if kind.error or outcome.error:
        return "" if kind.error and outcome.error and kind.error in outcome.error else \
            f"expected error {kind.error!r}, got {outcome.error!r}"
    if outcome.counted != len(kind.items):
        return f"count_items gave {outcome.counted}, expected {len(kind.items)}"
    scored = sorted(i for i, r in outcome.items if r is None)
    if scored != sorted(i for i, r in kind.items if r is None):
        return f"scored {scored}, expected {sorted(i for i, r in kind.items if r is None)}"
    got = [(i, r) for i, r in outcome.items if r is not None]
    want = [(i, r) for i, r in kind.items if r is not None]
    if len(got) != len(want) or any(gi != wi or wr not in gr for (gi, gr), (wi, wr) in zip(got, want)):
        return f"rejected {got}, expected {want}"
    if kind.pixel is not None and (outcome.first_pixel is None or abs(outcome.first_pixel - kind.pixel) > 1e-4):
        return f"first pixel {outcome.first_pixel}, expected {kind.pixel}"
    return ""


# ---------------------------------------------------------------------------- writers


def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def grey(path: Path, array: np.ndarray = GREY) -> Path:
    return save(path, Image.fromarray(array))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width x height`` grey pixels, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def frames(path: Path) -> Path:
    images = [Image.fromarray(GREY // (i + 1)) for i in range(3)]
    return save(path, images[0], save_all=True, append_images=images[1:])


def folder(*writers: Callable[[Path], object]) -> Callable[[Path], Path]:
    """A folder batch ``work/batch`` made by ``writers`` (each gets the batch folder)."""
    def build(work: Path) -> Path:
        (work / "batch").mkdir()
        for write in writers:
            write(work / "batch")
        return work / "batch"
    return build


def csv_batch(rows: list[dict], *writers: Callable[[Path], object]) -> Callable[[Path], Path]:
    """``work/batch/list.csv`` with ``rows``; ``writers`` get the work folder."""
    def build(work: Path) -> Path:
        (work / "batch").mkdir()
        for write in writers:
            write(work)
        pd.DataFrame(rows).to_csv(work / "batch" / "list.csv", index=False)
        return work / "batch" / "list.csv"
    return build


def npz(compressed: bool = False, **arrays) -> Callable[[Path], Path]:
    def build(work: Path) -> Path:
        (np.savez_compressed if compressed else np.savez)(work / "batch.npz", **arrays)
        return work / "batch.npz"
    return build


def raw_file(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(work: Path) -> Path:
        (work / name).write_bytes(data)
        return work / name
    return build


def absolute_csv(work: Path) -> Path:
    return csv_batch([{"path": str(grey(work / "outside" / "x.png")), "id": "out"}])(work)


def damaged_npz(work: Path) -> Path:
    """A compressed npz whose headers are intact but whose x data is corrupt past its first bytes."""
    np.savez_compressed(work / "batch.npz", x=np.random.default_rng(1).integers(0, 256, (6, 28, 28), np.uint8))
    data = bytearray((work / "batch.npz").read_bytes())
    start = data.index(b"x.npy") + 1000  # well inside the (incompressible, so stored) data of x
    data[start:start + 40] = bytes(range(40))
    (work / "batch.npz").write_bytes(bytes(data))
    return work / "batch.npz"


def fortran_npz(work: Path) -> Path:
    np.savez(work / "batch.npz", x=np.asfortranarray(np.zeros((3, 28, 28), np.float32)))
    return work / "batch.npz"


def out_of_range() -> np.ndarray:
    x = np.full((3, 28, 28), 0.5, np.float32)
    x[1, 0, 0], x[2, 5, 5] = 1.5, -0.1
    return x


def not_finite() -> np.ndarray:
    x = np.full((3, 28, 28), 0.5, np.float32)
    x[0, 1, 1], x[2, 2, 2] = np.nan, np.inf
    return x


def object_array() -> np.ndarray:
    x = np.empty(2, dtype=object)
    x[0], x[1] = np.zeros((28, 28)), "not an image"
    return x


ODD_NAMES = ("ünï cødé 名前.png", "comma, \"quoted\" name.png", "new\nline.png", " leading space.png")
NON_UTF8 = os.fsdecode(b"bad\xff.png")

KINDS = (
    # folders: images
    Kind("good image", folder(lambda b: grey(b / "a.png")), (("a.png", None),), pixel=9 / 255),
    Kind("larger square image (resized)", folder(lambda b: grey(b / "a.png", np.kron(GREY, np.ones((2, 2), np.uint8)))),
         (("a.png", None),)),
    Kind("corrupt bytes", folder(lambda b: (b / "a.png").write_bytes(os.urandom(300))),
         (("a.png", "unreadable image"),)),
    Kind("truncated png", folder(lambda b: (b / "a.png").write_bytes(grey(b / "full.png", NOISE).read_bytes()[:400])),
         (("a.png", "unreadable image"), ("full.png", None))),
    Kind("zero-byte file", folder(lambda b: (b / "a.png").touch()), (("a.png", "empty file (0 bytes)"),)),
    Kind("not an image suffix", folder(lambda b: (b / "notes.txt").write_text("hi")),
         (("notes.txt", "not an image file (.txt)"),)),
    Kind("no suffix", folder(lambda b: (b / "README").write_text("hi")), (("README", "not an image file (no extension)"),)),
    Kind("jpeg named .png (content decides)", folder(lambda b: save(b / "a.png", Image.fromarray(GREY), format="JPEG")),
         (("a.png", None),)),
    Kind("wrong mode: RGB for a grey model",
         folder(lambda b: save(b / "a.png", Image.fromarray(np.stack([GREY, GREY // 2, GREY], -1)))),
         (("a.png", "wrong channel count: image has 3, expected 1"),)),
    Kind("grey stored as RGB", folder(lambda b: save(b / "a.png", Image.fromarray(GREY).convert("RGB"))),
         (("a.png", None),), pixel=9 / 255),
    Kind("16-bit grey (I;16, /65535)",
         folder(lambda b: save(b / "a.png", Image.fromarray(GREY.astype(np.uint16) * 100))),
         (("a.png", None),), pixel=900 / 65535),
    Kind("32-bit int TIFF (I)", folder(lambda b: save(b / "a.tif", Image.fromarray(GREY.astype(np.int32) * 4))),
         (("a.tif", None),), pixel=36 / 65535),
    Kind("float TIFF (F)", folder(lambda b: save(b / "a.tif", Image.fromarray(GREY.astype(np.float32) / 255))),
         (("a.tif", None),), pixel=9 / 255),
    Kind("bilevel (1)", folder(lambda b: save(b / "a.png", Image.fromarray(GREY).convert("1"))), (("a.png", None),)),
    Kind("palette (P, grey palette)", folder(lambda b: save(b / "a.png", Image.fromarray(GREY).convert("P"))),
         (("a.png", None),), pixel=9 / 255),
    Kind("grey with alpha (LA, alpha dropped)",
         folder(lambda b: save(b / "a.png", Image.fromarray(np.stack([GREY, np.zeros_like(GREY)], -1), "LA"))),
         (("a.png", None),), pixel=9 / 255),
    Kind("RGBA (alpha dropped)", folder(lambda b: save(b / "a.png", Image.fromarray(GREY).convert("RGBA"))),
         (("a.png", None),), pixel=9 / 255),
    Kind("CMYK TIFF (converted to RGB)", folder(lambda b: save(b / "a.tif", Image.fromarray(GREY).convert("CMYK"))),
         (("a.tif", None),), pixel=9 / 255),
    Kind("animated PNG", folder(lambda b: frames(b / "a.png")), (("a.png", "animated or multi-frame image"),)),
    Kind("multi-page TIFF", folder(lambda b: frames(b / "a.tif")), (("a.tif", "animated or multi-frame image"),)),
    Kind("huge (header 5000x5000)", folder(lambda b: png_header_only(b / "a.png", 5000, 5000)),
         (("a.png", "image too large (5000x5000 pixels"),)),
    Kind("decompression bomb (header 20000x20000)", folder(lambda b: png_header_only(b / "a.png", 20000, 20000)),
         (("a.png", "image too large"),)),
    Kind("far from square", folder(lambda b: grey(b / "a.png", np.zeros((28, 60), np.uint8))),
         (("a.png", "cannot be resized to 28x28 without distortion"),)),
    # folders: names and links
    Kind("unicode, spaces, commas, quotes, newlines in names",
         folder(*[lambda b, n=n: grey(b / n) for n in ODD_NAMES]), tuple((n, None) for n in sorted(ODD_NAMES))),
    Kind("non-UTF-8 file name", folder(lambda b: grey(b / NON_UTF8)), (("bad\\xff.png", None),)),
    Kind("hidden files and folders skipped",
         folder(lambda b: grey(b / "a.png"), lambda b: (b / ".DS_Store").write_text("x"), lambda b: grey(b / ".cache" / "c.png")),
         (("a.png", None),)),
    Kind("sub-folders (empty ones hold no items)",
         folder(lambda b: grey(b / "sub" / "b.png"), lambda b: grey(b / "a.png"), lambda b: (b / "empty").mkdir()),
         (("a.png", None), ("sub/b.png", None))),
    Kind("symlink inside the batch", folder(lambda b: grey(b / "a.png"), lambda b: (b / "link.png").symlink_to("a.png")),
         (("a.png", None), ("link.png", None))),
    Kind("symlink out of the batch", folder(lambda b: (b / "a.png").symlink_to(grey(b.parent / "outside" / "secret.png"))),
         (("a.png", "symlink leaves the batch folder"),)),
    Kind("symlinked folder out of the batch",
         folder(lambda b: (b / "sub").symlink_to(grey(b.parent / "outside" / "s.png").parent, target_is_directory=True)),
         (("sub", "symlink leaves the batch folder"),)),
    Kind("symlinked folder inside (not followed)",
         folder(lambda b: grey(b / "real" / "a.png"), lambda b: (b / "alias").symlink_to("real", target_is_directory=True)),
         (("alias", "symlink to a folder (not followed)"), ("real/a.png", None))),
    Kind("symlink loop", folder(lambda b: (b / "a.png").symlink_to("b.png"), lambda b: (b / "b.png").symlink_to("a.png")),
         (("a.png", "symlink loop"), ("b.png", "symlink loop"))),
    Kind("dangling symlink", folder(lambda b: (b / "a.png").symlink_to("gone.png")),
         (("a.png", "dangling symlink"),)),
    Kind("named pipe (FIFO)", folder(lambda b: os.mkfifo(b / "pipe.png")), (("pipe.png", "not a regular file"),)),
    # CSV
    Kind("CSV relative paths", csv_batch([{"path": "a.png"}, {"path": "sub/b.png"}],
                                         lambda w: grey(w / "batch" / "a.png"), lambda w: grey(w / "batch" / "sub" / "b.png")),
         (("a.png", None), ("sub/b.png", None))),
    Kind("CSV absolute path outside", absolute_csv, (("out", "path outside the CSV's folder"),)),
    Kind("CSV ../ path outside", csv_batch([{"path": "../outside/x.png"}], lambda w: grey(w / "outside" / "x.png")),
         (("../outside/x.png", "path outside the CSV's folder"),)),
    Kind("CSV path outside under allow_roots", csv_batch([{"path": "../outside/x.png"}], lambda w: grey(w / "outside" / "x.png")),
         (("../outside/x.png", None),), allow=("outside",)),
    Kind("CSV symlink inside pointing out",
         csv_batch([{"path": "link.png"}], lambda w: (w / "batch" / "link.png").symlink_to(grey(w / "outside" / "x.png"))),
         (("link.png", "path outside the CSV's folder"),)),
    Kind("CSV /etc/passwd", csv_batch([{"path": "/etc/passwd"}]), (("/etc/passwd", "path outside the CSV's folder"),)),
    Kind("CSV missing file and empty path", csv_batch([{"path": "gone.png", "id": "g"}, {"path": "", "id": "e"}]),
         (("g", "file not found"), ("e", "empty path"))),
    Kind("CSV path with a NUL byte", raw_file("batch.csv", b"path\na\x00b.png\n"),
         (("a\x00b.png", "invalid path (contains a NUL byte)"),)),
    Kind("CSV path too long", raw_file("batch.csv", b"path\n" + b"x" * 5000 + b".png\n"),
         (("x" * 5000 + ".png", "unreadable path (File name too long)"),)),
    Kind("CSV duplicate ids", csv_batch([{"path": "a.png", "id": "x"}, {"path": "a.png", "id": "y"},
                                         {"path": "a.png", "id": "x"}], lambda w: grey(w / "batch" / "a.png")),
         (("x", None), ("y", None), ("x", "duplicate id"))),
    Kind("CSV ids with commas, quotes, newlines, unicode",
         csv_batch([{"path": "a.png", "id": i} for i in ("a,b", 'say "hi"', "two\nlines", "ünï 名", " pad ")],
                   lambda w: grey(w / "batch" / "a.png")),
         tuple((i, None) for i in ("a,b", 'say "hi"', "two\nlines", "ünï 名", " pad "))),
    # npz
    Kind("npz uint8 (N, H, W)", npz(x=np.stack([GREY] * 2)), (("batch.npz#0", None), ("batch.npz#1", None)),
         pixel=9 / 255),
    Kind("npz compressed with string ids", npz(True, x=np.stack([GREY] * 2)[:, None], ids=np.array(["p", "q"])),
         (("p", None), ("q", None))),
    Kind("npz 16-bit (/65535)", npz(x=np.stack([GREY.astype(np.uint16) * 100])), (("batch.npz#0", None),),
         pixel=900 / 65535),
    Kind("npz int64 0..255 (/255)", npz(x=np.stack([GREY.astype(np.int64)])), (("batch.npz#0", None),), pixel=9 / 255),
    Kind("npz NaN and inf", npz(x=not_finite()),
         (("batch.npz#0", "contains NaN or infinite values"), ("batch.npz#1", None),
          ("batch.npz#2", "contains NaN or infinite values"))),
    Kind("npz values outside [0, 1]", npz(x=out_of_range()),
         (("batch.npz#0", None), ("batch.npz#1", "pixel values outside [0, 1]"),
          ("batch.npz#2", "pixel values outside [0, 1]"))),
    Kind("npz wrong dtype (bool)", npz(x=np.zeros((2, 28, 28), bool)),
         (("batch.npz#0", "wrong dtype bool"), ("batch.npz#1", "wrong dtype bool"))),
    Kind("npz wrong dtype (complex)", npz(x=np.zeros((1, 28, 28), complex)), (("batch.npz#0", "wrong dtype complex128"),)),
    Kind("npz RGB (N, H, W, 3) for a grey model", npz(x=np.zeros((2, 28, 28, 3), np.uint8)),
         (("batch.npz#0", "wrong channel count"), ("batch.npz#1", "wrong channel count"))),
    Kind("npz images too large", npz(x=np.zeros((1, 5000, 5000), np.uint8)),
         (("batch.npz#0", "image too large (5000x5000 pixels"),)),
    Kind("npz duplicate ids", npz(x=np.stack([GREY] * 3), ids=np.array([7, 8, 7])),
         (("7", None), ("8", None), ("7", "duplicate id"))),
    Kind("npz byte-string ids", npz(x=np.stack([GREY]), ids=np.array([b"caf\xc3\xa9"])), (("café", None),)),
    # whole batch refused
    Kind("missing path", lambda w: w / "nope", error="batch not found"),
    Kind("unsupported suffix", raw_file("batch.txt", b"x"), error="unsupported batch"),
    Kind("empty folder", folder(), error="empty batch folder"),
    Kind("folder of hidden files only", folder(lambda b: (b / ".x.png").write_text("x")), error="empty batch folder"),
    Kind("CSV zero bytes", raw_file("batch.csv", b""), error="not a readable CSV"),
    Kind("CSV without path column", raw_file("batch.csv", b"file\na.png\n"), error="needs a 'path' column"),
    Kind("CSV header only", raw_file("batch.csv", b"path\n"), error="lists no images"),
    Kind("CSV ragged rows", raw_file("batch.csv", b"path\na.png\nb.png,extra,more\n"), error="not a readable CSV"),
    Kind("npz not a zip", raw_file("batch.npz", b"hello"), error="not a readable .npz file"),
    Kind("npz truncated file", lambda w: raw_file("batch.npz", npz(x=np.stack([GREY] * 4))(w).read_bytes()[:900])(w),
         error="not a readable .npz file"),
    Kind("npz without x", npz(y=np.zeros(3)), error="missing array x"),
    Kind("npz object array x", npz(x=object_array()), error="x is an object array"),
    Kind("npz object array ids", npz(x=np.stack([GREY] * 2), ids=object_array()), error="ids is an object array"),
    Kind("npz x not 3- or 4-D", npz(x=np.zeros((4, 784))), error="x must hold images"),
    Kind("npz x with no images", npz(x=np.zeros((0, 28, 28))), error="x must hold images"),
    Kind("npz ids of the wrong length", npz(x=np.stack([GREY] * 2), ids=np.array(["a"])), error="one string or integer per image"),
    Kind("npz stored in Fortran order", fortran_npz, error="Fortran order"),
    Kind("npz damaged data (found when read)", damaged_npz, error="x.npy is damaged (Bad CRC-32", late=True),
)
