"""How the networks and passes scale with the image side (gan_core.layers, gan_core.config)."""

from __future__ import annotations

import pytest

from gan_core.config import batch_for_side
from gan_core.layers import WIDEST, items_per_pass, stage_widths, upsampling_stages


@pytest.mark.parametrize("side, stages", [(8, 1), (12, 1), (16, 2), (28, 2), (32, 2), (48, 3), (64, 3), (100, 4),
                                          (128, 4), (200, 5), (256, 5)])
def test_stages_bring_the_smallest_map_to_8_or_less(side, stages):
    assert upsampling_stages(side) == stages
    assert side / 2**stages <= 8


def test_widths_double_towards_the_small_end_and_stop_at_the_cap():
    assert stage_widths(16, 3) == [128, 64, 32, 16]  # the 64 px networks, as before the cap
    assert stage_widths(16, 5) == [128, 128, 128, 64, 32, 16]
    assert max(stage_widths(4, 5)) == 4 * WIDEST


def test_batch_is_kept_up_to_32_px_and_scaled_above():
    assert [batch_for_side(64, side) for side in (8, 28, 32, 64, 128, 256)] == [64, 64, 64, 32, 16, 8]
    assert batch_for_side(16, 256) == 8 and batch_for_side(4, 256) == 4  # at least 8, never more than asked


def test_inference_passes_hold_a_bounded_pixel_count():
    assert items_per_pass(28, 256) == items_per_pass(64, 256) == 256  # unchanged up to 64 px
    assert items_per_pass(64, 512) == 512 and items_per_pass(256, 512) == 32
    sides = (8, 28, 64, 128, 256)
    assert max(items_per_pass(s, 10**6) * s * s for s in sides) <= 2 * min(items_per_pass(s, 10**6) * s * s for s in sides)
