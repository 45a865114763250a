"""Shape helpers shared by the networks of both GAN families. Images are ``(N, C, H, W)``."""

from __future__ import annotations

import torch


def upsampling_stages(size: int) -> int:
    """How many x2 stages a network uses for a ``size x size`` image (1 below 16, 2 up to 32, else 3)."""
    if size < 16:
        return 1
    return 2 if size <= 32 else 3


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of square images ``x: (N, C, S, S)`` with ``S >= size``."""
    extra = x.shape[-1] - size
    if extra == 0:
        return x
    start = extra // 2
    return x[:, :, start : start + size, start : start + size]
