"""The device a job uses: checked without torch, resolved once, explained in one line."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from pipelines.devices import autocast, check_device_spec, native_bf16, pick_device, resolve_device, to_device
from pipelines.errors import GanpipeError

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("text, expected", [("auto", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"),
                                            ("cuda:1", "cuda:1"), ("mps", "mps")])
def test_device_specs_are_checked_and_normalised(text, expected):
    assert check_device_spec(text) == expected


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cuda:-1", "", "cpu:0"])
def test_unknown_device_specs_name_the_choices(text):
    with pytest.raises(GanpipeError, match="use one of: auto, cpu, cuda, cuda:N, mps"):
        check_device_spec(text)


def test_checking_a_device_spec_does_not_import_torch():
    code = "import sys, pipelines.devices as d; d.check_device_spec('cuda:0'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_cpu_is_always_there_and_auto_says_why():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    device, why = pick_device("auto")
    assert why and device.type in {"cuda", "mps", "cpu"}
    if NO_CUDA and device.type == "cpu":
        assert "no CUDA GPU" in why


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_is_one_line():
    with pytest.raises(GanpipeError, match=r"--device cuda:0: no CUDA GPU is available .*use --device cpu or auto"):
        resolve_device("cuda:0")


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")
def test_a_gpu_index_out_of_range_is_one_line():
    with pytest.raises(GanpipeError, match="CUDA GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_cpu_keeps_float32_and_tensors_as_they_are():
    x = torch.ones(3)
    assert to_device(x, torch.device("cpu")) is x
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")
def test_cuda_batches_arrive_on_the_gpu_in_bf16_under_autocast():
    device = resolve_device("cuda")
    x = to_device(torch.ones(4, 4), device)
    assert x.device.type == "cuda"
    with autocast(device):
        assert (x @ x).dtype == (torch.bfloat16 if native_bf16(device) else torch.float32)


@pytest.mark.parametrize("capability, dtype", [((7, 0), torch.float32), ((7, 5), torch.float32),
                                               ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_bf16_autocast_only_where_the_gpu_has_it_natively(monkeypatch, capability, dtype):
    # a V100 (7.0) or T4 (7.5) emulates bf16 (torch.cuda.is_bf16_supported() still says yes): float32
    # there; the capability asked is that of the device given
    asked = []
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    with warnings.catch_warnings():  # no CUDA here: torch disables the context it builds, with a warning
        warnings.simplefilter("ignore")
        context = autocast(torch.device("cuda:1"))
    assert asked == [torch.device("cuda:1")]
    assert getattr(context, "fast_dtype", torch.float32) == dtype


def test_local_dask_workers_spread_over_several_gpus():
    from pipelines.devices import gpu_for_worker

    assert [gpu_for_worker(i, 2) for i in range(4)] == [0, 1, 0, 1]  # worker i of a local cluster
    assert gpu_for_worker("3", 4) == 3
    assert gpu_for_worker(0, 1) is None and gpu_for_worker(0, 0) is None  # nothing to spread
    assert gpu_for_worker("tcp://10.0.0.5:40001", 2) is None  # a remote worker keeps its own CUDA_VISIBLE_DEVICES


def test_outside_a_dask_worker_the_device_is_as_asked():
    from pipelines.devices import task_device

    assert [task_device(s) for s in ("auto", "cuda", "cpu", "cuda:1", "mps")] == ["auto", "cuda", "cpu", "cuda:1", "mps"]


def test_in_a_real_dask_worker_without_gpus_auto_stays_auto():
    from distributed import Client, LocalCluster

    from pipelines.devices import task_device

    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        # the worker is named 0: with two GPUs or more it takes cuda:0, otherwise "auto" stays
        assert client.submit(task_device, "auto").result() == ("auto" if _gpus() < 2 else "cuda:0")


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
