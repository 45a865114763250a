"""Anomaly flows: ``train-detector`` (train, calibrate, evaluate, register) and ``score`` (score a new
batch with a registered detector; every item ends in scores.csv or rejected.csv)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from anomaly import GANAnomalyDetector
from flows.common import Planner, call, data_label, flow_run_name, load_data, prefect_tags, run_logger
from flows.params import ScoreParams, TrainDetectorParams
from pipelines.data.batches import batch_digest, check_batch, count_items, iter_batch
from pipelines.data.maps import MapWriter, png_name
from pipelines.data.results import ResultLog
from pipelines.data.sources import ImageDataset
from pipelines.data.specs import parse_class_spec
from pipelines.data.splits import require_two_classes, stratified_split
from pipelines.devices import device_name, resolve_device
from pipelines.errors import GanpipeError
from pipelines.evaluation.anomaly_report import (
    batch_summary,
    calibration_note,
    detector_report,
    score_histogram,
    score_table,
    validation_auroc,
)
from pipelines.evaluation.monitoring import trend_point
from pipelines.evaluation.plots import tile_images
from pipelines.tracking.registry import (DetectorModel, load_estimator, register_estimator, resolve_model,
                                         set_alias_if_better, version_tags)
from pipelines.text import markdown_table, progress_bar
from pipelines.tracking.monitoring import update_trend
from pipelines.tracking.runs import find_runs, start_run

if TYPE_CHECKING:
    import torch


def device_record(device) -> dict[str, str]:
    """The params and tags a run logs for the device it trains or scores on."""
    return {"device": str(device), "device_name": device_name(device)}


@Planner
def normal_classes(params: TrainDetectorParams) -> tuple[ImageDataset, list[int], torch.device]:
    """The dataset, the indices of its normal classes and the device (unknown classes and a device
    that is not there fail here, before training)."""
    device = resolve_device(params.device)
    dataset = load_data(params.data, params.image_size)
    require_two_classes(dataset, "train-detector measures the detector on the other classes as anomalies: add a "
                                 "sub-folder of anomalous or other images")
    normal = sorted({dataset.class_index(k) for k in parse_class_spec(params.normal, counts="none")})
    if len(normal) == len(dataset.class_names):
        raise GanpipeError(f"--normal {params.normal} names every class of {dataset.source}; leave at least one "
                           "class out as the anomalies the detector is measured on")
    return dataset, normal, device


@task(name="train-detector", cache_policy=NO_CACHE)
def fit_detector(x_train: np.ndarray, x_calibration: np.ndarray, params: TrainDetectorParams) -> GANAnomalyDetector:
    logger = run_logger()

    def progress(stage: str, step: int, total: int, record: dict) -> None:
        # seconds include a resumed run's earlier ones, so the rate covers the steps done before too
        logger.info("f-AnoGAN %-7s  %s", stage, progress_bar(step, total, record["seconds"]))

    detector = GANAnomalyDetector(score=params.score, target_fpr=params.target_fpr, epochs=params.epochs,
                                  random_state=params.seed, progress=progress, device=params.device,
                                  checkpoint_path=Path(params.out).expanduser() / "checkpoints" / "fanogan.pt")
    return detector.fit(x_train, x_calibration)


@flow(name="ganpipe-train-detector", log_prints=True, flow_run_name=flow_run_name("train-detector", "normal"))
def train_detector_flow(params: TrainDetectorParams = TrainDetectorParams()) -> dict:
    """Load -> train f-AnoGAN on the normal classes' training images -> calibrate on their
    validation images -> evaluate on the test split -> register; alias ``champion`` only when the
    new version beats the current champion on this run's validation data."""
    dataset, normal, device = normal_classes(params)
    splits = stratified_split(dataset, seed=params.seed)
    is_normal = {part: np.isin(getattr(splits, part).y, normal) for part in ("train", "val", "test")}
    with start_run("detector", run_name=f"detector-{data_label(params.data)}-{params.normal}", tags=prefect_tags(),
                   system_metrics=True) as run:
        run.set_tags(device_record(device))
        run.log_params({**params.model_dump(exclude_none=True), **device_record(device),
                        "normal_train_items": int(is_normal["train"].sum()),
                        "calibration_items": int(is_normal["val"].sum())})
        label = data_label(params.data)
        digests = {"train": run.log_dataset(splits.train.x[is_normal["train"]], None, f"{label}-train-normal", "train",
                                            params.data)}
        for context, part in (("validation", splits.val), ("test", splits.test)):
            digests[context] = run.log_dataset(part.x, part.y, f"{label}-{context}", context, params.data)
        detector = call(fit_detector, splits.train.x[is_normal["train"]], splits.val.x[is_normal["val"]], params)
        for record in detector.model_.history:
            run.log_metrics({k: v for k, v in record.items() if k not in ("stage", "step", "seconds")}, step=record["step"])
        run.log_metrics({"train_seconds": detector.model_.seconds, "threshold": detector.threshold_})
        note = calibration_note(int(is_normal["val"].sum()), params.target_fpr)
        if note:
            run_logger().warning(note)
            run.set_tags({"calibration_warning": note})
        results, metrics, figures = detector_report(detector, splits.val.x, ~is_normal["val"], splits.test.x,
                                                    ~is_normal["test"])
        run.log_metrics(metrics)
        for path, figure in figures.items():
            run.log_figure(figure, path)
        version = register_estimator(run, DetectorModel(), detector, params.name,
                                     np.zeros((2, *detector.image_shape_), dtype=np.float32),
                                     description=f"f-AnoGAN detector, normal classes {params.normal} of {params.data}",
                                     tags=split_tags(params, splits.train.item_ids), name="detector",
                                     linked=[({"detector/train_items": int(is_normal["train"].sum()),
                                               "detector/train_seconds": detector.model_.seconds},
                                              f"{label}-train-normal", digests["train"])])
        champion = set_alias_if_better(params.name, version, "champion", partial(
            compare_on_unseen, dataset=dataset, params=params, val=splits.val, anomalous=~is_normal["val"]))
        run.set_tags({"registered_model": params.name, "model_version": version, "champion": champion})
    return {"run_id": run.run_id, "version": version, "champion": champion, "metrics": results,
            "threshold": detector.threshold_, "seconds": detector.model_.seconds, "detector": detector}


