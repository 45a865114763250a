"""One-class anomaly detection: each class normal in turn, GAN detector beside scikit-learn baselines
measured in the same run, plus scoring speed against an AnoGAN-style latent search.

Protocol (issue 5): train on the normal class's training images, calibrate on its validation
images, score the whole test split (every other class is an anomaly). KDE's bandwidth is chosen
on the normal validation images (likelihood), never on the test split.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.svm import OneClassSVM

from anomaly import CRITIC_ONLY, DEFAULT_SCORE, SCORES, GANAnomalyDetector
from anomaly.train import FAnoGANConfig
from pipelines.data.sources import load_dataset
from pipelines.data.splits import stratified_split
from pipelines.evaluation.anomaly_report import score_table
from pipelines.text import markdown_table

BASELINES = ("pca", "knn", "knn_cosine", "knn_whitened", "kde", "lof", "ocsvm", "iforest")


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)


def gaussian_kde_log_density(squared_distances: np.ndarray, dim: int, bandwidth: float) -> np.ndarray:
    """Exact log density of an isotropic Gaussian KDE from ``(N_query, N_train)`` squared distances."""
    n_train = squared_distances.shape[1]
    return (logsumexp(-squared_distances / (2 * bandwidth**2), axis=1) - np.log(n_train)
            - dim / 2 * np.log(2 * np.pi * bandwidth**2))


def kde_bandwidth(train: np.ndarray, val: np.ndarray) -> float:
    """Bandwidth maximising the mean log likelihood of the normal validation images, on a grid around the
    median 5-NN distance of the training images, extended until the optimum is inside the grid."""
    scale = float(np.median(NearestNeighbors(n_neighbors=6).fit(train).kneighbors(train)[0][:, 1:].mean(1)))
    d2 = _squared_distances(val, train)
    grid = scale * np.geomspace(0.01, 2.0, 48)
    for _ in range(10):
        best = int(np.argmax([gaussian_kde_log_density(d2, train.shape[1], h).mean() for h in grid]))
        if 0 < best < len(grid) - 1:
            break
        grid = grid[best] * (np.geomspace(0.1, 1.0, 24) if best == 0 else np.geomspace(1.0, 10.0, 24))
    return float(grid[best])


def baseline_scores(train: np.ndarray, val: np.ndarray, test: np.ndarray, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Anomaly scores (higher = more anomalous) of classic detectors on flattened pixels, and the settings
    chosen on the normal validation images (the KDE bandwidth)."""
    tr, va, te = (a.reshape(len(a), -1).astype(np.float64) for a in (train, val, test))
    pca = PCA(n_components=0.9, random_state=seed).fit(tr)
    out = {"pca": ((te - pca.inverse_transform(pca.transform(te))) ** 2).sum(axis=1)}
    out["knn"] = NearestNeighbors(n_neighbors=5).fit(tr).kneighbors(te)[0].mean(axis=1)
    out["knn_cosine"] = NearestNeighbors(n_neighbors=5, metric="cosine").fit(tr).kneighbors(te)[0].mean(axis=1)
    whiten = PCA(n_components=0.95, whiten=True, random_state=seed).fit(tr)
    out["knn_whitened"] = NearestNeighbors(n_neighbors=5).fit(whiten.transform(tr)).kneighbors(whiten.transform(te))[0].mean(axis=1)
    bandwidth = kde_bandwidth(tr, va)
    out["kde"] = -gaussian_kde_log_density(_squared_distances(te, tr), tr.shape[1], bandwidth)
    out["lof"] = -LocalOutlierFactor(n_neighbors=20, novelty=True).fit(tr).score_samples(te)
    out["ocsvm"] = -OneClassSVM(gamma="scale", nu=0.1).fit(tr).decision_function(te)
    out["iforest"] = -IsolationForest(random_state=seed).fit(tr).score_samples(te)
    return out, {"kde_bandwidth": bandwidth}


def one_class_table(data: str, classes: list[int], detector_args: dict, seed: int = 0) -> tuple[pd.DataFrame, list[float]]:
    dataset = load_dataset(data)
    splits = stratified_split(dataset, seed=seed)
    rows, seconds = [], []
    for normal in classes:
        train = splits.train.x[splits.train.y == normal]
        val = splits.val.x[splits.val.y == normal]
        anomalous = splits.test.y != normal
        start = time.perf_counter()
        detector = GANAnomalyDetector(random_state=seed, **detector_args).fit(train, val)
        seconds.append(time.perf_counter() - start)
        parts = detector.score_components(splits.test.x)
        row = {"normal": dataset.class_names[normal]}
        row.update({f"gan_{k}": roc_auc_score(anomalous, parts[k]) for k in SCORES})
        # the same on the validation split (its other classes as anomalies): where a score is chosen
        val_parts = detector.score_components(splits.val.x)
        row.update({f"val_gan_{k}": roc_auc_score(splits.val.y != normal, val_parts[k]) for k in SCORES})
        row["gan_fpr_at_threshold"] = float((parts[detector.score][~anomalous] > detector.threshold_).mean())
        row["gan_val_fpr_held_out"] = detector.held_out_fpr()  # calibration normals that did not set the threshold
        baselines, chosen = baseline_scores(train, val, splits.test.x, seed)
        row.update({k: roc_auc_score(anomalous, v) for k, v in baselines.items()})
        row.update(chosen)
        rows.append(row)
        print(f"[bench] anomaly {data} class {normal}: {seconds[-1]:.0f} s, {detector.score} AUROC {row[f'gan_{detector.score}']:.3f}, "
              f"pca {row['pca']:.3f}", flush=True)
    table = pd.DataFrame(rows)
    mean = table.drop(columns="normal").mean().to_dict()
    return pd.concat([table, pd.DataFrame([{"normal": "mean", **mean}])], ignore_index=True), seconds


