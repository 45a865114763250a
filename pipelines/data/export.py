"""Synthetic datasets on disk: arrays for programs, PNGs for people, a manifest tying them together."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image


def export_synthetic(out: Path, x: np.ndarray, y: np.ndarray, class_names: Sequence[str], seed: int,
                     model_version: str) -> pd.DataFrame:
    """``out/synthetic.npz`` (x, y, class_names), ``out/images/<class>/*.png`` and ``out/manifest.csv``
    (one row per image: file, class, label, index, seed, model_version) for ``x: (N, C, H, W)`` in [0, 1]."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "images", ignore_errors=True)  # images of an earlier run would not match the manifest
    np.savez_compressed(out / "synthetic.npz", x=x, y=y, class_names=np.array(class_names))
    records = []
    for i, (image, label) in enumerate(zip(x, y)):
        name = class_names[label]
        folder = out / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}_{i:06d}.png"
        pixels = (image * 255).round().astype(np.uint8)
        Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)).save(path)
        records.append({"file": str(path.relative_to(out)), "class": name, "label": int(label), "index": i,
                        "seed": seed, "model_version": model_version})
    manifest = pd.DataFrame(records, columns=["file", "class", "label", "index", "seed", "model_version"])
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest
