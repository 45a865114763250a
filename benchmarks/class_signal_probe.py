"""The class signal of benchmark settings: what ``GANOverSampler(autoencoder_label_weight=None)``
reads to decide on the class-aware autoencoder code (round 19 of docs/gan-synthesis.md).

    python -m benchmarks.class_signal_probe digits mnist5k photo-crops-32 colour-mnist-32 colour-mnist-64

One line per setting (seed 0's training split, minority classes cut as the setting cuts them):
:func:`gan_aug.train.class_signal` (the share of the pixel variance the common classes' means
explain, images area-averaged to 16 px), the floor, and the weight a fit would use.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.gan_probe import COLOUR, load_setting
from benchmarks.synthesis import SETTINGS
from gan_aug.train import CLASS_SIGNAL_FLOOR, class_signal


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", choices=[data for data, _ in SETTINGS] + list(COLOUR))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for data in args.data:
        _, splits, _, _ = load_setting(data, args.seed)
        signal = class_signal(splits.train.x, splits.train.y)
        print(f"{data}: class signal {signal:.3f} (floor {CLASS_SIGNAL_FLOOR}): autoencoder label weight "
              f"{1.0 if signal < CLASS_SIGNAL_FLOOR else 0.0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
