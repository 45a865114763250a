"""Minority-class synthesis and the comparison of remedies, measured in one run.

mnist5k (classes 2, 5 and 8 cut to 10 training images) and digits (classes 3 and 8 cut to 5), 5 seeds;
the colour sets of :mod:`benchmarks.colour` (three classes cut to 10), 3 seeds.
For each seed one conditional GAN is trained on the training split (`ganpipe augment` defaults); its
samples are scored against SMOTE and classic augmentation, and the same small CNN is trained under
every arm. Label agreement is measured twice: by the CNN trained on the cut training split (what
`augment` reports) and by an independent judge trained on the uncut training split, which knows
each minority class from all of its training images.
Nothing here looks at the test split except the final classifier metrics (and the uncut judge's
accuracy on the real test images of each class, reported to show it knows the class).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pandas as pd

from pathlib import Path

from benchmarks.colour import load_colour
from gan_aug import GANConfig, GANOverSampler
from pipelines.data.sources import ImageDataset, load_dataset
from pipelines.data.splits import stratified_split
from pipelines.evaluation.classifier import CNNClassifier
from pipelines.evaluation.compare import METRICS, Comparison, evaluate_arms, seed_splits, summarise_comparison
from pipelines.evaluation.quality import label_agreement, memorisation
from pipelines.evaluation.arms import ARMS
from pipelines.evaluation.sample_quality import FEATURE_NET, SAMPLES, compare_sample_quality, taught_table
from pipelines.text import markdown_table

# (data, minority classes and the training images each keeps): the grey settings of issue 9
SETTINGS = [("mnist5k", {"2": 10, "5": 10, "8": 10}), ("digits", {"3": 5, "8": 5})]
# colour sets (benchmarks.colour) at 32 and 64 px, three classes cut to 10 (issue 20)
COLOUR_SETTINGS = [("photo-crops", 32, {"china-top-left": 10, "china-bottom-right": 10, "flower-top-right": 10}),
                   ("colour-mnist", 32, {"2": 10, "5": 10, "8": 10}),
                   ("colour-mnist", 64, {"2": 10, "5": 10, "8": 10})]
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
# finished seeds of a full colour run, so a stopped run resumes (keyed by benchmarks.regimes.code_key)
CACHE = Path(__file__).resolve().parents[1] / "out" / "bench" / "synthesis"
QUALITY = ["frechet", "precision", "recall", "coverage", "label_agreement", "uncut_judge_agreement",
           "taught_recall", "near_duplicate_share", "raw_near_duplicate_share"]


def run(setting: tuple[str, dict[str, int]], quick: bool = False) -> str:
    """The sections of one ``(data, minority)`` setting of :data:`SETTINGS`."""
    seeds, steps, epochs = ([0, 1], 40, 2) if quick else ([0, 1, 2, 3, 4], 1500, 15)
    return run_setting(*setting, seeds, steps, epochs)


def run_colour(setting: tuple[str, int, dict[str, int]], quick: bool = False) -> str:
    """The sections of one ``(set, side, minority)`` setting of :data:`COLOUR_SETTINGS`; its sample
    sheet goes to ``docs/figures/``."""
    name, side, minority = setting
    from benchmarks.regimes import CONFIRM_SEEDS

    seeds, steps, epochs = ([0, 1], 40, 2) if quick else ([0, 1, 2], GANConfig.steps, 15)
    figures = Path(tempfile.gettempdir()) if quick else FIGURES  # a quick run leaves docs/ alone
    return run_setting(load_colour(name, side), minority, seeds, steps, epochs,
                       sheet=figures / f"samples-{name}-{side}.png", issue=20, cache=None if quick else CACHE,
                       confirm=[] if quick else CONFIRM_SEEDS)


def run_setting(data: str | ImageDataset, minority: dict[str, int], seeds: list[int], steps: int, epochs: int,
                sheet: Path | None = None, issue: int = 9, cache: Path | None = None,
                confirm: list[int] | None = None) -> str:
    """One conditional GAN per seed on the training split: its samples scored beside SMOTE and
    classic augmentation, and the classifier trained under every arm. ``sheet``: where to save real
    and GAN images of the minority classes of the first seed. With ``cache`` (a folder) each finished
    seed is kept there and a later run with the same setting and code (:func:`benchmarks.regimes.code_key`)
    takes it instead of training again (a colour seed is about half an hour: a stopped run resumes).
    Where a GAN arm's difference from the best non-GAN arm is significant over ``seeds``, the seeds
    of ``confirm`` are run too and everything is reported over all of them (the regime grid's rule,
    issue 22: at least 5 seeds where a significant difference is claimed)."""
    from benchmarks.regimes import significant

    dataset = load_dataset(data) if isinstance(data, str) else data
    data = dataset.source
    quality_tables, rows, gan_seconds, augment_seconds, judge_accuracy = [], [], [], [], {}

    def take(seed: int) -> None:
        found = _cached_seed(dataset, minority, seed, steps, epochs, seed == seeds[0] and sheet is not None, cache)
        if sheet is not None and seed == seeds[0]:
            sheet.parent.mkdir(parents=True, exist_ok=True)
            sheet.write_bytes(found["sheet"])
        quality_tables.append(pd.DataFrame(found["quality"]))
        rows.extend(found["rows"])
        gan_seconds.append(found["gan_seconds"])
        augment_seconds.append(found["augment_seconds"])
        for name, value in found["judge_accuracy"].items():
            judge_accuracy.setdefault(name, []).append(value)

    for seed in seeds:
        take(seed)
    if confirm and significant(summarise_comparison(rows).verdicts):
        for seed in confirm:
            take(seed)
        seeds = [*seeds, *confirm]
    cut = ", ".join(f"{k} cut to {n}" for k, n in minority.items())
    shape = "x".join(str(d) for d in dataset.x.shape[1:])
    return _augment_section(data, cut, seeds, steps, pd.concat(quality_tables), gan_seconds, augment_seconds,
                            judge_accuracy, shape, sheet, issue) + "\n\n" + \
        _compare_section(data, cut, seeds, epochs, steps, summarise_comparison(rows), issue)


def _cached_seed(dataset: ImageDataset, minority: dict[str, int], seed: int, steps: int, epochs: int, sheet: bool,
                 cache: Path | None) -> dict:
    """:func:`run_seed`'s result, from ``cache`` when this setting, seed and code made it before."""
    from benchmarks.regimes import code_key

    cut = "-".join(f"{k}{n}" for k, n in sorted(minority.items()))
    kept = None if cache is None else cache / f"{dataset.source}-{cut}-seed{seed}-{steps}steps-{epochs}epochs-{code_key()}.pkl"
    if kept is not None and kept.is_file():
        found = pd.read_pickle(kept)
        if found.get("sheet") is not None or not sheet:
            print(f"[bench] synthesis {dataset.source} seed {seed}: from {kept}", flush=True)
            return found
    found = run_seed(dataset, minority, seed, steps, epochs, sheet)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        pd.to_pickle(found, kept)
    return found


