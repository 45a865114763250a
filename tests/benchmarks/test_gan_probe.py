"""The GAN probe's settings and its oracle-judge diagnostic (benchmarks.gan_probe)."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import gan_probe
from gan_aug import train
from gan_aug.config import GANConfig
from pipelines.data.splits import stratified_split


def test_the_colour_and_size_controls_cut_the_same_classes_as_colour_mnist_64():
    cut = gan_probe.COLOUR["colour-mnist-64"][2]
    assert gan_probe.COLOUR["colour-mnist-32"] == ("colour-mnist", 32, cut)
    assert gan_probe.COLOUR["grey-mnist-64"] == ("grey-mnist", 64, cut)


def test_the_oracle_judge_trains_on_the_uncut_split_not_on_the_data_given(monkeypatch):
    dataset, splits, minority_idx, _ = gan_probe.load_setting("digits", 0)
    seen = {}

    def record(x, y, n_classes, config, device, *args, **kwargs):
        seen["x"], seen["y"] = x, y
        return "judge"

    monkeypatch.setattr(train, "train_judge", record)
    gan_probe.use_uncut_judge(dataset, 0)  # wraps the recording function in place of the real one
    given_x = torch.from_numpy(splits.train.x) * 2 - 1
    assert train.train_judge(given_x, torch.from_numpy(splits.train.y), 10, GANConfig(), "cpu") == "judge"
    uncut = stratified_split(dataset, seed=0).train
    assert len(seen["y"]) == len(uncut.y) > len(splits.train.y)  # the cut classes have all their images
    assert np.array_equal(seen["y"].numpy(), uncut.y)
    assert torch.equal(seen["x"], torch.from_numpy(uncut.x) * 2.0 - 1.0)  # in the judge's [-1, 1]
    for k in minority_idx:
        assert (seen["y"] == k).sum() > (torch.from_numpy(splits.train.y) == k).sum()