def split_tags(params: TrainDetectorParams, train_ids) -> dict[str, str]:
    """Version tags that say which images a detector trained on: the data, its image size, the split
    seed and a digest of the training split's item ids (which checks that split can be drawn again)."""
    return {"data": params.data, "image_size": str(params.image_size), "split_seed": str(params.seed),
            "normal": params.normal, "train_ids_digest": ids_digest(train_ids)}


def ids_digest(item_ids) -> str:
    return hashlib.sha256("\n".join(sorted(map(str, item_ids))).encode()).hexdigest()[:16]


def compare_on_unseen(new_uri: str, holder_uri: str, dataset: ImageDataset, params: TrainDetectorParams, val,
                      anomalous: np.ndarray) -> tuple[float | None, float | None, str]:
    """Validation AUROC of the new version and of the champion on this run's validation images that
    neither trained on: the new version trained on this run's training split, the champion on the
    training split of its own seed (its version tags), whose images are left out. A champion whose
    training images cannot be told (other data, or registered without these tags) is not compared."""
    name, holder_version, _ = resolve_model(holder_uri)
    tags = version_tags(name, holder_version)
    if (tags.get("data"), tags.get("image_size")) != (params.data, str(params.image_size)) or "split_seed" not in tags:
        note = (f"(not compared: version {holder_version} trained on other or unrecorded data "
                f"({tags.get('data', 'unknown')}), so no image is known to be unseen by both)")
        run_logger().warning("champion stays: %s", note)
        return None, None, note
    holder_train = set(stratified_split(dataset, seed=int(tags["split_seed"])).train.item_ids)
    if tags.get("train_ids_digest") not in (None, ids_digest(holder_train)):
        note = f"(not compared: the data changed since version {holder_version} was trained)"
        run_logger().warning("champion stays: %s", note)
        return None, None, note
    unseen = np.array([item not in holder_train for item in val.item_ids])
    scores = [validation_auroc(load_estimator(uri), val.x[unseen], anomalous[unseen]) for uri in (new_uri, holder_uri)]
    return scores[0], scores[1], f"(validation AUROC on {int(unseen.sum())} images neither trained on)"