def run_seed(dataset: ImageDataset, minority: dict[str, int], seed: int, steps: int, epochs: int,
             sheet: bool = False) -> dict:
    """One seed of :func:`run_setting`: ``quality`` (records of the sample-quality table), ``rows``
    (the public columns of :func:`evaluate_arms`'s rows), ``gan_seconds``, ``augment_seconds``,
    ``judge_accuracy`` (the uncut judge's, per minority class) and, with ``sheet``, the PNG bytes of
    the sample sheet."""
    start = time.perf_counter()
    splits, minority_idx, targets = seed_splits(dataset, dict(minority), seed)
    fit_started = time.perf_counter()
    gan = GANOverSampler(steps=steps, random_state=seed).fit(splits.train.x, splits.train.y)
    quality = compare_sample_quality(splits, lambda labels, s: gan.generate(labels, seed=s + 10_000), minority_idx, seed)
    # what augment does: the GAN (its judge and novelty filter included), then the sample-quality
    # table (export and MLflow aside); wall-clock
    augment_seconds = time.perf_counter() - fit_started
    # does each method's set teach the class? (not part of augment's work, so outside its timing)
    taught = taught_table(splits, lambda labels, s: gan.generate(labels, seed=s + 10_000), minority_idx, seed)
    quality = quality.merge(taught, on=["class", "method"], how="left")
    uncut, accuracy = uncut_judge_agreement(dataset, splits, minority_idx, gan, seed)
    quality["uncut_judge_agreement"] = [uncut[c] if m == "gan" else np.nan for c, m in zip(quality["class"], quality.method)]
    image = None
    if sheet:
        with tempfile.TemporaryDirectory() as folder:
            save_sample_sheet(splits, minority_idx, gan, seed, Path(folder) / "sheet.png")
            image = (Path(folder) / "sheet.png").read_bytes()
    rows = [{k: v for k, v in row.items() if not k.startswith("_")}
            for row in evaluate_arms(splits, minority_idx, targets, list(ARMS), "cnn", epochs, seed, gan.generate)]
    # how often the generator itself draws near-copies, before the novelty filter drops them
    raw = {splits.train.class_names[k]: memorisation(
        gan.generate(np.full(SAMPLES, k), seed=seed + 10_000, novelty=False),
        splits.train.x[splits.train.y == k])["near_duplicate_share"] for k in minority_idx}
    quality["raw_near_duplicate_share"] = [raw[c] if m == "gan" else np.nan for c, m in zip(quality["class"], quality.method)]
    print(f"[bench] synthesis {dataset.source} seed {seed}: {time.perf_counter() - start:.0f} s "
          f"(GAN {gan.gan_.seconds:.0f} s)", flush=True)
    return {"quality": quality.assign(seed=seed).to_dict("records"), "rows": rows, "gan_seconds": gan.gan_.seconds,
            "augment_seconds": augment_seconds, "judge_accuracy": accuracy, "sheet": image}


