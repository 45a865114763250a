"""Seeded model construction that stays reproducible when several models train at once in threads.

torch's layer constructors draw their initial weights from the process-wide RNG. Seeding that RNG
and building the model under one lock means a model built with seed ``s`` gets the same weights
whatever other threads are doing, as long as nothing else draws from the process-wide RNG (every
training loop here draws from a ``torch.Generator`` of its own). Models are built on the CPU
whatever torch's default device is, so their initial weights are the same for every device; the
caller moves them (``.to(device)``).
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

import torch
from torch import nn

_BUILD_LOCK = threading.Lock()
M = TypeVar("M", bound=nn.Module)


def build_seeded(factory: Callable[[], M], seed: int) -> M:
    """``factory()`` on the CPU with torch's process-wide RNG seeded to ``seed``, atomically across threads."""
    with _BUILD_LOCK, torch.device("cpu"):
        torch.manual_seed(seed)
        return factory()