def latent_search_scores(detector: GANAnomalyDetector, x: np.ndarray, steps: int, batch_size: int = 1024) -> np.ndarray:
    """AnoGAN (Schlegl et al. 2017): optimise z so G(z) matches x, then take the residual. A whole batch of
    latents is optimised at once (the loss is a sum over images, so each z gets its own gradient)."""
    model = detector.model_
    scores = []
    for start in range(0, len(x), batch_size):
        target = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])) * 2 - 1
        with torch.no_grad():
            target_features = model.critic.features(target)
        z = torch.zeros(len(target), model.config.latent_dim, requires_grad=True)
        optimiser = torch.optim.Adam([z], lr=0.05)
        for _ in range(steps):
            rec = model.generator(torch.tanh(z))
            per_image = (((rec - target) ** 2).flatten(1).mean(1)
                         + ((model.critic.features(rec) - target_features) ** 2).mean(1))
            optimiser.zero_grad()
            per_image.sum().backward()
            optimiser.step()
        scores.append(per_image.detach().numpy())
    return np.concatenate(scores)


def gemm_flops_per_second(n: int = 1024, repeats: int = 20) -> float:
    """This machine's fp32 matrix-multiply rate (best of 3), the ceiling any scoring rate is compared with."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start))
    return best


def scoring_flops_per_image(detector: GANAnomalyDetector, x: np.ndarray) -> float:
    with FlopCounterMode(display=False) as counter:
        score_table(detector, x)
    return counter.get_total_flops() / len(x)


def speed(detector_args: dict, quick: bool) -> dict[str, float]:
    """Scoring rates through :func:`score_table` (what ``ganpipe score`` and the registered model run) for a
    score that needs the reconstruction (``ensemble``: all components) and for the default critic-only one."""
    dataset = load_dataset("mnist5k")
    normal = dataset.x[dataset.y == 0]
    # a short training, but with the default number of critic snapshots (they set the scoring cost)
    detector = GANAnomalyDetector(**{**detector_args, "gan_steps": 2 * FAnoGANConfig.snapshots, "encoder_steps": 2}).fit(
        normal[:200], normal[200:300])
    assert len(detector.model_.critics) == FAnoGANConfig.snapshots
    batch = np.concatenate([dataset.x] * (1 if quick else 4))
    rates = {"threads": torch.get_num_threads(), "gemm_flops_per_second": gemm_flops_per_second()}
    for name, score in (("all_components", "ensemble"), ("critic_only", DEFAULT_SCORE)):
        detector.set_params(score=score).calibrate(normal[200:300])
        score_table(detector, batch[:512])  # warm-up
        start = time.perf_counter()
        score_table(detector, batch)
        rates[f"{name}_images_per_second"] = len(batch) / (time.perf_counter() - start)
        rates[f"{name}_flops_per_image"] = scoring_flops_per_image(detector, batch[:256])
    n_search, steps = (64, 20) if quick else (256, 200)
    start = time.perf_counter()
    latent_search_scores(detector, dataset.x[:n_search], steps)
    rates.update(latent_search_images_per_second=n_search / (time.perf_counter() - start), latent_search_steps=steps,
                 latent_search_images=n_search)
    rates["speedup"] = rates["all_components_images_per_second"] / rates["latent_search_images_per_second"]
    return rates


SEEDS = {"digits": [0, 1, 2], "mnist5k": [0, 1]}  # split and training seeds; digits is cheap, so it gets more


def seeded_table(data: str, classes: list[int], detector_args: dict, seeds: list[int]) -> tuple[pd.DataFrame, list[float]]:
    """:func:`one_class_table` for each seed (a new split and training each time); rows: per class the
    mean over seeds, then each seed's mean over classes (``mean seed k``), then the overall ``mean``."""
    tables, seconds = [], []
    for seed in seeds:
        table, spent = one_class_table(data, classes, detector_args, seed)
        tables.append(table)
        seconds += spent
    per_class = pd.concat([t[t.normal != "mean"] for t in tables]).groupby("normal", sort=False).mean(numeric_only=True)
    seed_means = [t[t.normal == "mean"].assign(normal=f"mean seed {seed}") for seed, t in zip(seeds, tables)]
    overall = per_class.mean().to_frame().T.assign(normal="mean")
    return pd.concat([per_class.reset_index(), *seed_means, overall], ignore_index=True), seconds