def uncut_judge(dataset: ImageDataset, seed: int) -> CNNClassifier:
    """A CNN trained on the seed's uncut training split (same split, before the minority classes were
    cut; class-balanced): a judge that knows each minority class from all of its training images."""
    uncut = stratified_split(dataset, seed=seed).train
    judge = CNNClassifier(**FEATURE_NET, class_weight="balanced", random_state=seed + 7)
    return judge.fit(uncut.x, uncut.y, n_classes=len(uncut.class_names))


def uncut_judge_agreement(dataset: ImageDataset, splits, minority_idx: list[int], gan: GANOverSampler,
                          seed: int, judge: CNNClassifier | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Per minority class: the share of ``SAMPLES`` GAN images that :func:`uncut_judge` (or ``judge``,
    one already trained by it) assigns to the class asked for, and that judge's accuracy on the
    class's real test images."""
    judge = uncut_judge(dataset, seed) if judge is None else judge
    agreement, accuracy = {}, {}
    for k in minority_idx:
        name = splits.train.class_names[k]
        samples = gan.generate(np.full(SAMPLES, k), seed=seed + 20_000)
        agreement[name] = label_agreement(judge.predict(samples), np.full(SAMPLES, k))
        real = splits.test.x[splits.test.y == k]
        accuracy[name] = label_agreement(judge.predict(real), np.full(len(real), k))
    return agreement, accuracy


def save_sample_sheet(splits, minority_idx: list[int], gan: GANOverSampler, seed: int, path: Path) -> None:
    """Per minority class, a row of its real training images and two rows of GAN samples."""
    from pipelines.evaluation.plots import tile_images
    from PIL import Image

    rows = []
    for k in minority_idx:
        real = splits.train.x[splits.train.y == k][:10]
        real = np.concatenate([real, np.ones((10 - len(real), *real.shape[1:]), np.float32)])
        rows += [real, gan.generate(np.full(20, k), seed=seed + 10_000)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile_images(np.concatenate(rows), ncols=10, min_side=48)).save(path)


def _augment_section(data, cut, seeds, steps, table: pd.DataFrame, seconds: list[float],
                     augment_seconds: list[float] | None = None, judge_accuracy: dict | None = None,
                     shape: str = "", sheet: Path | None = None, issue: int = 9) -> str:
    shown = [c for c in QUALITY if c in table]  # a seed cached before taught_recall existed lacks it
    by_method = table.groupby(["class", "method"], sort=False)[shown].mean().reset_index()
    overall = table.groupby("method", sort=False)[shown].mean().reset_index()
    gan = table[table.method == "gan"].set_index(["seed", "class"])["frechet"]
    smote = table[table.method == "smote"].set_index(["seed", "class"])["frechet"]
    wins = int((gan < smote.loc[gan.index]).sum())
    gan_rows = table[table.method == "gan"].groupby("class")
    agreement, duplicates = gan_rows["label_agreement"].mean(), gan_rows["near_duplicate_share"].mean()
    uncut = gan_rows["uncut_judge_agreement"].mean()
    timing = "" if not augment_seconds else (
        f"- `augment`'s work (GAN and sample-quality table) per seed: mean {np.mean(augment_seconds):.0f} s, max "
        f"{np.max(augment_seconds):.0f} s (target <= 600 s at 32 and 64 px).")
    raw = gan_rows["raw_near_duplicate_share"].mean()
    novelty = GANConfig.novelty_quantile
    return "\n".join([
        f"## Minority-class synthesis on `{data}`: sample quality (issue {issue})\n",
        f"`{data}`, classes {cut} training images, GAN with {steps} generator steps (judge-guided, "
        f"guide weight {GANConfig.guide_weight}), seeds {seeds}; {SAMPLES} samples per class and method. "
        "Real reference: the validation images of the class (never test); features and label agreement from a CNN "
        "trained on the real training split.\n",
        f"- GAN training time on 2 cores (judge included): mean {np.mean(seconds):.0f} s, max {np.max(seconds):.0f} s "
        "(target <= 300 s at 28x28)." + (f" Images: {shape}." if shape else ""),
        *([timing] if timing else []),
        f"- GAN label agreement per class: {', '.join(f'{k}: {v:.0%}' for k, v in agreement.items())} "
        "(target >= 90%), by the CNN of the cut training split.",
        f"- GAN label agreement by the judge of the uncut training split: "
        f"{', '.join(f'{k}: {v:.0%}' for k, v in uncut.items())} (target >= 90%); that judge's accuracy on the "
        f"class's real test images: {', '.join(f'{k}: {np.mean(v):.0%}' for k, v in (judge_accuracy or {}).items())}.",
        *([f"- Taught recall (does the set teach the class? a CNN that meets each minority class only through "
           f"the method's {SAMPLES} samples, every other class through its real images; its recall on the class's "
           f"real validation images): GAN {_per_class(table, 'gan', 'taught_recall')}; SMOTE "
           f"{_per_class(table, 'smote', 'taught_recall')}; classic augmentation "
           f"{_per_class(table, 'albumentations', 'taught_recall')}."] if "taught_recall" in table else []),
        f"- GAN near-duplicate share per class: {', '.join(f'{k}: {v:.2f}' for k, v in duplicates.items())} "
        "(target <= 0.2)" + (f"; the generator's own share before its novelty filter (quantile {novelty}) "
                             f"drops near-copies: {', '.join(f'{k}: {v:.2f}' for k, v in raw.items())}." if novelty else "."),
        f"- GAN Fréchet distance below SMOTE's in {wins} of {len(gan)} (seed, class) pairs.\n",
        *([f"Real training images (first row of each class) and GAN samples of seed {seeds[0]} (two rows): "
           f"![samples](figures/{sheet.name})\n"] if sheet is not None else []),
        "Mean over seeds, per class and method:\n",
        markdown_table(by_method),
        "Mean over minority classes and seeds:\n",
        markdown_table(overall),
    ])


def _per_class(table: pd.DataFrame, method: str, column: str) -> str:
    """``"2: 0.41, 5: 0.63"``: ``column`` of ``method``'s rows, mean over seeds per class."""
    means = table[table.method == method].groupby("class", sort=False)[column].mean()
    return ", ".join(f"{k}: {v:.2f}" for k, v in means.items())


def _compare_section(data, cut, seeds, epochs, steps, comparison: Comparison, issue: int = 9) -> str:
    summary, verdicts = comparison.summary, comparison.verdicts
    shown = summary[["arm"] + [c for m in METRICS for c in (m, f"{m}_low", f"{m}_high")][:9]]
    shares = comparison.results.loc[comparison.results.arm == "gan", "synthetic_share"].tolist()
    return "\n".join([
        f"## Comparison of remedies on `{data}`: does the GAN help the classifier? (issue {issue})\n",
        f"`{data}`, classes {cut} training images, small CNN ({epochs} epochs), GAN {steps} steps, seeds {seeds}; "
        "every arm brings each minority class to the majority count; metrics on the untouched test split, mean and "
        "95% t-interval over seeds (clipped to [0, 1]). The best non-GAN arm and the `gan` arm's synthetic share "
        f"are chosen on the validation split; shares chosen per seed: {shares}.\n",
        markdown_table(shown),
        "All metrics (means):\n",
        markdown_table(summary[["arm"] + METRICS]),
        "GAN arms against the best non-GAN arm (chosen on validation), paired by seed, on test:\n",
        markdown_table(verdicts),
        comparison.text,
    ])
