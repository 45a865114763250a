from __future__ import annotations

import json
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pipelines.errors import GanpipeError
from pipelines.tracking.safe_state import STATE_FILE, TENSORS_FILE, load_plain_tensors, load_state, save_state
from tests.conftest import write_code_pickle


def test_nested_state_round_trips_with_its_types(tmp_path):
    net = torch.nn.utils.spectral_norm(torch.nn.Linear(3, 2))
    state = {
        "weights": net.state_dict(),
        "channels_last": torch.rand(2, 3, 4, 4).contiguous(memory_format=torch.channels_last),
        "arrays": {"f32": np.arange(6, dtype=np.float32).reshape(2, 3), "i64": np.array([3, -1]),
                   "bool": np.array([True, False]), "names": np.array([["a", "bc"], ["d", "e"]]),
                   "empty": np.zeros((0, 4), np.float16)},
        "shape": (1, 8, 8),
        "counts": {3: 40, 7: 12},
        "floats": [0.5, float("inf"), float("nan"), np.float32(2.5)],
        "nested": [{"stage": "gan", "step": 2, "none": None, "flag": True}],
        "$dollar": "kept",
    }
    loaded = load_state(save_state(state, tmp_path / "s"))
    assert set(loaded["weights"]) == set(state["weights"]) == {"bias", "weight_orig", "weight_u", "weight_v"}
    for key, tensor in state["weights"].items():
        torch.testing.assert_close(loaded["weights"][key], tensor)
    fresh = torch.nn.utils.spectral_norm(torch.nn.Linear(3, 2))
    fresh.load_state_dict(loaded["weights"])  # needs the spectral-norm version in _metadata
    fresh.eval(), net.eval()
    x = torch.rand(4, 3)
    torch.testing.assert_close(fresh(x), net(x))
    assert loaded["weights"]._metadata == state["weights"]._metadata
    assert loaded["channels_last"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(loaded["channels_last"], state["channels_last"])
    for key, array in state["arrays"].items():
        assert isinstance(loaded["arrays"][key], np.ndarray) and loaded["arrays"][key].dtype == array.dtype, key
        np.testing.assert_array_equal(loaded["arrays"][key], array)
    assert loaded["shape"] == (1, 8, 8) and loaded["counts"] == {3: 40, 7: 12}
    assert loaded["floats"][:2] == [0.5, float("inf")] and np.isnan(loaded["floats"][2]) and loaded["floats"][3] == 2.5
    assert loaded["nested"] == state["nested"] and loaded["$dollar"] == "kept"
    assert isinstance(loaded["weights"], OrderedDict)


@pytest.mark.parametrize("value", [object(), np.array([{"a": 1}], dtype=object), lambda: 0])
def test_objects_that_are_not_plain_data_are_not_saved(tmp_path, value):
    with pytest.raises(TypeError, match="cannot be saved as plain data"):
        save_state({"x": [value]}, tmp_path)


@pytest.mark.parametrize("torch_format", [True, False], ids=["torch-zip", "bare-pickle"])
def test_a_tensors_file_with_code_in_a_pickle_is_refused_and_the_code_does_not_run(tmp_path, torch_format):
    folder = save_state({"w": torch.ones(2)}, tmp_path / "s")
    live = tmp_path / "live"
    probe = write_code_pickle(tmp_path / "probe.pt", live, torch_format)
    torch.load(probe, weights_only=False) if torch_format else pickle.loads(probe.read_bytes())
    assert live.is_file()  # the payload is real: loading it unsafely runs its code
    marker = tmp_path / "marker"
    write_code_pickle(folder / TENSORS_FILE, marker, torch_format)
    with pytest.raises(GanpipeError, match=r"refusing to load .*tensors\.pt: not plain tensors \(possible code in a pickle\)"):
        load_state(folder)
    assert not marker.exists()


def test_files_that_are_not_what_save_state_writes_are_refused(tmp_path):
    folder = save_state({"w": torch.ones(2), "a": np.arange(3)}, tmp_path / "s")
    document = json.loads((folder / STATE_FILE).read_text())

    def refused(text: str, match: str) -> None:
        (folder / STATE_FILE).write_text(text)
        with pytest.raises(GanpipeError, match=match):
            load_state(folder)

    refused("{not json", r"refusing to load .*state\.json")
    refused(json.dumps({**document, "format": 99}), "format 99")
    refused(json.dumps({**document, "state": {"w": {"$tensor": "missing"}}}), r"refusing to load .*state\.json")
    refused(json.dumps({**document, "state": {"a": {"$ndarray": "state/a", "dtype": "|O"}}}), "unexpected array dtype")
    refused(json.dumps({**document, "state": {"a": {"$strings": [[1]], "dtype": "|O", "shape": [1]}}}), "unexpected array dtype")
    torch.save([torch.ones(1)], folder / TENSORS_FILE)
    with pytest.raises(GanpipeError, match="not a flat dict of tensors"):
        load_plain_tensors(folder / TENSORS_FILE)
    (folder / TENSORS_FILE).write_bytes(b"garbage")
    with pytest.raises(GanpipeError, match=r"refusing to load .*tensors\.pt"):
        load_state(folder)
    (folder / TENSORS_FILE).unlink()
    with pytest.raises(GanpipeError, match=r"refusing to load .*tensors\.pt: not a tensors file"):
        load_state(folder)
