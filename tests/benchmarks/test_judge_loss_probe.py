from __future__ import annotations

import math

import torch

import gan_aug.train as train
from benchmarks import judge_loss_probe


def test_balanced_softmax_adds_the_log_class_shares_and_drops_the_weights():
    counts = torch.tensor([90.0, 10.0])
    weight = counts.sum() / (2 * counts)  # what train_judge passes
    logits, y = torch.tensor([[0.3, 0.1]]), torch.tensor([1])
    shares = (counts / counts.sum()).log()
    expected = torch.nn.functional.cross_entropy(logits + shares, y)
    assert math.isclose(judge_loss_probe._balanced_softmax(logits, y, weight).item(), expected.item(), rel_tol=1e-6)


def test_only_the_judge_trains_with_the_other_loss_and_everything_is_restored(monkeypatch):
    seen = []

    def fake_train_judge(*args, **kwargs):
        seen.append(torch.nn.functional.cross_entropy)
        return "judge"

    monkeypatch.setattr(train, "train_judge", fake_train_judge)
    original = train.train_judge
    with judge_loss_probe.judge_loss("balanced_softmax"):
        assert train.train_judge is not original
        assert train.train_judge() == "judge"
        assert torch.nn.functional.cross_entropy is judge_loss_probe._cross_entropy  # outside the judge: untouched
    assert seen == [judge_loss_probe._balanced_softmax]
    assert train.train_judge is original and torch.nn.functional.cross_entropy is judge_loss_probe._cross_entropy
    with judge_loss_probe.judge_loss("weighted"):
        assert train.train_judge is original
