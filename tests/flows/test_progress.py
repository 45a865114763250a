"""The long phases say how far they are and how long is left: the GANs that ``compare`` trains for its
GAN arms (per seed) and both stages of the detector, in the run's log."""

from __future__ import annotations

import logging
import re


from flows.compare import train_gan_for_arms
from flows.detector import fit_detector
from flows.params import TrainDetectorParams
from pipelines.data.sources import load_dataset

TINY_GAN = {"width": 4, "z_dim": 8, "batch_size": 16, "judge_steps": 2, "novelty_draws": 1, "autoencoder_steps": 4}
BAR = r"\[[#-]+\] +\d+%  (\d+)/(\d+)  \S+ elapsed"


def lines_of(caplog, pattern: str) -> list[re.Match]:
    return [m for m in (re.search(pattern, r.getMessage()) for r in caplog.records) if m]


def test_compares_gan_reports_its_seed_steps_and_eta_until_done(caplog):
    with caplog.at_level(logging.INFO, logger="ganpipe"):
        train_gan_for_arms(load_dataset("digits"), seed=3, steps=20, device="cpu", settings=TINY_GAN)
    autoencoder = lines_of(caplog, r"^seed 3: GAN autoencoder steps " + BAR)
    assert autoencoder and autoencoder[-1].group(1) == autoencoder[-1].group(2) == "4"  # class latents first
    steps = lines_of(caplog, r"^seed 3: GAN steps " + BAR + "(.*)$")
    assert len(steps) >= 3, [r.getMessage() for r in caplog.records]
    assert [int(m.group(2)) for m in steps] == [20] * len(steps)
    done = [int(m.group(1)) for m in steps]
    assert done == sorted(done) and done[-1] == 20 and steps[-1].group(3) == ", done"
    assert any(m.group(3).startswith(", eta ") for m in steps[:-1])  # a time left while it runs


def test_the_detectors_two_stages_report_steps_and_eta_on_one_bar(caplog, tmp_path):
    data = load_dataset("digits")
    x = data.x[data.y == 0]
    params = TrainDetectorParams(data="digits", normal="0", epochs=60, out=str(tmp_path), device="cpu")
    with caplog.at_level(logging.INFO, logger="ganpipe"):
        fit_detector.fn(x[:100], x[100:140], params)
    stages = {stage: lines_of(caplog, rf"^f-AnoGAN {stage} +" + BAR + "(.*)$") for stage in ("gan", "encoder")}
    log = [r.getMessage() for r in caplog.records]
    assert all(len(lines) >= 2 for lines in stages.values()), log
    bar = [m for lines in stages.values() for m in lines]  # stage 1, then stage 2, on one bar of all the steps
    done = [int(m.group(1)) for m in bar]
    assert done == sorted(done) and len({m.group(2) for m in bar}) == 1
    assert done[-1] == int(bar[-1].group(2)) and bar[-1].group(3) == ", done"
    assert all(m.group(3).startswith(", eta ") for m in bar[:-1])
