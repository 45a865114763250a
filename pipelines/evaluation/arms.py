"""The names of the comparison's arms (no numpy, no scikit-learn: the command line lists them at start)."""

from __future__ import annotations

from typing import Sequence

from pipelines.errors import GanpipeError

NON_GAN_ARMS = ("none", "class_weight", "balanced_softmax", "ros", "smote", "albumentations", "ros+albumentations",
                "mixup")
GAN_ARMS = ("gan", "gan+albumentations", "gan+mixup", "gan+balanced_softmax")
ARMS = NON_GAN_ARMS + GAN_ARMS


def parse_arms(text: str | Sequence[str]) -> list[str]:
    arms = [a.strip() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise GanpipeError(f"unknown arm(s) {', '.join(unknown)}; choose from: {', '.join(ARMS)}")
    if not arms:
        raise GanpipeError(f"no arms given; choose from: {', '.join(ARMS)}")
    return list(dict.fromkeys(arms))
