"""Novelty filtering: a generator trained on a class of five or ten images tends to redraw them.

A synthetic image counts as a near-copy when it is closer to a training image of its class than a
quantile of that class's real-to-real nearest-neighbour distances (RMS pixel distance). Two filters
use that test:

- :class:`MemorisationRejection` while training (``memorisation_rejection``; Bai et al. 2022): a fake
  that is a near-copy earns the generator no reward.
- :class:`NoveltyFilter` when sampling (``novelty_quantile``): near-copies are dropped and drawn
  again (up to ``novelty_draws`` times the count asked for).

Only training images are ever stored or compared with. Thresholds are computed on the CPU (the
same on every device); the distances of fakes are computed on their device.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from pipelines.devices import to_device

log = logging.getLogger(__name__)

NOVELTY_REFERENCE = 500  # training images kept per class for the novelty filter (a random subset beyond)


def copy_threshold(members: torch.Tensor, quantile: float) -> float:
    """The ``quantile`` of the RMS distances of flattened images ``members: (N, D)`` to their nearest
    other member; 0 with fewer than two (then nothing counts as a copy)."""
    if len(members) < 2:
        return 0.0
    distances = torch.cdist(members, members) / members.shape[1] ** 0.5
    distances.fill_diagonal_(float("inf"))
    return float(torch.quantile(distances.min(dim=1).values, quantile))


class MemorisationRejection:
    """Reward weights for fakes while training: 0 for a near-copy of a real image of its class, else 1.

    ``real: (N, C, H, W)`` in [-1, 1], ``labels: (N,)``; per class the threshold is the ``quantile`` of
    its real images' distances to their nearest other real image of the class (0 for a class with
    fewer than two images: nothing counts as a copy). The real images stay on ``device`` for the run
    (every generator step compares its fakes with all of them)."""

    def __init__(self, real: torch.Tensor, labels: torch.Tensor, n_classes: int, quantile: float,
                 device: torch.device = torch.device("cpu")) -> None:
        references = [real[labels == k].flatten(1) for k in range(n_classes)]  # per class: (N_k, C*H*W)
        thresholds = torch.tensor([copy_threshold(members, quantile) for members in references], device=real.device)
        self.references = [to_device(members, device) for members in references]
        self.thresholds = to_device(thresholds, device)

    @torch.no_grad()
    def weights(self, fakes: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B,)``: 1.0 for each fake ``(B, C, H, W)`` at least its class's threshold away from every
        real image of its class ``y: (B,)``, else 0."""
        keep = torch.ones(len(fakes), device=fakes.device)
        flat = fakes.flatten(1)
        for k in y.unique().tolist():
            rows = (y == k).nonzero().view(-1)
            if len(self.references[k]):
                nearest = torch.cdist(flat[rows], self.references[k]).min(dim=1).values / flat.shape[1] ** 0.5
                keep[rows] = (nearest >= self.thresholds[k]).float()
        return keep


class NoveltyFilter:
    """Rejects synthetic images that are near-copies of a training image of their class.

    Per class it keeps (up to :data:`NOVELTY_REFERENCE`) training images and a threshold: the
    ``quantile`` of those images' RMS pixel distances to their nearest other image of the class. A
    candidate closer than that to a training image of its class is a near-copy -- closer than all but
    that share of the real images are to each other.
    """

    def __init__(self, references: list[np.ndarray], thresholds: list[float]) -> None:
        self.references = references  # per class: uint8 (N, C, H, W)
        self.thresholds = thresholds

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, n_classes: int, quantile: float, seed: int) -> "NoveltyFilter":
        """``x: (N, C, H, W)`` training images in [0, 1], ``y: (N,)`` class indices."""
        rng = np.random.default_rng(seed)
        references, thresholds = [], []
        for k in range(n_classes):
            idx = np.flatnonzero(y == k)
            if len(idx) > NOVELTY_REFERENCE:
                idx = np.sort(rng.choice(idx, NOVELTY_REFERENCE, replace=False))
            members = np.round(x[idx] * 255).astype(np.uint8)
            references.append(members)
            thresholds.append(copy_threshold(torch.from_numpy(members.reshape(len(members), -1)).float() / 255.0,
                                             quantile))
        return cls(references, thresholds)

    def nearest(self, k: int, images: np.ndarray, device: torch.device = torch.device("cpu")) -> np.ndarray:
        """RMS pixel distance of each image ``(M, C, H, W)`` to its nearest training image of class ``k``,
        computed on ``device``."""
        reference = torch.from_numpy(self.references[k].reshape(len(self.references[k]), -1)).float() / 255.0
        if not len(reference):
            return np.full(len(images), np.inf)
        flat = to_device(torch.from_numpy(images.reshape(len(images), -1)).float(), device)
        nearest = torch.cdist(flat, to_device(reference, device)).min(dim=1).values / flat.shape[1] ** 0.5
        return nearest.cpu().numpy()

    def select(self, k: int, n: int, draw: Callable[[int], np.ndarray], max_draws: int,
               device: torch.device = torch.device("cpu")) -> tuple[np.ndarray, dict]:
        """``n`` images of class ``k`` from ``draw(m)`` batches, near-copies rejected (distances on
        ``device``); after ``max_draws * n`` candidates, the shortfall is filled with the rejected
        ones farthest from any training image. -> (images, {"drawn", "rejected", "filled"})."""
        kept, rejected, drawn = [], [], 0
        have = 0
        while have < n and drawn < max_draws * n:
            m = min(max(n - have, 64), max_draws * n - drawn)
            batch = draw(m)
            drawn += len(batch)
            distance = self.nearest(k, batch, device)
            novel = distance >= self.thresholds[k]
            kept.append(batch[novel])
            rejected.append((batch[~novel], distance[~novel]))
            have += int(novel.sum())
        images = np.concatenate(kept)[:n]
        filled = n - len(images)
        if filled:
            spare = np.concatenate([r[0] for r in rejected])
            order = np.argsort(-np.concatenate([r[1] for r in rejected]), kind="stable")[:filled]
            images = np.concatenate([images, spare[order]])
            log.warning("class %d: only %d of %d candidates were not near-copies of training images; %d near-copies used",
                        k, n - filled, drawn, filled)
        n_rejected = sum(len(r[1]) for r in rejected)
        return images, {"drawn": drawn, "rejected": n_rejected, "filled": filled}

    def state_dict(self) -> dict:
        return {"references": list(self.references), "thresholds": list(self.thresholds)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "NoveltyFilter":
        return cls([np.asarray(r, dtype=np.uint8) for r in state["references"]], [float(t) for t in state["thresholds"]])
