"""Probe (issue 21): other image scores from the same trained detector on the local-defect set.

The bench (:mod:`benchmarks.local_defects`) scores each crop by ``critic_map``, the brightest 3x3
spot of the feature map (the mean of two location distances: the Mahalanobis distance of the
critic's features, and the distance of the pixels' colours to the nearest normal pixel colours,
the colour field). This probe trains the default detector once on the same clean crops and
measures, beside it, image scores built from the same location features in other ways, each the
brightest 3x3 spot (or a top-k mean) of its location map:

- ``critic`` / ``colour field``: one of the two distances alone; ``max``: the larger of the two;
- ``colour Gaussian``: what the colour field replaced, a per-location Gaussian of the location's mean
  colour, alone and with the critic (the detector's ``critic_map`` before);
- ``top8``: the mean of the 8 largest locations of the feature map instead of its 3x3 spot;
- ``shared``: one Gaussian for all locations (a texture is stationary) instead of one per location;
- ``knn critic``: PatchCore's idea with the critic as backbone: the distance of each location's
  critic features (per-channel standardised) to the nearest of 30,000 locations of the training crops;
- ``knn critic + colour field``: that, on its mean over the calibration crops, averaged with the colour field;
- ``colour context``: a per-location Gaussian of the 3x3 neighbourhood's colours (27 values);
- ``colour-patch knn``: nearest training location by that neighbourhood, alone and with ``knn critic``.

Everything is fitted on the clean training crops; the threshold is the 99% quantile of the held-out
clean calibration crops; the score to keep would be chosen on validation (scratches, spots), test
(chips, stains) is only reported.

    python -m benchmarks.local_defect_scores           # about 15 minutes on 2 cores
    python -m benchmarks.local_defect_scores --quick   # fewer crops and GAN steps, a smoke run
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from anomaly import GANAnomalyDetector, maps
from anomaly.scores import network_input
from benchmarks.local_defects import make_set
from pipelines.text import markdown_table

BANK = 30_000  # training locations a kNN score compares with


def spot(location_map: torch.Tensor, k: int = 3) -> torch.Tensor:
    """The brightest ``k x k`` mean of ``(B, h, w)`` maps: ``(B,)``."""
    return F.avg_pool2d(location_map[:, None], k, stride=1, padding=k // 2, count_include_pad=False).flatten(1).max(1).values


def flat(features: torch.Tensor) -> torch.Tensor:
    """``(B, D, h, w)`` -> ``(B * h * w, D)``."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def colour_context(x: torch.Tensor, side: int) -> torch.Tensor:
    """The colours of each location's 3x3 neighbourhood on a ``side``-grid: ``(B, 9 C, side, side)``."""
    colour = maps.colour_features(x, side)
    return F.unfold(F.pad(colour, (1, 1, 1, 1), mode="replicate"), 3).view(colour.shape[0], -1, side, side)


class Gaussians:
    """Per-location Gaussians (as the detector's maps fit them), or one for every location."""

    def __init__(self, train: torch.Tensor, shared: bool = False) -> None:
        self.shared = shared
        fitter = maps.LocationGaussians()
        fitter.add(flat(train)[:, :, None, None] if shared else train)
        mean, whitening = fitter.fit()
        self.mean, self.whitening = torch.from_numpy(mean), torch.from_numpy(whitening)
        self.norm = 1.0
        self.norm = float(self(train).mean())

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if not self.shared:
            return maps.location_distances(features, self.mean, self.whitening) / self.norm
        b, _, h, w = features.shape
        distances = maps.location_distances(flat(features)[:, :, None, None], self.mean, self.whitening)
        return distances.view(b, h, w) / self.norm


class NearestLocation:
    """The distance of each location to the nearest of :data:`BANK` training locations, features
    standardised per channel, divided by its mean on ``reference`` (calibration) images."""

    def __init__(self, train: torch.Tensor, reference: torch.Tensor, seed: int = 0) -> None:
        rows = flat(train)
        self.scale = rows.std(0) + 1e-6
        pick = np.random.default_rng(seed).choice(len(rows), min(BANK, len(rows)), replace=False)
        self.bank = rows[torch.from_numpy(pick)] / self.scale
        self.norm = 1.0
        self.norm = float(self(reference).mean())

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        query = flat(features) / self.scale
        nearest = torch.cat([torch.cdist(query[s : s + 4096], self.bank).min(1).values for s in range(0, len(query), 4096)])
        return nearest.view(b, h, w) / self.norm


