"""Deterministic stratified train/val/test splits and imbalance that only touches training data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from pipelines.data import ImageDataset
from pipelines.errors import GanpipeError


@dataclass(frozen=True)
class Splits:
    """Three disjoint parts of one dataset. ``val`` is for model selection and calibration,
    ``test`` only for the final report."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset


def stratified_split(
    ds: ImageDataset, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.3
) -> Splits:
    """Split every class in the same proportions; the same seed always gives the same split.

    Each class keeps at least one item in every part, so a class needs 3 items or more.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise GanpipeError(
            f"val and test fractions must be in (0, 1) and sum below 1, got {val_fraction} and {test_fraction}"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(ds.class_names):
        members = np.flatnonzero(ds.y == label)
        if len(members) < 3:
            raise GanpipeError(
                f"class {name!r} in {ds.source} has {len(members)} item(s); at least 3 are needed "
                "to split it into train, val and test"
            )
        members = rng.permutation(members)
        n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 2)
        n_val = min(max(1, round(len(members) * val_fraction)), len(members) - n_test - 1)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return Splits(**{key: ds.subset(np.sort(np.concatenate(idx))) for key, idx in parts.items()})


def parse_class_counts(text: str) -> dict[str, int]:
    """``"2:10,5:10"`` -> ``{"2": 10, "5": 10}``; a malformed entry -> GanpipeError naming it."""
    counts: dict[str, int] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, number = entry.rpartition(":")
        if not sep or not name or not number.strip().isdigit():
            raise GanpipeError(f"bad class count {entry!r}; expected CLASS:N, e.g. 2:10")
        if name.strip() in counts:
            raise GanpipeError(f"class {name.strip()!r} is given twice in {text!r}")
        counts[name.strip()] = int(number)
    if not counts:
        raise GanpipeError(f"no class counts in {text!r}; expected CLASS:N[,CLASS:N...]")
    return counts


def make_imbalanced(splits: Splits, minority: Mapping[str | int, int], seed: int = 0) -> Splits:
    """Keep only ``n`` training items of each class in ``minority`` (by name or index).

    Only training items are removed; val and test are returned untouched. Which items stay is
    decided by ``seed``.
    """
    train = splits.train
    rng = np.random.default_rng(seed)
    keep = np.ones(len(train), dtype=bool)
    for key, n in minority.items():
        label = train.class_index(key)
        name = train.class_names[label]
        members = np.flatnonzero(train.y == label)
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise GanpipeError(f"minority count for class {name!r} must be a whole number >= 1, got {n!r}")
        if n > len(members):
            raise GanpipeError(
                f"class {name!r} has {len(members)} training items; cannot keep {n} (asked for {key}:{n})"
            )
        dropped = rng.permutation(members)[n:]
        keep[dropped] = False
    return Splits(train=train.subset(np.flatnonzero(keep)), val=splits.val, test=splits.test)
