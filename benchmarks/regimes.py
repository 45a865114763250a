"""Where the GAN pays (issue 22): a grid of imbalance regimes, every remedy in each cell.

Cells of one data set:

- **step imbalance**: the minority classes keep ``N`` training images each, ``N`` in :data:`COUNTS`
  (those below half the training images of the smallest class: above that little imbalance is
  left), every other class keeps all of its training images;
- **long tail**: class ``k`` (in class order) keeps ``round(n * ratio ** (-k / (K - 1)))`` training
  images, at least 2 (SMOTE needs two), ``n`` the smallest class's training count and ``ratio``
  :data:`LONG_TAIL_RATIO`; the tail half of the classes is the minority whose recall is the primary
  metric and which the resampling arms bring up to the head's count.

Per cell and seed: one conditional GAN with `ganpipe augment`'s defaults, trained on the training
split, serves every GAN arm; the same small CNN trains under every arm (each sees only the training
split); the best non-GAN arm is chosen on validation among all non-GAN arms, per cell; each GAN
arm is compared with it on the test split, paired by seed (t-test). A cell runs
:data:`SEEDS`; where any GAN arm's difference is significant there, it runs the seeds of
:data:`CONFIRM_SEEDS` too and reports over all of them (issue 22: at least 5 seeds where a significant
difference is claimed). Extending only cells that were already significant, and then testing again
over every seed, can take a claim away, never add one. Nothing is tuned per cell or per data set.
Validation chooses, test reports.
"""

from __future__ import annotations

import ast
import hashlib
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gan_aug import GANConfig, GANOverSampler
from pipelines.data.sources import ImageDataset, load_dataset
from pipelines.data.splits import Splits, make_imbalanced, stratified_split
from pipelines.evaluation.arms import ARMS, NON_GAN_ARMS
from pipelines.evaluation.compare import (PRIMARY, SIGNIFICANCE, evaluate_arms, regime_text, seed_splits,
                                          summarise_comparison)
from pipelines.text import markdown_table

COUNTS = (5, 10, 25, 50, 100)
LONG_TAIL_RATIO = 50
LONG_TAIL = f"long tail {LONG_TAIL_RATIO}:1"
# the minority classes of the step cells (those of the synthesis benchmarks)
DATA = {"digits": ("3", "8"), "mnist5k": ("2", "5", "8"),
        "photo-crops-32": ("china-top-left", "china-bottom-right", "flower-top-right")}
COLOUR = {"photo-crops-32": ("photo-crops", 32)}  # the colour sets among DATA (benchmarks.colour), at their side
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
# finished (data, cell, seed) results of a full run, so a stopped grid resumes (keyed by code_key)
CACHE = Path(__file__).resolve().parent / "cache" / "regimes"
GAIN = 0.03  # the gain the issue asks for in at least two cells, with p < SIGNIFICANCE
SEEDS = [0, 1, 2]  # every cell
CONFIRM_SEEDS = [3, 4]  # added to a cell where a GAN arm's difference is significant over SEEDS


def dataset_of(data: str) -> ImageDataset:
    """The images of ``data``, a key of :data:`DATA`: a packaged set or a colour set made here."""
    if data in COLOUR:
        from benchmarks.colour import load_colour

        return load_colour(*COLOUR[data])
    return load_dataset(data)


