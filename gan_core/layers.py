"""Shape helpers shared by the networks of both GAN families. Images are ``(N, C, H, W)``.

How the networks grow with the image side (8 to 256 px): each x2 stage halves the side until the
smallest feature map is at most 8x8 (:func:`upsampling_stages`); channels double per stage towards
the small end but never exceed ``width * WIDEST`` (:func:`stage_widths`), the widest layer of the
64 px networks, so a step at 256 px costs about what the extra pixels cost, not 16x more channels
as well. Passes that only read (sampling, scoring, features) take :func:`items_per_pass` images at
a time, so their memory is bounded at every side.
"""

from __future__ import annotations

import torch

WIDEST = 8  # the widest layer: width * WIDEST channels (what 64 px networks have), at every size
PIXELS_PER_PASS = 512 * 64 * 64  # images per inference pass x pixels: 512 images of 64x64


def upsampling_stages(size: int) -> int:
    """How many x2 stages a network uses for a ``size x size`` image: 1 below 16, 2 up to 32, 3 up
    to 64, 4 up to 128, else 5 (the smallest feature map is 8x8 or less up to 256 px)."""
    if size < 16:
        return 1
    for stages, upper in ((2, 32), (3, 64), (4, 128)):
        if size <= upper:
            return stages
    return 5


def stage_widths(width: int, stages: int) -> list[int]:
    """Channels from the smallest feature map to the image side (``stages + 1`` entries): ``width``
    doubled per stage towards the small end, capped at ``width * WIDEST``."""
    return [min(width * 2 ** (stages - i), width * WIDEST) for i in range(stages + 1)]


def items_per_pass(side: int, at_most: int = 256) -> int:
    """Images of ``side x side`` per inference pass: ``at_most`` up to 64 px, fewer above (a fixed
    pixel budget), at least 1."""
    return max(1, min(at_most, PIXELS_PER_PASS // (side * side)))


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of square images ``x: (N, C, S, S)`` with ``S >= size``."""
    extra = x.shape[-1] - size
    if extra == 0:
        return x
    start = extra // 2
    return x[:, :, start : start + size, start : start + size]
