"""One-seed probe of the class judge's loss (direction only): the GAN's judge trained with
class-weighted cross-entropy against balanced softmax (``GANConfig.judge_loss``: the log class
shares added to its logits in training, no weights), and the GAN trained under each judge.

    python -m benchmarks.judge_loss_probe judge colour-mnist-64 0 balanced_softmax
    python -m benchmarks.judge_loss_probe gan colour-mnist-64 0 balanced_softmax '{}' balanced_softmax,gan

``judge``: trains only the judge (as :mod:`benchmarks.judge_probe`) and prints its validation
accuracy and per minority class recall and precision, and its accuracy on its own training split.
``gan``: runs :mod:`benchmarks.gan_probe` with the rest of the arguments, ``judge_loss`` set to the
loss named in its JSON settings. Only the judge's loss changes; every other cross-entropy (the arms'
classifiers, the uncut judge) is untouched. Validation and test as in those probes.
"""

from __future__ import annotations

import json
import sys

import torch

from gan_aug.config import JUDGE_LOSSES


def judge_only(data: str, seed: int, loss: str) -> dict:
    from benchmarks.judge_probe import probe

    report, judge, real, splits = probe(data, seed, {"judge_loss": loss})
    with torch.no_grad():
        own = judge(real).argmax(1).numpy()
    return {"data": data, "seed": seed, "judge_loss": loss, **report,
            "train_split_accuracy": round(float((own == splits.train.y).mean()), 3)}


def gan_arguments(argv: list[str]) -> list[str]:
    """``gan DATA SEED LOSS [CONFIG] [ARMS ...]`` -> gan_probe's arguments, ``judge_loss`` put into CONFIG."""
    data, seed, loss, rest = argv[1], argv[2], argv[3], argv[4:]
    config = {**json.loads(rest[0] if rest else "{}"), "judge_loss": loss}
    return [data, seed, json.dumps(config), *rest[1:]]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[0] not in ("judge", "gan") or argv[3] not in JUDGE_LOSSES:
        print(__doc__)
        return 2
    if argv[0] == "judge":
        print(json.dumps(judge_only(argv[1], int(argv[2]), argv[3])))
        return 0
    from benchmarks import gan_probe

    return gan_probe.main(gan_arguments(argv))


if __name__ == "__main__":
    sys.exit(main())
