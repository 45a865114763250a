"""Seeded model construction that stays reproducible when several models train at once in threads.

torch's layer constructors draw their initial weights from the process-wide RNG. Seeding that RNG
and building the model under one lock means a model built with seed ``s`` gets the same weights
whatever other threads are doing, as long as nothing else draws from the process-wide RNG (every
training loop here draws from a ``torch.Generator`` of its own).
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

import torch
from torch import nn

_BUILD_LOCK = threading.Lock()
M = TypeVar("M", bound=nn.Module)


def build_seeded(factory: Callable[[], M], seed: int) -> M:
    """``factory()`` with torch's process-wide RNG seeded to ``seed``, atomically across threads."""
    with _BUILD_LOCK:
        torch.manual_seed(seed)
        return factory()


class SeededDropout(nn.Module):
    """Dropout that draws its masks from its own ``torch.Generator`` (set with :meth:`seed`), not
    from the process-wide RNG that other threads share."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator = torch.Generator()

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep / (1.0 - self.p)
