from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba

from pipelines.evaluation.plots import arm_colours, comparison_bars, gain_figure, tile_images

ARMS = ["none", "ros", "smote", "class_weight", "albumentations", "gan", "gan+albumentations"]


def summary(metrics):
    rows = []
    for i, arm in enumerate(ARMS):
        row = {"arm": arm}
        for m in metrics:
            row.update({m: 0.5 + 0.05 * i, f"{m}_low": -0.4, f"{m}_high": 1.3})  # a 2-seed interval past [0, 1]
        rows.append(row)
    return pd.DataFrame(rows)


def test_every_arm_has_its_own_colour_and_gan_arms_are_red():
    colours = arm_colours(ARMS)
    assert len(set(colours.values())) == len(ARMS)
    assert {colours["gan"], colours["gan+albumentations"]} <= {"tab:red", "darkred"}
    assert not {c for a, c in colours.items() if not a.startswith("gan")} & {"tab:red", "darkred", "salmon", "crimson"}


def test_bars_clip_intervals_label_the_axis_and_keep_the_legend_off_the_bars():
    metrics = ["minority_recall", "balanced_accuracy"]
    fig = comparison_bars(summary(metrics), metrics)
    ax = fig.axes[0]
    assert ax.get_ylabel()
    # whisker ends (the error bar lines) stay within [0, 1]
    for container in ax.containers:
        if hasattr(container, "lines") and container.lines[2]:
            for collection in container.lines[2]:
                ends = np.concatenate([seg[:, 1] for seg in collection.get_segments()])
                assert ends.min() >= 0 and ends.max() <= 1
    bars = [c for c in ax.containers if hasattr(c, "patches")]
    assert len({to_rgba(b.patches[0].get_facecolor()) for b in bars}) == len(ARMS)
    gan_bar = next(b for b in bars if b.get_label() == "gan")
    assert gan_bar.patches[0].get_linewidth() > 0  # outlined: the GAN stands out
    legend = ax.get_legend()
    fig.canvas.draw()
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= axes_box.x1  # beside the axes, not over the bars


def test_tile_images_enlarges_small_images_and_keeps_their_pixels():
    x = np.zeros((3, 1, 8, 8), np.float32)
    x[1] = 1.0  # the second tile white
    x[2, 0, 0, 0] = 0.5
    picture = tile_images(x, ncols=2, min_side=32, gap=2)
    assert picture.dtype == np.uint8 and picture.shape == (2 + 2 * 34, 2 + 2 * 34, 3)  # 8 px x 4 = 32 px tiles
    assert (picture[2:34, 2:34] == 0).all() and (picture[2:34, 36:68] == 255).all()
    assert (picture[36:40, 2:6] == 128).all() and (picture[36:40, 6:10] == 0).all()  # one pixel -> a 4x4 block
    assert (picture[36:68, 36:68] == 255).all()  # the empty cell stays blank (white)


def test_tile_images_keeps_each_colour_channel_where_it_was():
    x = np.zeros((2, 3, 4, 4), np.float32)
    x[0, 0] = 1.0  # a red tile
    x[1, 2] = 1.0  # a blue tile
    picture = tile_images(x, ncols=2, min_side=4, gap=1)
    assert (picture[1:5, 1:5] == [255, 0, 0]).all() and (picture[1:5, 6:10] == [0, 0, 255]).all()


def test_with_the_seeds_the_axis_spans_the_data_and_each_seed_is_a_dot():
    metrics = ["minority_recall", "balanced_accuracy"]
    table = summary(metrics)
    seeds = pd.DataFrame([{"arm": arm, "seed": seed, **{m: table.loc[table.arm == arm, m].iloc[0] + 0.01 * seed for m in metrics}}
                          for arm in table["arm"] for seed in (0, 1)])
    fig = comparison_bars(table, metrics, results=seeds)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    values = np.concatenate([seeds[metrics].to_numpy().ravel(), table[metrics].to_numpy().ravel()])
    assert low <= values.min() and high >= values.max() and high - low < 1.0  # zoomed on the data, not [0, 1]
    from matplotlib.collections import PathCollection

    dots = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))  # the scatter points
    assert dots == len(seeds) * len(metrics)


def test_gain_figure_draws_each_cell_with_its_interval_and_marks_significance():
    verdicts = pd.DataFrame({
        "arm": ["gan", "gan", "gan", "gan"], "metric": ["minority_recall"] * 3 + ["balanced_accuracy"],
        "count": [5, 10, 25, 5], "difference": [0.05, -0.01, 0.02, 0.9], "low": [0.01, -0.05, -0.02, 0.8],
        "high": [0.09, 0.03, 0.06, 1.0], "p_value": [0.01, 0.6, 0.3, 0.0]})
    fig = gain_figure(verdicts)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10", "25"]  # one cell per count of the metric
    filled, hollow = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert filled.get_offsets().shape[0] == 1 and hollow.get_offsets().shape[0] == 2  # p < 0.05 only at 5
    assert filled.get_offsets()[0][1] == pytest.approx(0.05)
    whiskers = np.concatenate([seg[:, 1] for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()])
    assert whiskers.min() == pytest.approx(-0.05) and whiskers.max() == pytest.approx(0.09)  # the other metric is not drawn
    assert any(list(line.get_ydata()) == [0, 0] for line in ax.get_lines())  # the line at zero