def run(quick: bool = False) -> str:
    n_train, n_calibration, n_eval = (300, 100, 60) if quick else (1100, 300, 250)
    detector_args = {"gan_steps": 60, "encoder_steps": 30} if quick else {}
    data = make_set(n_train + n_calibration, n_eval)
    train, calibration = data["train"][:n_train], data["train"][n_train:]
    detector = GANAnomalyDetector(random_state=0, **detector_args).fit(train, calibration)
    fitted = detector._fitted()
    critic, norms, device = fitted["model"].critic, fitted["map_norms"], detector.device_
    channels = torch.from_numpy(fitted["map_channels"])

    splits = {"train": train, "calibration": calibration, "val": data["val"]["x"], "test": data["test"]["x"]}
    with torch.no_grad():
        images = {name: torch.cat([network_input(x[s : s + 256], device).cpu() for s in range(0, len(x), 256)])
                  for name, x in splits.items()}
        critic_features = {name: torch.cat([maps.spatial_features(critic, x[s : s + 256].to(device))[:, channels].cpu()
                                            for s in range(0, len(x), 256)]) for name, x in images.items()}
        side = critic_features["train"].shape[-1]
        colours = {name: maps.colour_features(x, side) for name, x in images.items()}
        contexts = {name: colour_context(x, side) for name, x in images.items()}

        gaussian = lambda f, mean, whitening: maps.location_distances(  # noqa: E731
            f, torch.as_tensor(fitted[mean]), torch.as_tensor(fitted[whitening]))
        shared_critic, shared_colour = Gaussians(critic_features["train"], True), Gaussians(colours["train"], True)
        context_gauss = Gaussians(contexts["train"])
        knn_critic = NearestLocation(critic_features["train"], critic_features["calibration"])
        knn_context = NearestLocation(contexts["train"], contexts["calibration"])
        colour_gauss = Gaussians(colours["train"])
        # each location map once per split; the candidates below combine them
        location = {s: {"critic": gaussian(critic_features[s], "map_mean", "map_whitening") / float(norms["critic"]),
                        "colour": maps.colour_location_distances(images[s], torch.as_tensor(fitted["colour_field"]), side)
                        / float(norms["colour"]),
                        "colour gauss": colour_gauss(colours[s]),
                        "shared": 0.5 * (shared_critic(critic_features[s]) + shared_colour(colours[s])),
                        "knn": knn_critic(critic_features[s]), "context": context_gauss(contexts[s]),
                        "context knn": knn_context(contexts[s])}
                    for s in ("calibration", "val", "test")}

        candidates: dict[str, Callable[[dict], torch.Tensor]] = {
            "critic_map (the detector's)": lambda m: spot(0.5 * (m["critic"] + m["colour"])),
            "critic": lambda m: spot(m["critic"]),
            "colour field": lambda m: spot(m["colour"]),
            "colour Gaussian": lambda m: spot(m["colour gauss"]),
            "critic + colour Gaussian (critic_map before)": lambda m: spot(0.5 * (m["critic"] + m["colour gauss"])),
            "max of critic, colour field": lambda m: torch.maximum(spot(m["critic"]), spot(m["colour"])),
            "top8": lambda m: (0.5 * (m["critic"] + m["colour"])).flatten(1).topk(8, dim=1).values.mean(1),
            "shared Gaussians": lambda m: spot(m["shared"]),
            "knn critic": lambda m: spot(m["knn"]),
            "knn critic + colour field": lambda m: spot(0.5 * (m["knn"] + m["colour"])),
            "colour context": lambda m: spot(m["context"]),
            "colour-patch knn": lambda m: spot(m["context knn"]),
            "knn critic + colour-patch knn": lambda m: spot(0.5 * (m["knn"] + m["context knn"])),
        }
        rows = []
        for name, measure in candidates.items():
            scores = {s: measure(location[s]).numpy() for s in location}
            threshold = np.quantile(scores["calibration"], 0.99)
            anomalous = data["test"]["anomalous"]
            rows.append({"image score": name,
                         "val AUROC": roc_auc_score(data["val"]["anomalous"], scores["val"]),
                         "test AUROC": roc_auc_score(anomalous, scores["test"]),
                         "test flagged (1% threshold)": float(np.mean(scores["test"][anomalous] > threshold)),
                         "test clean FPR": float(np.mean(scores["test"][~anomalous] > threshold))})
    table = pd.DataFrame(rows)
    chosen = table.loc[table["val AUROC"].idxmax()]
    return "\n".join([
        f"Local-defect image scores from one default detector{' with ' + str(detector_args) if detector_args else ''}: "
        f"{n_train} clean training crops, {n_calibration} calibration crops, {n_eval} + {n_eval} validation and test "
        "crops.\n",
        markdown_table(table.round(3)),
        f"\nChosen on validation: {chosen['image score']} (val {chosen['val AUROC']:.3f}, test {chosen['test AUROC']:.3f}, "
        f"{chosen['test flagged (1% threshold)']:.0%} of defective test crops flagged at FPR "
        f"{chosen['test clean FPR']:.1%}).",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer crops and GAN steps: a smoke run")
    args = parser.parse_args(argv)
    print(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
