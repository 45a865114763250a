"""The usefulness probe (benchmarks.usefulness_probe): its GAN is kept and reused, and each check reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import usefulness_probe

TINY = '{"steps": 20, "autoencoder_steps": 10, "judge_steps": 20}'


def test_border_colours_and_nearest_distance():
    x = np.zeros((2, 3, 4, 4), np.float32)
    x[1] = 1.0
    x[1, :, 1:3, 1:3] = 0.0  # the centre does not count
    assert np.allclose(usefulness_probe.border_colours(x), [[0, 0, 0], [1, 1, 1]])
    anchors = np.array([[0.0, 0.0, 0.0]])
    assert usefulness_probe.nearest_distance(np.array([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]]), anchors) == 2.5


def test_the_probe_keeps_its_gan_and_reports_every_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(usefulness_probe, "KEPT", tmp_path)
    fits = []
    real_trained_gan = usefulness_probe.trained_gan

    def counting(data, seed, overrides, train, folder=tmp_path):
        fits.append(len(list(folder.glob("*.pt"))))
        return real_trained_gan(data, seed, overrides, train, folder)

    monkeypatch.setattr(usefulness_probe, "trained_gan", counting)
    sheet = tmp_path / "sheet.png"
    assert usefulness_probe.main(["digits", "0", TINY, "--checks", "shortcut", "--sheet", str(sheet)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert sheet.is_file() and len(list(tmp_path.glob("gan-digits-seed0-*.pt"))) == 1
    shortcut = first["shortcut"]
    assert 0 <= shortcut["real_vs_synthetic_accuracy"] <= 1
    assert set(shortcut["border_colour_distance_to_own_training_images"]) == {"3", "8"}
    assert usefulness_probe.main(["digits", "0", TINY, "--checks", "quality"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert fits == [0, 1]  # the second run found the first one's GAN
    assert second["gan_seconds"] == first["gan_seconds"]
    quality = second["quality"]
    assert len(quality["uncut_judge_agreement"]) == len(quality["cas_minority"]) == 2
    assert set(quality["taught_recall"]) == {"gan", "smote", "albumentations"}


def test_an_unknown_check_is_one_line_of_usage(capsys):
    with pytest.raises(SystemExit):
        usefulness_probe.main(["digits", "0", "{}", "--checks", "speed"])
    assert "unknown check(s): speed" in capsys.readouterr().err
