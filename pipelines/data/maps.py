"""Anomaly maps written beside a batch's ``scores.csv``, chunk by chunk (memory stays at one chunk).

For every item it is given (the flagged ones, or all), :class:`MapWriter` writes
``maps/<item>_<crc>.png`` (the item id made safe for a file name, and a checksum of it): the image and its map as a heat overlay, side by side, enlarged; and
keeps the map itself for ``maps.npz`` (``maps``: ``(M, H, W)`` float16, ``item_ids``: ``(M,)``),
which :meth:`MapWriter.finish` writes by streaming the parts into the archive, so a batch of any size
needs no more memory than one chunk. A resumed batch rewrites the files of the chunks it scores
again. The colour scale is the same for every item: it saturates at ``3 x`` the map's mean value on
the detector's normal training images (``scale``).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

PARTS = ".maps.partial"
SATURATION = 3.0  # the overlay's colour saturates at this multiple of the normal mean map value


def heat(maps: np.ndarray, scale: float) -> np.ndarray:
    """``(N, H, W)`` maps -> ``(N, 3, H, W)`` colours in [0, 1] (matplotlib's inferno), 0 at 0,
    full at ``SATURATION * scale``."""
    import matplotlib

    values = np.clip(maps / max(SATURATION * scale, 1e-12), 0, 1)
    return matplotlib.colormaps["inferno"](values)[..., :3].transpose(0, 3, 1, 2).astype(np.float32)


def overlay(images: np.ndarray, maps: np.ndarray, scale: float) -> np.ndarray:
    """Images ``(N, C, H, W)`` in [0, 1] with their maps over them as heat, half and half: ``(N, 3, H, W)``."""
    colour = np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images
    return 0.5 * colour + 0.5 * heat(maps, scale)


def side_by_side(left: np.ndarray, right: np.ndarray, min_side: int = 96, gap: int = 4) -> np.ndarray:
    """Two ``(3, H, W)`` pictures in [0, 1] as one ``(h, 2w + gap, 3)`` uint8 image, each enlarged
    (nearest neighbour, a whole factor) to at least ``min_side`` pixels, a white gap between."""
    factor = max(1, int(np.ceil(min_side / max(left.shape[1:]))))
    big = [np.clip(p, 0, 1).repeat(factor, axis=1).repeat(factor, axis=2).transpose(1, 2, 0) for p in (left, right)]
    white = np.ones((big[0].shape[0], gap, 3), np.float32)
    return (np.concatenate([big[0], white, big[1]], axis=1) * 255).round().astype(np.uint8)


def png_name(item_id: str) -> str:
    """The overlay's file name for ``item_id``: safe characters, at most 80 of them, and a checksum
    of the id (two ids that read alike stay apart)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id)[-80:] or "item"
    return f"{safe}_{zlib.crc32(item_id.encode('utf-8', 'surrogateescape')):08x}.png"


class MapWriter:
    """Maps of one batch's items, written as they are computed (see the module doc)."""

    def __init__(self, folder: str | Path, scale: float, min_side: int = 96) -> None:
        self.folder = Path(folder)
        self.pngs, self.parts = self.folder / "maps", self.folder / PARTS
        self.pngs.mkdir(parents=True, exist_ok=True)
        self.parts.mkdir(exist_ok=True)
        self.scale, self.min_side = scale, min_side

    def add(self, item_ids: Sequence[str], images: np.ndarray, maps: np.ndarray, end: int) -> None:
        """Items of one chunk, their images ``(M, C, H, W)`` and maps ``(M, H, W)``; ``end``: the chunk's end."""
        if len(item_ids):
            shown = overlay(images, maps, self.scale)
            colour = np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images
            for item_id, image, over in zip(item_ids, colour, shown):
                Image.fromarray(side_by_side(image, over, self.min_side)).save(self.pngs / png_name(str(item_id)))
        np.savez(self.parts / f"{end:012d}.npz", maps=maps.astype(np.float16),
                 item_ids=np.asarray([str(i) for i in item_ids], dtype=str))

    def finish(self) -> int:
        """Write ``maps.npz`` from the chunks' parts (streamed), drop the parts; -> the number of maps."""
        parts = sorted(self.parts.glob("*.npz"))
        shapes, ids = [], []
        for part in parts:
            with np.load(part) as data:
                shapes.append(data["maps"].shape)
                ids.extend(data["item_ids"].tolist())
        n = sum(s[0] for s in shapes)
        side = next((s[1:] for s in shapes if s[0]), (0, 0))
        target, tmp = self.folder / "maps.npz", self.folder / "maps.npz.tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            with archive.open("maps.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_2_0(
                    out, {"descr": np.dtype(np.float16).str, "fortran_order": False, "shape": (n, *side)})
                for part in parts:
                    with np.load(part) as data:
                        out.write(np.ascontiguousarray(data["maps"]).tobytes())
            with archive.open("item_ids.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asarray(ids, dtype=str))
        tmp.replace(target)
        for part in parts:
            part.unlink()
        self.parts.rmdir()
        return n