def record_scores(data: BatchInfo, out_dir: Path, summary: dict, detector, model: tuple[str, str, str]) -> str:
    """One MLflow run (and a Prefect artifact inside a flow run) for a scored batch; returns its id."""
    name, version, pinned_uri = model
    tags = {**prefect_tags(), "batch_id": data.batch_id, "model_name": name, "model_version": version}
    with start_run("score", run_name=f"score-{data.batch_id}", tags={**tags, **device_record(detector.device_)}) as run:
        run.log_params({"batch": data.source, "model": pinned_uri, "threshold": detector.threshold_,
                        "score": detector.score, "target_fpr": detector.target_fpr_, **device_record(detector.device_)})
        run.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        run.log_artifact(out_dir / "scores.csv", "results")
        run.log_artifact(out_dir / "rejected.csv", "results")
        mean_score = float("nan")
        if summary["scored"]:
            scores = pd.read_csv(out_dir / "scores.csv", usecols=["score"])["score"].to_numpy()
            mean_score = float(scores.mean())
            run.log_metrics({"mean_score": mean_score})
            run.log_figure(score_histogram(scores, None, detector.threshold_, detector.score),
                           "figures/score_histogram.png")
            log_map_gallery(run, out_dir)
    # the model's trend across batches (experiment ganpipe-monitoring): one point per scored batch
    update_trend(name, data.batch_id, trend_point(summary, mean_score))
    if tags.get("prefect.flow_run_id"):
        create_markdown_artifact(
            markdown=f"# Batch {data.batch_id}\n\n{summary['message']}\n\n" + markdown_table(
                pd.DataFrame({"metric": list(summary), "value": [str(v) for v in summary.values()]})),
            key=re.sub(r"[^a-z0-9-]", "-", f"score-{data.batch_id}".lower())[:100],
            description=f"scores of batch {data.batch_id} with {name} v{version}",
        )
    return run.run_id


GALLERY = 12  # flagged items with their anomaly maps in the batch run's gallery


def log_map_gallery(run, out_dir: Path) -> None:
    """The batch run's gallery: the most anomalous flagged items whose maps were written (image and
    map overlay side by side, highest score first) as ``top_anomalies.png`` beside ``scores.csv``
    and ``figures/top_anomalies.png`` in the run, their overlays
    under ``maps/``, and ``maps.npz`` when it is under 50 MB."""
    from PIL import Image

    maps_dir = out_dir / "maps"
    if not maps_dir.is_dir():
        return
    scores = pd.read_csv(out_dir / "scores.csv", usecols=["item_id", "score", "flag"], dtype={"item_id": str})
    ranked = scores[scores["flag"] == 1].sort_values("score", ascending=False)
    files = [maps_dir / png_name(i) for i in ranked["item_id"]]
    top = [(f, s) for f, s in zip(files, ranked["score"]) if f.exists()][:GALLERY]
    if top:  # every overlay has the same size: the model's image side, enlarged alike
        pictures = np.stack([np.asarray(Image.open(f).convert("RGB")) for f, _ in top]).transpose(0, 3, 1, 2) / 255.0
        Image.fromarray(tile_images(pictures, ncols=3, min_side=1, gap=8)).save(out_dir / "top_anomalies.png")
        run.log_artifact(out_dir / "top_anomalies.png", "figures")
        for f, _ in top:
            run.log_artifact(f, "maps")
    npz = out_dir / "maps.npz"
    if npz.exists() and npz.stat().st_size < 50 * 2**20:
        run.log_artifact(npz, "results")


def registered_detector(uri: str, device: str = "auto") -> tuple[tuple[str, str, str], GANAnomalyDetector]:
    """The model ``uri`` names now (name, version, pinned URI) and its detector, to score on
    ``device`` (a device that is not there fails here, in one line), loaded once per version and
    device in this process (the command checks it before its flow run, which then reuses it; a
    long-running `serve` follows an alias that moves). It was saved device-free: a detector trained
    on a GPU scores on a CPU host and the reverse."""
    resolve_device(device)
    model = resolve_model(uri)
    return model, _load_detector(model[2], device)


@lru_cache(maxsize=2)
def _load_detector(pinned_uri: str, device: str) -> GANAnomalyDetector:
    return load_estimator(pinned_uri).set_params(device=device)


