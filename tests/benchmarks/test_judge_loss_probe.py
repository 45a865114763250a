from __future__ import annotations

import json

from benchmarks import judge_loss_probe


def test_the_gan_probe_gets_the_loss_as_a_setting_beside_the_others():
    data, seed, config, arms = judge_loss_probe.gan_arguments(
        ["gan", "digits", "1", "balanced_softmax", '{"steps": 5}', "gan,ros"])
    assert (data, seed, arms) == ("digits", "1", "gan,ros")
    assert json.loads(config) == {"steps": 5, "judge_loss": "balanced_softmax"}
    assert json.loads(judge_loss_probe.gan_arguments(["gan", "digits", "0", "weighted"])[2]) == {"judge_loss": "weighted"}


def test_an_unknown_loss_prints_the_usage(capsys):
    assert judge_loss_probe.main(["gan", "digits", "0", "focal"]) == 2
    assert "judge_loss_probe judge" in capsys.readouterr().out
