"""The text a user writes for data and classes, parsed (no numpy, no image code: the command line
checks it at start, before any data is read).

- data sources: ``digits``, ``mnist5k``, ``folder:PATH``, ``npz:PATH``;
- class lists: ``"2:10, 5 ,scratch:3"`` (a class and how many training items to keep);
- count lists: ``"5,10,20,50"``.

Every mistake raises :class:`~pipelines.errors.GanpipeError` with one line naming the entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pipelines.errors import GanpipeError

DATA_KINDS = ("digits", "mnist5k", "folder:PATH", "npz:PATH")
# the image sides ganpipe resizes to and its GANs build networks for (pixels, square images)
MIN_SIDE, MAX_SIDE = 8, 256


def check_gan_side(height: int, width: int, source: str) -> None:
    """Raise unless ``height x width`` is a square image the GANs build networks for."""
    if height != width:
        raise GanpipeError(f"{source}: images must be square for the GAN, got {height}x{width}; pass --image-size")
    if not MIN_SIDE <= height <= MAX_SIDE:
        raise GanpipeError(f"{source}: the GAN handles {MIN_SIDE}x{MIN_SIDE} to {MAX_SIDE}x{MAX_SIDE} images, got "
                           f"{height}x{width}; pass --image-size")


def check_data_spec(spec: str) -> tuple[str, str]:
    """``"folder:/data/parts"`` -> ``("folder", "/data/parts")``; an unknown kind, or a path that is
    missing or of the wrong kind (a file for ``folder:``), raises. Only the path is looked at."""
    kind, _, arg = spec.strip().partition(":")
    if kind in ("digits", "mnist5k") and not arg:
        return kind, arg
    if kind in ("folder", "npz") and arg.strip():
        path = Path(arg).expanduser()
        if not path.exists():
            raise GanpipeError(f"{'data folder' if kind == 'folder' else 'npz file'} not found: {path}")
        if kind == "folder" and not path.is_dir():
            raise GanpipeError(f"not a folder: {path} (folder:PATH names a folder with one sub-folder per class)")
        if kind == "npz" and path.is_dir():
            raise GanpipeError(f"{path} is a folder; use folder:{arg} for a folder of images")
        return kind, arg
    if kind in ("folder", "npz"):
        raise GanpipeError(f"{spec!r} names no path; use {kind}:PATH")
    raise GanpipeError(f"unknown data source {spec!r}; use one of: {', '.join(DATA_KINDS)}")


def check_batch_path(path: str) -> None:
    """A batch to score must exist (a folder, an .npz or a .csv); what is inside is read later."""
    if not Path(path).expanduser().exists():
        raise GanpipeError(f"batch not found: {Path(path).expanduser()}")


def check_folder_path(path: str) -> None:
    """A folder ganpipe will create if needed: it must not be an existing file."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise GanpipeError(f"{folder} is not a folder")


def parse_class_spec(text: str, counts: Literal["required", "optional", "none"] = "optional") -> dict[str, int | None]:
    """The classes a user names: ``"2:10, 5 ,scratch:3"`` -> ``{"2": 10, "5": None, "scratch": 3}``.

    ``counts="required"``: every entry is ``CLASS:N``; ``"optional"``: ``CLASS`` or ``CLASS:N`` (None
    keeps every item); ``"none"``: plain class names. A malformed, repeated or missing entry ->
    GanpipeError naming it.
    """
    form = {"required": "CLASS:N", "optional": "CLASS[:N]", "none": "CLASS"}[counts]
    result: dict[str, int | None] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, number = entry.rpartition(":")
        if counts != "none" and sep:
            if not number.strip().isdigit():
                raise GanpipeError(f"bad count {number.strip()!r} in {entry!r}; expected {form} with N a whole "
                                   "number, e.g. 2:10")
            key, count = name.strip(), int(number)
        elif counts == "required":
            raise GanpipeError(f"bad class count {entry!r}; expected CLASS:N, e.g. 2:10")
        else:
            key, count = entry, None
        if not key:
            raise GanpipeError(f"bad class entry {entry!r}; expected {form}")
        if key in result:
            raise GanpipeError(f"class {key!r} is given twice in {text!r}")
        result[key] = count
    if not result:
        raise GanpipeError(f"no classes given in {text!r}; expected {form}[,{form}...]")
    return result


def parse_counts(text: str) -> list[int]:
    """``"5,10"`` -> ``[5, 10]`` (sorted, each once); anything but whole numbers >= 1 raises."""
    entries = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in entries if not c.isdigit() or int(c) < 1]
    if bad or not entries:
        raise GanpipeError(f"bad counts {text!r}{f' ({bad[0]!r})' if bad else ''}; expected whole numbers >= 1 "
                           "like 5,10,20,50")
    return sorted({int(c) for c in entries})