@dataclass(frozen=True)
class BatchInfo:
    batch_id: str
    source: str


def score_chunks(detector, params: ScoreParams, out_dir: Path) -> dict[str, int]:
    """Read the batch chunk by chunk, score each chunk and append its rows; continues a batch an
    earlier run left half scored. Memory stays at one chunk, whatever the batch size."""
    logger = run_logger()
    shape = tuple(detector.image_shape_)
    columns = list(score_table(detector, np.zeros((1, *shape), dtype=np.float32)).columns)
    results = ResultLog(out_dir)
    done = results.resume()
    if done:
        logger.info("continuing %s after %d items scored earlier", params.batch, done)
    roots = tuple(Path(r).expanduser() for r in (params.allow_roots or "").split(os.pathsep) if r)
    total, started = count_items(params.batch), time.perf_counter()
    writer = map_writer(detector, params.maps, out_dir)
    for chunk in iter_batch(params.batch, shape, chunk_size=params.chunk_size, skip=done, allow_roots=roots):
        scored = score_table(detector, chunk.x) if len(chunk.ids) else pd.DataFrame(columns=columns)
        if writer is not None:
            chosen = np.flatnonzero(np.ones(len(chunk.ids), bool) if params.maps == "all" else
                                    scored["flag"].to_numpy(dtype=np.int64) == 1) if len(chunk.ids) else np.zeros(0, int)
            writer.add([chunk.ids[i] for i in chosen], chunk.x[chosen],
                       detector.anomaly_map(chunk.x[chosen]) if len(chosen) else np.zeros((0, *shape[1:]), np.float32),
                       chunk.end)
        scored.insert(0, "reason", "")
        scored.insert(0, "status", "scored")
        scored.insert(0, "item_id", list(chunk.ids))
        rejected = pd.DataFrame({"item_id": [r[0] for r in chunk.rejected], "status": "rejected",
                                 "reason": [r[1] for r in chunk.rejected]})
        rows = pd.concat([scored, rejected.reindex(columns=scored.columns)], ignore_index=True)
        results.append(rows.astype({"flag": "Int64"}), chunk.end)
        spent = time.perf_counter() - started
        logger.info("scoring %s  %s  (%.0f items/s)", params.batch,
                    progress_bar(chunk.end, total, spent, first_done=done, unit="items"),
                    (chunk.end - done) / max(spent, 1e-9))
    counts = results.finish(out_dir / "scores.csv", out_dir / "rejected.csv")
    if writer is not None:
        counts["maps"] = writer.finish()
    return counts


def map_writer(detector, maps: str, out_dir: Path) -> MapWriter | None:
    """Where ``--maps flagged|all`` go (None for ``none``, and for a detector saved before anomaly
    maps existed, which is said once in the log)."""
    if maps == "none":
        return None
    norms = getattr(detector, "map_norms_", None)
    if norms is None or getattr(detector, "colour_field_", None) is None:
        run_logger().warning("this detector was saved before anomaly maps existed: no maps written (train it "
                             "again with ganpipe train-detector to get them)")
        return None
    return MapWriter(out_dir, scale=float(norms["feature"]))


@flow(name="ganpipe-score", log_prints=True, flow_run_name=flow_run_name("score"))
def score_flow(params: ScoreParams) -> dict:
    """Read and validate the batch chunk by chunk -> score the valid items -> append them to the
    results (a re-run continues a half-scored batch) -> scores.csv and rejected.csv -> log the
    summary. The same batch id and model version is scored once: a repeat reuses that run."""
    check_batch(params.batch)
    model, detector = registered_detector(params.model, params.device)
    data = BatchInfo(params.batch_id or batch_digest(params.batch), str(Path(params.batch).expanduser()))
    out_dir = Path(params.out).expanduser()
    counts = score_chunks(detector, params, out_dir)
    summary = batch_summary(counts["scored"], counts["rejected"], counts["flagged"], detector.target_fpr_)
    previous = find_runs("score", {"batch_id": data.batch_id, "model_name": model[0], "model_version": model[1]})
    run_id = previous[0] if previous else record_scores(data, out_dir, summary, detector, model)
    return {"run_id": run_id, "repeated": bool(previous), "batch_id": data.batch_id, "model_version": model[1],
            "summary": summary, "out": str(out_dir)}