def run(quick: bool = False) -> str:
    detector_args = {"gan_steps": 20, "encoder_steps": 20} if quick else {}
    datasets = [("digits", [0, 1])] if quick else [("digits", list(range(10))), ("mnist5k", list(range(10)))]
    sections = ["## Anomaly detection: one class normal at a time (issue 5)\n",
                "GAN detector = f-AnoGAN with the `ganpipe train-detector` defaults; AUROC on the whole test "
                "split with the other classes as anomalies; baselines on flattened pixels, fitted on the same "
                "normal training images in the same run. Each seed draws its own split and trains its own "
                "detector; the table shows per class the mean over seeds, then each seed's mean.\n"]
    for data, classes in datasets:
        seeds = [0] if quick else SEEDS[data]
        table, seconds = seeded_table(data, classes, detector_args, seeds)
        mean = table[table.normal == "mean"].iloc[0]
        per_seed = table[table.normal.str.startswith("mean seed")]
        classes_only = table[~table.normal.str.startswith("mean")]
        # conservative for the GAN: the baseline with the best mean test AUROC (no choice on validation can beat it)
        best_name = max(BASELINES, key=lambda b: mean[b])
        best_gan = max(SCORES, key=lambda s: mean[f"gan_{s}"])
        val_choice = max(SCORES, key=lambda s: mean[f"val_gan_{s}"])
        shown = table[[c for c in table.columns if not c.startswith("val_")]]
        by_seed = lambda column: ", ".join(f"{v:.4f}" for v in per_seed[column])  # noqa: E731
        sections += [
            f"### `{data}`, seeds {seeds}\n",
            f"- Mean AUROC: GAN default score ({DEFAULT_SCORE}) {mean[f'gan_{DEFAULT_SCORE}']:.4f} (per seed "
            f"{by_seed(f'gan_{DEFAULT_SCORE}')}); best GAN score ({best_gan}) {mean[f'gan_{best_gan}']:.4f}; best "
            f"baseline ({best_name}, the highest mean test AUROC of {len(BASELINES)} baselines) {mean[best_name]:.4f} "
            f"(per seed {by_seed(best_name)}); KDE bandwidth chosen by likelihood on the normal validation images: "
            f"{classes_only['kde_bandwidth'].min():.3g} to {classes_only['kde_bandwidth'].max():.3g}.",
            f"- GAN score with the best mean validation AUROC (other classes of the validation split as anomalies): "
            f"{val_choice} (validation {mean[f'val_gan_{val_choice}']:.4f}, test {mean[f'gan_{val_choice}']:.4f}); "
            "validation AUROC of each: " + ", ".join(f"{k} {mean[f'val_gan_{k}']:.4f}" for k in SCORES) + ".",
            f"- Training time per class on 2 cores: mean {np.mean(seconds):.0f} s, max {np.max(seconds):.0f} s "
            "(target <= 120 s).",
            f"- False positive rate at the calibrated threshold (target 1%): test normals, mean "
            f"{mean['gan_fpr_at_threshold']:.3f}; validation normals held out of the threshold (2-fold "
            f"cross-fitted), mean {mean['gan_val_fpr_held_out']:.3f}.\n",
            markdown_table(shown, float_format="{:.4f}"),
        ]
    rates = speed(detector_args, quick)
    gemm = rates["gemm_flops_per_second"]
    sections += [
        "### Scoring speed at 28x28\n",
        f"- This machine's fp32 GEMM rate (1024x1024 matmul, {rates['threads']} threads): {gemm / 1e9:.0f} GFLOP/s.",
    ]
    for name, what in (("all_components", "all components (encoder, generator, one critic pass over x and G(E(x)))"),
                       ("critic_only", f"critic-only default score `{DEFAULT_SCORE}` (with "
                                       f"{', '.join(f'`{k}`' for k in CRITIC_ONLY if k != 'multi_critic_distance')}; "
                                       "no G(E(x)), no snapshot critics)")):
        rate, flops = rates[f"{name}_images_per_second"], rates[f"{name}_flops_per_image"]
        sections.append(f"- {what}: {rate:.0f} images/s, {flops / 1e6:.1f} MFLOP per image, "
                        f"{rate * flops / gemm:.0%} of the GEMM rate (target >= 5,000 images/s).")
    sections += [
        f"- AnoGAN-style latent search ({rates['latent_search_steps']} Adam steps, {rates['latent_search_images']} latents "
        f"optimised at once): {rates['latent_search_images_per_second']:.2f} images/s; encoder speed-up "
        f"{rates['speedup']:.0f}x (target >= 100x).",
    ]
    return "\n".join(sections)
