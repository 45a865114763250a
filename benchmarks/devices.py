"""Speed per image size and device (issue 20): GAN steps per second, detector seconds per step of
each stage, and scoring images per second, at 32, 64, 128 and 256 px on colour crops
(:func:`benchmarks.colour.photo_crops`), on the CPU and, when there is one, on the CUDA GPU beside
it with the ratio. Without CUDA the section says so and the CPU rows still run the same code path
(``device="cpu"`` through the estimators' device option).

Rates are measured over the later part of each run (the first reports include warm-up); the
default-length estimates multiply the measured per-step times by the default step counts, and say so.

    python -m benchmarks.run --only devices            # about 15 minutes on 2 cores
    python -m benchmarks.run --only devices --quick    # 32 and 64 px, fewer steps
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from anomaly import GANAnomalyDetector
from anomaly.train import FAnoGANConfig
from benchmarks.colour import photo_crops
from gan_aug import GANConfig, GANOverSampler
from gan_core.config import batch_for_side
from pipelines.devices import device_name
from pipelines.text import markdown_table

SIZES = (32, 64, 128, 256)


def _rate(marks: list[tuple[int, float]]) -> float:
    """Seconds per step between the first report past a quarter of the run and the last one."""
    last_step = marks[-1][0]
    start = next(m for m in marks if m[0] >= last_step / 4)
    if start[0] == last_step:
        start = marks[0]
    return (marks[-1][1] - start[1]) / max(1, marks[-1][0] - start[0])


def measure(side: int, device: str, gan_steps: int, detector_steps: int, score_items: int) -> dict:
    data = photo_crops(side, per_class=40)
    gan_marks: list[tuple[int, float]] = []
    sampler = GANOverSampler(steps=gan_steps, judge_steps=0, random_state=0, device=device,
                             progress=lambda step, total, metrics: gan_marks.append((step, time.perf_counter())))
    sampler.fit(data.x, data.y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    stage_marks: dict[str, list[tuple[int, float]]] = {}

    def detector_progress(stage: str, step: int, total: int, record: dict) -> None:
        stage_marks.setdefault(stage, []).append((step, time.perf_counter()))

    normal = data.x[data.y == 0]
    detector = GANAnomalyDetector(gan_steps=detector_steps, encoder_steps=detector_steps, random_state=0,
                                  device=device, progress=detector_progress).fit(normal)
    batch = np.concatenate([data.x] * int(np.ceil(score_items / len(data.x))))[:score_items]
    detector.score_samples(batch[:64])  # warm-up
    started = time.perf_counter()
    detector.score_samples(batch)
    scoring = time.perf_counter() - started
    gan_step = _rate(gan_marks)
    stages = {stage: _rate(marks) for stage, marks in stage_marks.items()}
    stage_seconds = list(stages.values())
    defaults = FAnoGANConfig()
    return {"side": side, "device": device, "batch": batch_for_side(GANConfig.batch_size, side),
            "GAN steps/s": 1.0 / gan_step,
            "GAN s, default 1500 steps (est.)": gan_step * GANConfig.steps,
            "detector s/step, stage 1": stage_seconds[0],
            "detector s/step, stage 2": stage_seconds[-1],
            "detector s, default steps (est.)": stage_seconds[0] * defaults.gan_steps + stage_seconds[-1] * defaults.encoder_steps,
            "scoring images/s": score_items / scoring}


SPEEDS = {"GAN steps/s": "GAN steps", "detector s, default steps (est.)": "detector training, one class",
          "scoring images/s": "scoring"}  # what each ratio compares; a column in seconds is inverted


def speed_ratios(table: pd.DataFrame, fast: str = "cuda", slow: str = "cpu") -> pd.DataFrame:
    """How many times faster ``fast`` is than ``slow`` per side: GAN steps per second, detector
    training seconds per class (at the default steps) and scoring images per second."""
    a, b = (table[table.device == d].set_index("side") for d in (fast, slow))
    ratios = {"side": a.index}
    for column, label in SPEEDS.items():
        ratio = b[column] / a[column] if column.startswith("detector s") else a[column] / b[column]
        ratios[label] = ratio.reindex(a.index).round(1).to_numpy()
    return pd.DataFrame(ratios)


def run(quick: bool = False) -> str:
    sizes, gan_steps, detector_steps, items = ((32, 64), 20, 100, 512) if quick else (SIZES, 40, 100, 1024)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for side in sizes:
            started = time.perf_counter()
            rows.append(measure(side, device, gan_steps, detector_steps, items))
            print(f"[bench] devices {device} {side} px: {time.perf_counter() - started:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    lines = [
        "## Speed per image size and device (issue 20)\n",
        f"Colour crops (`photo-crops`, 8 classes of 40) at each side; conditional GAN with default settings but no "
        f"judge ({gan_steps} steps timed), f-AnoGAN detector on one class ({detector_steps} steps per stage timed), "
        f"scoring {items} images (every critic-feature score and the reconstruction scores). Per-step rates "
        "are measured over the later part of each run; the default-length columns multiply them by the default "
        f"step counts (GAN {GANConfig.steps}; detector {FAnoGANConfig().gan_steps} + {FAnoGANConfig().encoder_steps}). "
        "Above 64 px the batch shrinks (column `batch`) and the widest layer stays as at 64 px.\n",
        f"Devices: {', '.join(device_name(torch.device(d)) for d in devices)}.",
    ]
    if len(devices) == 1:
        lines.append("No CUDA GPU on this machine: only the CPU rows ran, through the same `device` option and code "
                     "path a GPU run takes; the GPU/CPU ratio is not measured.")
    else:
        lines.append("GPU / CPU speed ratio per side (aim: >= 10x):\n\n" + markdown_table(speed_ratios(table)))
    return "\n".join(lines) + "\n\n" + markdown_table(table)