def cells_of(dataset: ImageDataset) -> list[int | str]:
    """The step counts below half the smallest class's training count, then the long tail."""
    smallest = int(np.bincount(stratified_split(dataset, seed=0).train.y).min())
    return [n for n in COUNTS if n <= smallest // 2] + [LONG_TAIL]


def cell_splits(dataset: ImageDataset, minority: tuple[str, ...], cell: int | str, seed: int
                ) -> tuple[Splits, list[int], dict[int, int]]:
    """One cell's split for ``seed``: ``(splits, minority class indices, target counts)``."""
    if cell != LONG_TAIL:
        return seed_splits(dataset, {name: int(cell) for name in minority}, seed)
    split = stratified_split(dataset, seed=seed)
    names = split.train.class_names
    n, k_max = int(np.bincount(split.train.y).min()), len(names) - 1
    keep = {names[k]: max(2, int(round(n * LONG_TAIL_RATIO ** (-k / k_max)))) for k in range(len(names))}
    splits = make_imbalanced(split, keep, seed=seed)
    minority_idx = list(range((len(names) + 1) // 2, len(names)))
    return splits, minority_idx, {k: keep[names[0]] for k in minority_idx}


def source_digest(source: str) -> str:
    """The code of a module without its comments, docstrings and layout (its syntax tree with every
    docstring dropped): an edit of wording or line breaks leaves it, any change of what runs moves it."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def code_key() -> str:
    """A digest of the arms and of the code that trains and scores them (the GAN, the classifiers,
    the remedies): a cached seed is reused only by the code that made it. Comments and docstrings
    do not count (:func:`source_digest`): the grid is hours of cache that a wording edit should not
    throw away."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha1(",".join(ARMS).encode())
    for folder in ("gan_aug", "gan_core", "pipelines/evaluation", "pipelines/data"):
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(source_digest(path.read_text()).encode())
    return digest.hexdigest()[:10]


def cache_name(source: str, cell: int | str, seed: int, steps: int, epochs: int, key: str) -> str:
    """The file of one cached seed: letters, digits, ``@``, ``.`` and ``-`` only (the cache is committed,
    and a clone on any file system must hold it: no ``:`` or spaces from the long-tail cell's name)."""
    return re.sub(r"[^A-Za-z0-9@.-]+", "-", f"{source}-{cell}-seed{seed}-{steps}steps-{epochs}epochs-{key}") + ".csv"


def run_cell(dataset: ImageDataset, minority: tuple[str, ...], cell: int | str, seeds: list[int], steps: int,
             epochs: int, cache: Path | None = None) -> tuple[list[dict], list[float]]:
    """Every arm for every seed of one cell: the public columns of :func:`evaluate_arms`'s rows and the
    GAN seconds. With ``cache`` (a folder), each finished seed is kept there and a later run with the
    same settings and code (:func:`code_key`) takes it instead of training again (the grid is hours
    long: it resumes)."""
    rows, seconds = [], []
    key = None if cache is None else code_key()  # parses every module of the key: once per cell
    for seed in seeds:
        kept = None if cache is None else cache / cache_name(dataset.source, cell, seed, steps, epochs, key)
        if kept is not None and kept.is_file():
            table = pd.read_csv(kept, keep_default_na=True)
            rows += table.drop(columns="gan_seconds").to_dict("records")
            seconds.append(float(table["gan_seconds"].iloc[0]))
            print(f"[bench] regimes {dataset.source} {cell} seed {seed}: from {kept}", flush=True)
            continue
        started = time.perf_counter()
        splits, minority_idx, targets = cell_splits(dataset, minority, cell, seed)
        gan = GANOverSampler(steps=steps, random_state=seed).fit(splits.train.x, splits.train.y)
        seconds.append(gan.gan_.seconds)
        found = [{**{k: v for k, v in row.items() if not k.startswith("_")}, "cell": str(cell)}
                 for row in evaluate_arms(splits, minority_idx, targets, list(ARMS), "cnn", epochs, seed, gan.generate)]
        rows += found
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(found).assign(gan_seconds=seconds[-1]).to_csv(kept, index=False)
        print(f"[bench] regimes {dataset.source} {cell} seed {seed}: {time.perf_counter() - started:.0f} s "
              f"(GAN {seconds[-1]:.0f} s)", flush=True)
    return rows, seconds


def measure_cell(dataset: ImageDataset, minority: tuple[str, ...], cell: int | str, seeds: list[int], steps: int,
                 epochs: int, confirm: bool = True, cache: Path | None = CACHE):
    """One cell as the bench measures it: ``seeds``, then :data:`CONFIRM_SEEDS` too when ``confirm``
    and a GAN arm's difference is significant over those (:func:`significant`). The comparison of
    every seed run and the GAN seconds."""
    rows, seconds = run_cell(dataset, minority, cell, seeds, steps, epochs, cache)
    comparison = summarise_comparison(rows)
    if confirm and significant(comparison.verdicts):
        more, extra = run_cell(dataset, minority, cell, CONFIRM_SEEDS, steps, epochs, cache)
        rows, seconds = rows + more, seconds + extra
        comparison = summarise_comparison(rows)
    return comparison, seconds


def cached_rows(data: str, key: str, cache: Path = CACHE, steps: int = GANConfig.steps,
                epochs: int = 15) -> dict[str, list[dict]]:
    """The rows of every cell of ``data`` with seeds cached at ``key`` (a :func:`code_key`), by cell,
    in the grid's cell order: what a stopped grid has measured so far."""
    dataset = dataset_of(data)
    found = {}
    for cell in cells_of(dataset):
        rows = []
        for seed in SEEDS + CONFIRM_SEEDS:
            kept = cache / cache_name(dataset.source, cell, seed, steps, epochs, key)
            if kept.is_file():
                rows += pd.read_csv(kept, keep_default_na=True).drop(columns="gan_seconds").to_dict("records")
        if rows:
            found[str(cell)] = rows
    return found


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.regimes DATA``: what the cache holds of a grid, per cell (means on
    test and each GAN arm against validation's best non-GAN arm, as the section will show them);
    ``--run CELLS`` first measures those cells (comma-separated, e.g. ``100,long tail 50:1``) into
    the cache, in that order, as ``benchmarks.run`` would: the bench then takes them from there."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.regimes",
        description="What the cache (benchmarks/cache/regimes/) holds of a regime grid, per cell: mean minority "
                    "recall on test per arm and each GAN arm against validation's best non-GAN arm, as "
                    "`python -m benchmarks.run --only regimes-DATA` will show them once every cell is done.")
    parser.add_argument("data", choices=sorted(DATA))
    parser.add_argument("--key", help="the code key of the seeds to read (default: this code's)")
    parser.add_argument("--run", metavar="CELLS",
                        help="first measure these cells into the cache, in this order, as the bench would "
                             "(comma-separated, e.g. '100,long tail 50:1')")
    args = parser.parse_args(argv)
    dataset = dataset_of(args.data)
    if args.run:
        names = {str(cell): cell for cell in cells_of(dataset)}
        asked = [name.strip() for name in args.run.split(",")]
        for name in asked:  # every cell checked before the first trains
            if name not in names:
                parser.error(f"--run: no cell {name!r} in {args.data} (cells: {', '.join(names)})")
        for name in asked:
            measure_cell(dataset, DATA[args.data], names[name], SEEDS, GANConfig.steps, 15, cache=CACHE)
    key = args.key or code_key()
    found = cached_rows(args.data, key, cache=CACHE)
    if not found:
        print(f"no cached seeds of {args.data} at key {key} in {CACHE}")
    for cell, rows in found.items():
        seeds = sorted({row["seed"] for row in rows})
        if len(seeds) < 2:  # a cell the grid has just begun: its means, no interval yet
            means = pd.DataFrame(rows).groupby("arm", sort=False)[[PRIMARY]].mean()
            print(f"\n{args.data} cell {cell}: seeds {seeds} (key {key}; one seed: no interval or test yet)")
            print(markdown_table(means.T.round(3).reset_index(names="mean on test")))
            continue
        comparison = summarise_comparison(rows)
        primary = comparison.verdicts[comparison.verdicts["metric"] == PRIMARY]
        print(f"\n{args.data} cell {cell}: seeds {sorted(comparison.results['seed'].unique().tolist())} (key {key})")
        print(markdown_table(comparison.summary.set_index("arm")[[PRIMARY]].T.round(3).reset_index(names="mean on test")))
        print(markdown_table(primary.drop(columns="metric").round(3)))


def run(data: str, quick: bool = False) -> str:
    """The section of one data set of :data:`DATA`; its figure goes to ``docs/figures/``."""
    dataset = dataset_of(data)
    cells = cells_of(dataset)
    seeds, steps, epochs = ([0, 1], 40, 2) if quick else (SEEDS, GANConfig.steps, 15)
    if quick:
        cells = [cells[0], LONG_TAIL]
    figures = Path(tempfile.gettempdir()) if quick else FIGURES  # a quick run leaves docs/ alone
    verdicts, means, regimes, gan_seconds = [], [], {}, []
    for cell in cells:
        comparison, seconds = measure_cell(dataset, DATA[data], cell, seeds, steps, epochs, confirm=not quick,
                                           cache=None if quick else CACHE)
        gan_seconds += seconds
        regimes[str(cell)] = regime_text(comparison.results)
        verdicts.append(comparison.verdicts.assign(cell=str(cell), seeds=comparison.results["seed"].nunique()))
        means.append(comparison.summary.set_index("arm")[PRIMARY].rename(str(cell)))
    verdict = pd.concat(verdicts, ignore_index=True)
    figure = figures / f"regimes-{data}.png"
    save_gain_figure(verdict, figure, data)
    return section(data, cells, seeds, steps, epochs, verdict, pd.concat(means, axis=1), regimes, gan_seconds,
                   figure)


def target_counts(primary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The cells (of verdict rows on :data:`PRIMARY`, one arm each) where the arm is significantly
    worse than the best non-GAN arm, and those where it is better by at least :data:`GAIN` with p <
    :data:`SIGNIFICANCE`: issue 22's two targets."""
    significant_ = primary["p_value"] < SIGNIFICANCE
    worse = primary[(primary["difference"] < 0) & significant_]
    better = primary[(primary["difference"] >= GAIN) & significant_]
    return list(worse["cell"]), list(better["cell"])


def significant(verdicts: pd.DataFrame) -> bool:
    """Whether any GAN arm's difference from the best non-GAN arm on :data:`PRIMARY` has p <
    :data:`SIGNIFICANCE`."""
    primary = verdicts[verdicts["metric"] == PRIMARY]
    return bool((primary["p_value"] < SIGNIFICANCE).any())


def save_gain_figure(verdicts: pd.DataFrame, path: Path, data: str) -> None:
    from pipelines.evaluation.plots import gain_figure

    fig = gain_figure(verdicts.assign(data=data), PRIMARY, cell="cell", panel="data",
                      xlabel="training images per minority class (or profile)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def section(data: str, cells, seeds, steps, epochs, verdicts: pd.DataFrame, means: pd.DataFrame,
            regimes: dict[str, str], gan_seconds: list[float], figure: Path) -> str:
    primary = verdicts[verdicts["metric"] == PRIMARY]
    table = pd.DataFrame([{
        "cell": v["cell"], "regime": regimes[v["cell"]], "seeds": v["seeds"],
        "arm": v["arm"] + (" (chosen on val)" if v["chosen"] else ""),
        "best non-GAN (val)": v["versus"],
        "difference": f"{v['difference']:+.3f}", "95% interval": f"[{v['low']:+.3f}, {v['high']:+.3f}]",
        "p": f"{v['p_value']:.3g}",
        "verdict": ("better" if v["difference"] > 0 else "worse") + (", significant" if v["p_value"] < SIGNIFICANCE
                                                                      else ", not significant"),
    } for v in primary.to_dict("records")])
    readings = {"the plain `gan` arm": primary[primary["arm"] == "gan"],
                "the GAN arm chosen on validation (per cell, as the best non-GAN arm is)": primary[primary["chosen"]]}
    target_lines = []
    for name, rows in readings.items():
        worse, better = target_counts(rows)
        target_lines += [
            f"- Cells where {name} is significantly worse than the best non-GAN arm: {len(worse)} of {len(rows)}"
            + (f" ({', '.join(worse)})" if worse else "") + " (target: none).",
            f"- Cells where it is better by >= {GAIN} with p < {SIGNIFICANCE}: {len(better)}"
            + (f" ({', '.join(better)})" if better else "") + " (target: at least two, over the data sets)."]
    chosen = ", ".join(f"{v['cell']}: `{v['arm']}`" for v in primary[primary["chosen"]].to_dict("records"))
    arms = [a for a in ARMS if a in means.index]
    shown = means.loc[arms].T.reset_index(names="cell").round(3)
    return "\n".join([
        f"## GAN regime grid on `{data}` (issue 22)\n",
        f"`{data}`, cells {', '.join(map(str, cells))}: the step cells keep that many training images of classes "
        f"{', '.join(DATA[data])} (every other class keeps all of its own); the long tail keeps "
        f"n x {LONG_TAIL_RATIO}^(-k/(K-1)) images of class k of K (at least 2), its tail half the minority. Seeds {seeds}"
        + ("" if seeds != SEEDS else f", and {CONFIRM_SEEDS} too in a cell where a GAN arm's difference is significant over "
           "those (the table's seeds column)")
        + f"; per cell and seed one GAN ({steps} steps, `augment` defaults) serves every GAN arm; small CNN, {epochs} "
        f"epochs, under every arm. Best non-GAN arm chosen on validation among {', '.join(NON_GAN_ARMS)}; "
        f"test split reports; paired t-test by seed on {PRIMARY}.\n",
        f"- GAN training per seed: mean {np.mean(gan_seconds):.0f} s, max {np.max(gan_seconds):.0f} s "
        "(target <= 300 s at 28x28 on 2 cores).",
        *target_lines,
        f"- GAN arm chosen on validation per cell: {chosen}.\n",
        f"GAN minus the best non-GAN arm per cell (filled: p < {SIGNIFICANCE}): ![regimes](figures/{figure.name})\n",
        markdown_table(table),
        f"Mean {PRIMARY} on test per cell and arm:\n",
        markdown_table(shown),
    ])


if __name__ == "__main__":
    main()
