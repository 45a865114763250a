"""One-seed probe of the class judge's loss (direction only): the GAN's judge trained with
class-weighted cross-entropy (the default) against balanced softmax (the log class shares added to
its logits in training, no weights), and the GAN trained under each judge.

    python -m benchmarks.judge_loss_probe judge colour-mnist-64 0 balanced_softmax
    python -m benchmarks.judge_loss_probe gan colour-mnist-64 0 balanced_softmax '{}' balanced_softmax,gan

``judge``: trains only the judge (as :mod:`benchmarks.judge_probe`) and prints its validation
accuracy and per minority class recall and precision, and its accuracy on its own training split.
``gan``: runs :mod:`benchmarks.gan_probe` with the rest of the arguments, its judge trained by the
loss named. Only the judge's loss changes; every other cross-entropy (the arms' classifiers, the
uncut judge) is untouched. Validation and test as in those probes.
"""

from __future__ import annotations

import contextlib
import json
import sys

import torch

import gan_aug.train as train

LOSSES = ("weighted", "balanced_softmax")
_cross_entropy = torch.nn.functional.cross_entropy


def _balanced_softmax(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    # train_judge's weights are n / (K n_c): minus their log is the log class share up to a constant
    shift = torch.where(weight > 0, -torch.log(weight.clamp(min=1e-12)), torch.full_like(weight, -30.0))
    return _cross_entropy(logits + shift, y)


@contextlib.contextmanager
def judge_loss(name: str):
    """Within the block, :func:`gan_aug.train.train_judge` trains with the loss ``name``."""
    if name == "weighted":
        yield
        return

    previous = train.train_judge

    def patched(*args, **kwargs):
        torch.nn.functional.cross_entropy = _balanced_softmax
        try:
            return previous(*args, **kwargs)
        finally:
            torch.nn.functional.cross_entropy = _cross_entropy

    train.train_judge = patched
    try:
        yield
    finally:
        train.train_judge = previous


def judge_only(data: str, seed: int, loss: str) -> dict:
    from benchmarks.judge_probe import probe

    with judge_loss(loss):
        report, judge, real, splits = probe(data, seed, {}, train=train.train_judge)
    with torch.no_grad():
        own = judge(real).argmax(1).numpy()
    return {"data": data, "seed": seed, "judge_loss": loss, **report,
            "train_split_accuracy": round(float((own == splits.train.y).mean()), 3)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[0] not in ("judge", "gan") or argv[3] not in LOSSES:
        print(__doc__)
        return 2
    what, data, seed, loss = argv[0], argv[1], int(argv[2]), argv[3]
    if what == "judge":
        print(json.dumps(judge_only(data, seed, loss)))
        return 0
    from benchmarks import gan_probe

    with judge_loss(loss):
        return gan_probe.main([data, str(seed), *argv[4:]])


if __name__ == "__main__":
    sys.exit(main())
