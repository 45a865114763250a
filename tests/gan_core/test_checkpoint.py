from __future__ import annotations

import logging

import torch

from gan_core.checkpoint import resume, save_checkpoint
from tests.conftest import write_code_pickle


def _modules():
    net = torch.nn.Linear(2, 2)
    return {"net": net, "opt": torch.optim.Adam(net.parameters())}


def test_a_checkpoint_of_plain_state_resumes(tmp_path):
    modules, rng = _modules(), torch.Generator().manual_seed(3)
    modules["net"](torch.ones(1, 2)).sum().backward()
    modules["opt"].step()
    save_checkpoint(tmp_path / "c.pt", {"step": 5, "config": {"lr": 0.1, "betas": [0.0, 0.9]}, "fingerprint": "d",
                                        "history": [{"step": 5, "loss": 0.5}], "seconds": 1.5, "rng": rng.get_state(),
                                        **{k: m.state_dict() for k, m in modules.items()}})
    fresh, fresh_rng = _modules(), torch.Generator()
    assert resume(tmp_path / "c.pt", {"lr": 0.1, "betas": [0.0, 0.9]}, "d", fresh, fresh_rng, 10) == (5, [{"step": 5, "loss": 0.5}], 1.5)
    torch.testing.assert_close(fresh["net"].weight, modules["net"].weight)
    assert fresh["opt"].state_dict()["state"][0]["step"] == 1
    assert torch.equal(fresh_rng.get_state(), rng.get_state())


def test_a_checkpoint_with_code_in_a_pickle_is_ignored_and_the_code_does_not_run(tmp_path, caplog):
    marker = tmp_path / "marker"
    path = write_code_pickle(tmp_path / "c.pt", marker, torch_format=True)
    with caplog.at_level(logging.WARNING, logger="gan_core.checkpoint"):
        assert resume(path, {}, "d", _modules(), torch.Generator(), 10) == (0, [], 0.0)
    assert "ignoring checkpoint" in caplog.text and "possible code in a pickle" in caplog.text
    assert not marker.exists()
