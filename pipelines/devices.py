"""Where models train and score: one device, picked once at the edge and passed down as a plain value.

``"auto"`` picks CUDA, then Apple's MPS, then the CPU (as Lightning's ``accelerator="auto"`` does);
``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` ask for one. :func:`check_device_spec` checks the
text without importing torch (the command line checks it at start); :func:`resolve_device` turns it
into a ``torch.device`` and says in one line when the asked-for device is not there.

Random draws stay on the CPU: every training loop draws from a CPU ``torch.Generator`` of its own
and moves the draws to the device, so a seed gives the same draws on every device and a CUDA run
differs from a CPU run only by floating-point order (and bf16 autocast). State is saved from the CPU
and loaded with ``map_location="cpu"``: a model trained on a GPU loads on a host without one.

Imports torch only inside functions; both GAN families may import this module (like ``errors`` and
``stopping``); never Prefect, MLflow or the rest of ``pipelines``.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pipelines.errors import GanpipeError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DEVICE_HELP = "where models train and score: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
_SPEC = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def check_device_spec(spec: str) -> str:
    """``" CUDA:1 "`` -> ``"cuda:1"``; anything that is not one of :data:`DEVICES` raises (no torch)."""
    text = str(spec).strip().lower()
    if not _SPEC.match(text):
        raise GanpipeError(f"unknown device {spec!r}; use one of: {', '.join(DEVICES)}")
    return text


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(spec: str | Any = "auto") -> tuple[torch.device, str]:
    """``(device, why)``: the device ``spec`` names (a string or a ``torch.device``) and the reason it
    was chosen, e.g. ``(device('cpu'), "no CUDA GPU and no Apple MPS")``. A device that is
    asked for but not there raises one line saying so."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = check_device_spec(spec)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device()), \
                f"{torch.cuda.device_count()} CUDA GPU(s), using the current one"
        if _mps_available(torch):
            return torch.device("mps"), "no CUDA GPU, Apple MPS is available"
        return torch.device("cpu"), "no CUDA GPU and no Apple MPS"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            built = "this torch has no CUDA support" if torch.version.cuda is None else \
                f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU"
            raise GanpipeError(f"--device {text}: no CUDA GPU is available ({built}); use --device cpu or auto")
        index = int(text.partition(":")[2] or torch.cuda.current_device())
        if index >= torch.cuda.device_count():
            raise GanpipeError(f"--device {text}: there are {torch.cuda.device_count()} CUDA GPU(s) "
                               f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
        return torch.device("cuda", index), "asked for"
    if text == "mps" and not _mps_available(torch):
        raise GanpipeError("--device mps: Apple MPS is not available on this machine; use --device cpu or auto")
    return torch.device(text), "asked for"


def resolve_device(spec: str | Any = "auto") -> torch.device:
    """The ``torch.device`` of ``spec`` (see :func:`pick_device`)."""
    return pick_device(spec)[0]


def device_name(device: torch.device) -> str:
    """A readable name: ``"cpu"``, ``"cuda:0 (NVIDIA A100-SXM4-40GB)"``, ``"mps"``."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA GPU ``device`` computes in bf16 natively: compute capability 8.0 or later
    (Ampere, Ada, Hopper and on); ROCm answers for itself. Not ``torch.cuda.is_bf16_supported()``
    alone: it also says yes where bf16 is only emulated (a V100 or T4: slower than float32), and
    it asks about the current GPU, not ``device``."""
    import torch

    if torch.version.hip:
        return torch.cuda.is_bf16_supported()
    return torch.cuda.get_device_capability(device)[0] >= 8


def autocast(device: torch.device):
    """bf16 autocast on a CUDA device with native bf16 (:func:`native_bf16`; convolutions and matmuls
    in bf16, losses, reductions and normalisations in float32, with no loss scaling needed); nothing
    elsewhere: an older GPU and the CPU run float32, so the CPU's numbers do not change."""
    import torch

    if device.type == "cuda" and native_bf16(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; a CPU batch bound for CUDA goes through pinned memory, without
    blocking the host. On the CPU it is returned as it is (no copy)."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


@lru_cache(maxsize=1)
def _device_option():
    from sklearn.utils._param_validation import StrOptions  # here, so the command line does not load sklearn

    class DeviceOption(StrOptions):
        """One of :data:`DEVICES` (``cuda:N`` with any ``N``; case and spaces do not matter) or a
        ``torch.device``. Whether that device is there is checked when it is resolved."""

        def __init__(self) -> None:
            super().__init__(set(DEVICES))

        def is_satisfied_by(self, val) -> bool:
            import torch

            if not isinstance(val, (str, torch.device)):
                return False
            try:
                check_device_spec(str(val))
            except GanpipeError:
                return False
            return True

        def __str__(self) -> str:
            return f"a device ({', '.join(DEVICES)}) or a torch.device"

    return DeviceOption


def device_constraint():
    """The scikit-learn parameter constraint of an estimator's ``device`` (for ``_parameter_constraints``)."""
    return _device_option()()


def gpu_for_worker(worker_name: Any, gpus: int) -> int | None:
    """The GPU index a Dask worker takes when a machine has ``gpus`` CUDA GPUs: worker ``i`` of a
    local cluster (named 0, 1, ...) takes GPU ``i mod gpus``. None when there is nothing to spread
    (one GPU or none) or the worker is not numbered (a remote worker: start one per GPU with
    ``CUDA_VISIBLE_DEVICES`` set, and each sees only its own)."""
    if gpus < 2:
        return None
    try:
        return int(str(worker_name)) % gpus
    except ValueError:
        return None


def task_device(spec: str = "auto") -> str:
    """The device spec a fanned-out task uses where it runs: ``spec`` itself, except in a Dask worker
    of a machine with several CUDA GPUs, where ``auto`` and ``cuda`` become that worker's own GPU
    (:func:`gpu_for_worker`), so the seeds of ``compare --dask-workers N`` spread over the GPUs.
    ``cuda:N``, ``cpu`` and ``mps`` are kept as asked."""
    if spec not in ("auto", "cuda"):
        return spec
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a Dask worker
        return spec
    import torch

    index = gpu_for_worker(worker.name, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    return spec if index is None else f"cuda:{index}"
