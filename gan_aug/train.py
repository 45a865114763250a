"""Training loop of the conditional GAN, shaped like PyTorch's DCGAN example: the losses are chosen
once before the loop (:func:`~gan_aug.losses.adversarial_loss`), then every step is "(1) critic step"
(:func:`critic_step`) and "(2) generator step" (:func:`generator_step`); progress, previews and
checkpoints are :class:`Bookkeeping`, apart from the maths.

What it trains with: class-balanced minibatches, DiffAugment on real and fake, hinge loss (or
WGAN-GP), the mode-seeking regulariser, an EMA generator for sampling, and checkpoints that a later
call resumes from.

Class fidelity: a class judge (a small classifier trained first, on the real training images only,
class-weighted) adds ``guide_weight * cross_entropy(J(G(z, y)), y)`` to the generator loss, so a
class with ten images is still drawn as that class and not as its most similar majority class.
``feature_match_weight`` adds class feature matching in the judge's feature space
(:func:`~gan_aug.losses.class_feature_matching`, or :func:`~gan_aug.losses.class_feature_support`
with ``feature_match="nearest"``; targets from :func:`class_feature_targets`).
With ``filter_candidates > 1`` each sampled image is the best of that many draws by the judge's
probability of the asked class (label-consistency filtering). It is off by default: on mnist5k
(seed 0, classes 2/5/8 at 10 images) keeping the judge's favourites cut the variety so much that
minority recall on validation fell from 0.764 to 0.556 (docs/gan-synthesis.md).

Novelty (:mod:`gan_aug.novelty`): a generator trained on a class of five or ten images tends to
redraw them. ``memorisation_rejection > 0`` withholds the generator's reward for near-copies while
training; ``novelty_quantile > 0`` (default 0.05) makes sampling replace near-copies by new draws,
and ``TrainedGAN.last_novelty`` says how many candidates were rejected.

Everything random draws from one seeded ``torch.Generator`` whose state is checkpointed, so a run
that is interrupted and resumed ends with exactly the weights of an uninterrupted run on the CPU.

Device (:mod:`pipelines.devices`): ``train_conditional_gan(..., device=)`` builds the networks on
the CPU (the same initial weights everywhere), moves them to the device and keeps the training
images on the CPU, moving each minibatch (pinned memory on CUDA). Every random draw stays on the
CPU ``torch.Generator`` and is moved to the device, so a seed draws the same numbers on every
device. On CUDA the forward passes of generator, critic and judge run under bf16 autocast; losses
and the gradient penalty are float32 outside it. Sampling and previews are float32. State and
checkpoints are CPU tensors. On the CPU nothing of this changes a number.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from gan_aug import losses
from gan_aug.config import GANConfig
from gan_aug.networks import ConditionalBatchNorm2d, Discriminator, Encoder, Generator, Judge
from gan_aug.novelty import MemorisationRejection, NoveltyFilter
from gan_core.checkpoint import fingerprint_arrays, resume, save_checkpoint, to_cpu
from gan_core.layers import items_per_pass
from gan_core.regularisers import diff_augment, ema_update, gradient_penalty
from gan_core.seeding import build_seeded
from pipelines.devices import autocast, resolve_device, to_device
from pipelines.stopping import check_stop

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict], None]
# preview(step, images (M, C, H, W) in [0, 1], labels (M,)): the EMA generator's images from fixed latents
Preview = Callable[[int, np.ndarray, np.ndarray], None]
PREVIEW_PER_CLASS = 8  # images per class in a training preview
PREVIEW_CLASSES = 20  # classes shown in a preview at most (the first ones)
CPU = torch.device("cpu")


@dataclass
class TrainedGAN:
    """The EMA generator, the class judge (None when the config uses none) and what is needed to
    sample from them. Generator and judge live on ``device`` (:meth:`to` moves them); what
    :meth:`sample` returns and :meth:`state_dict` holds is on the host."""

    generator: Generator
    config: GANConfig
    n_classes: int
    image_shape: tuple[int, int, int]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    judge: Judge | None = None
    novelty: NoveltyFilter | None = None
    last_novelty: dict = field(default_factory=dict)
    device: torch.device = CPU

    def to(self, device: torch.device) -> "TrainedGAN":
        """Move generator and judge to ``device``; -> self."""
        self.device = torch.device(device)
        self.generator.to(self.device)
        if self.judge is not None:
            self.judge.to(self.device)
        return self

    def state_dict(self) -> dict:
        """Plain data only (CPU weights, config as a dict, numbers): what :meth:`from_state_dict` needs to sample."""
        return {"config": asdict(self.config), "n_classes": self.n_classes, "image_shape": list(self.image_shape),
                "generator": to_cpu(self.generator.state_dict()),
                "judge": None if self.judge is None else to_cpu(self.judge.state_dict()),
                "judge_view": None if self.judge is None else self.judge.view,
                "novelty": None if self.novelty is None else self.novelty.state_dict(),
                "history": self.history, "seconds": self.seconds}

    @classmethod
    def from_state_dict(cls, state: dict) -> "TrainedGAN":
        """Built on the CPU (whatever torch's default device); :meth:`to` moves it."""
        # a GAN saved before class latents (or the judge's loss) existed was trained without them
        config = GANConfig(**{"class_latents": False, "judge_loss": "weighted", "judge_contrast": False, "colour": "joint",
                              **state["config"]})
        channels, size, _ = state["image_shape"]
        with CPU:
            generator = Generator(state["n_classes"], channels, size, config.z_dim, config.width,
                                  config.class_latents, config.class_norms)
            # judges saved before they looked at a reduced view saw the whole image
            judge = None if state["judge"] is None else Judge(state["n_classes"], channels, size=size,
                                                             view=state.get("judge_view", size),
                                                             contrast=config.judge_contrast)
        generator.load_state_dict(state["generator"])
        # as trained (channels-last), so a loaded generator draws exactly the images of the one saved
        generator.to(memory_format=torch.channels_last)
        if judge is not None:
            judge.load_state_dict(state["judge"])
            judge.to(memory_format=torch.channels_last)
            judge.eval().requires_grad_(False)
        novelty = None if state.get("novelty") is None else NoveltyFilter.from_state_dict(state["novelty"])
        return cls(generator.eval(), config, state["n_classes"], tuple(state["image_shape"]), state["history"],
                   state["seconds"], judge, novelty)

    @torch.no_grad()
    def sample(self, labels: np.ndarray, seed: int = 0, batch_size: int = 512, novelty: bool = True) -> np.ndarray:
        """Images for ``labels: (M,)`` as ``(M, C, H, W)`` float32 in [0, 1]; same seed, same images.

        With a judge, each image is the one of ``config.filter_candidates`` draws for its label that
        the judge finds most likely to be of that label. With a novelty filter (``novelty_quantile > 0``
        and ``novelty=True``) candidates that are near-copies of a training image of their class are
        dropped and replaced by new draws (see :class:`~gan_aug.novelty.NoveltyFilter`); ``last_novelty`` then holds,
        per class, how many candidates were drawn and rejected."""
        rng = torch.Generator().manual_seed(int(seed))
        self.generator.eval()
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            return np.zeros((0, *self.image_shape), dtype=np.float32)
        if self.novelty is None or not novelty:
            return self._draw(torch.as_tensor(labels, device=CPU), rng, batch_size)
        out = np.zeros((len(labels), *self.image_shape), dtype=np.float32)
        self.last_novelty = {}
        for k in np.unique(labels):
            rows = np.flatnonzero(labels == k)
            out[rows], self.last_novelty[int(k)] = self.novelty.select(
                int(k), len(rows), lambda n, _k=int(k): self._draw(torch.full((n,), _k, device=CPU), rng, batch_size),
                self.config.novelty_draws, self.device)
        return out

    def _draw(self, labels_t: torch.Tensor, rng: torch.Generator, batch_size: int) -> np.ndarray:
        """Labels and latents drawn on the CPU, moved to the device; images back on the host."""
        k = self.config.filter_candidates if self.judge is not None else 1
        batch_size = items_per_pass(self.image_shape[-1], batch_size)  # fewer images per pass above 64 px
        out = []
        for start in range(0, len(labels_t), max(1, batch_size // k)):
            y = to_device(labels_t[start : start + max(1, batch_size // k)].repeat_interleave(k), self.device)
            z = torch.randn(len(y), self.config.z_dim, generator=rng, device=rng.device)
            images = self.generator(to_device(z, self.device), y)
            if k > 1:
                fit = torch.log_softmax(self.judge(images), dim=1).gather(1, y[:, None]).view(-1, k)
                images = images[torch.arange(len(fit), device=self.device) * k + fit.argmax(dim=1)]
            out.append(images)
        return ((torch.cat(out) + 1.0) / 2.0).clamp(0, 1).cpu().numpy().astype(np.float32)


def train_judge(x: torch.Tensor, y: torch.Tensor, n_classes: int, config: GANConfig,
                device: torch.device = CPU, colour: bool = False) -> Judge:
    """The class judge: ``config.judge_steps`` Adam steps on the real images ``x: (N, C, H, W)`` in
    [-1, 1] with random translations; deterministic for a seed. Its loss (``config.judge_loss``):
    cross-entropy weighted by n / (K n_c), or balanced softmax (cross-entropy of the logits plus the
    log class shares, unweighted; the judge predicts with the bare logits, so every class keeps an
    equal prior). ``x`` and ``y`` stay where they are (the CPU); each minibatch is moved to
    ``device``, where the judge trains. ``colour`` adds DiffAugment's colour op to its views (never
    in a GAN fit: :mod:`benchmarks.judge_probe` measured what it costs, round 14 of
    docs/gan-synthesis.md)."""
    judge = build_seeded(lambda: Judge(n_classes, x.shape[1], size=x.shape[2], contrast=config.judge_contrast),
                         config.seed + 1).to(
        device, memory_format=torch.channels_last)
    rng = torch.Generator(device=CPU).manual_seed(config.seed + 1)
    counts = torch.bincount(y, minlength=n_classes).double()
    weight, shift = None, 0.0
    if config.judge_loss == "balanced_softmax":
        # a class with no image gets a share of 1/N^2: far below every present class, and finite
        shift = to_device(torch.log(torch.where(counts > 0, counts, 1.0 / len(y)) / len(y)).float(), device)
    else:
        weight = to_device(torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), 0.0).float(),
                           device)
    optimiser = torch.optim.Adam(judge.parameters(), lr=1e-3)
    judge.train()
    for _ in range(config.judge_steps):
        check_stop()
        idx = torch.randint(len(x), (min(config.batch_size, len(x)),), generator=rng, device=rng.device)
        with autocast(device):
            logits = judge(diff_augment(to_device(x[idx], device), rng, config.translation, 0.0, colour))
        loss = torch.nn.functional.cross_entropy(logits.float() + shift, to_device(y[idx], device), weight=weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return judge.eval().requires_grad_(False)


LATENT_SHRINKAGE = 64  # a class's own latent covariance weighs n / (n + this) against the pooled one
# below this share of the pixel variance explained by the common classes' means, the class hides
# under a larger nuisance (colour that varies inside every class: 0.003 on colour-mnist, against
# 0.30-0.66 on grey digits, MNIST and photo crops; round 19 of docs/gan-synthesis.md)
CLASS_SIGNAL_FLOOR = 0.05
SIGNAL_SIDE = 16  # the class signal is measured on images area-averaged to at most this side


def class_signal(x: np.ndarray, y: np.ndarray) -> float:
    """The share of the pixel variance that the class means explain (between-class over total sum
    of squares, in [0, 1]) among the common classes (those with at least the median item count;
    every class with two or more items when fewer than two are common) of ``x: (N, C, H, W)``,
    area-averaged to at most :data:`SIGNAL_SIDE` px a side. ``nan`` with fewer than two classes."""
    y = np.asarray(y)
    counts = np.bincount(y)
    present = counts[counts > 0]
    common = np.flatnonzero(counts >= max(np.median(present), 1))
    if len(common) < 2:
        common = np.flatnonzero(counts >= 2)
    if len(common) < 2:
        return float("nan")
    keep = np.flatnonzero(np.isin(y, common))
    side = min(SIGNAL_SIDE, x.shape[-1])
    with torch.no_grad():
        pooled = torch.cat([torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(np.asarray(
            x[keep[s : s + 1024]], dtype=np.float32)), side).flatten(1).double() for s in range(0, len(keep), 1024)])
    labels = torch.from_numpy(y[keep])
    total = ((pooled - pooled.mean(dim=0)) ** 2).sum()
    within = sum(((pooled[labels == k] - pooled[labels == k].mean(dim=0)) ** 2).sum() for k in common)
    return float(1.0 - within / total) if total > 0 else float("nan")


def resolve_label_weight(config: GANConfig, x: np.ndarray, y: np.ndarray) -> GANConfig:
    """``config`` with ``autoencoder_label_weight`` decided when it is ``None`` (auto): 1.0 when the
    common classes' means explain less than :data:`CLASS_SIGNAL_FLOOR` of the pixel variance
    (:func:`class_signal`: the autoencoder's code would hold the nuisance, not the class), else 0."""
    if config.autoencoder_label_weight is not None:
        return config
    signal = class_signal(x, y)
    weight = 1.0 if config.class_latents and signal < CLASS_SIGNAL_FLOOR else 0.0
    if config.class_latents:
        log.info("class signal %.3f of the pixel variance (floor %.2f): autoencoder label weight %.1f",
                 signal, CLASS_SIGNAL_FLOOR, weight)
    return replace(config, autoencoder_label_weight=weight)


def pretrain_autoencoder(generator: Generator, x: torch.Tensor, y: torch.Tensor, n_classes: int, config: GANConfig,
                         device: torch.device = CPU, report: Callable[[int, int, float], None] | None = None) -> float:
    """BAGAN's transfer (Mariani et al. 2018; Huang & Jafari 2021 with a gradient penalty), in place
    on ``generator`` (built with ``class_latents``): ``config.autoencoder_steps`` Adam steps of an
    autoencoder of every real image ``x: (N, C, H, W)`` in [-1, 1] (never more than the adversarial
    run's ``config.steps``; items drawn uniformly, so the common classes teach it most), with an
    :class:`~gan_aug.networks.Encoder` and the generator as its decoder on one shared class row.
    Every class row of the generator's embedding and conditional BatchNorm then starts from that
    shared row, so at the start of adversarial training
    the class is only in the latent: each class's latents are drawn from a Gaussian fitted to its
    images' codes (:func:`class_latent_prior`), so a class of ten images starts where its images
    are, with the spread of the classes that have hundreds. Own seeded draws; -> the last
    reconstruction loss (mean squared error). ``report(step, steps, mse)`` is called five times."""
    channels, size = x.shape[1], x.shape[-1]
    encoder = build_seeded(lambda: Encoder(channels, size, config.z_dim, config.width), config.seed + 3).to(
        device, memory_format=torch.channels_last)
    # with a label weight the code must also name the class (balanced softmax: the rare classes count)
    trained = [*generator.parameters(), *encoder.parameters()]
    labelled = (config.autoencoder_label_weight or 0.0) > 0  # None (auto, undecided): no label head
    if labelled:
        label_head = build_seeded(lambda: torch.nn.Linear(config.z_dim, n_classes), config.seed + 4).to(device)
        trained += label_head.parameters()
        log_prior = to_device(torch.log(torch.bincount(y, minlength=n_classes).clamp(min=1).float() / len(y)),
                              device)
    rng = torch.Generator(device=CPU).manual_seed(config.seed + 3)
    optimiser = torch.optim.Adam(trained, lr=1e-3, betas=(0.5, 0.999))
    generator.train()
    encoder.train()
    batch = min(config.batch_size, len(x))
    shared = torch.zeros(batch, dtype=torch.long, device=device)
    mse = torch.zeros((), device=CPU)
    steps = min(config.autoencoder_steps, config.steps)
    for step in range(steps):
        check_stop()
        idx = torch.randint(len(x), (batch,), generator=rng, device=rng.device)
        images = to_device(x[idx].contiguous(memory_format=torch.channels_last), device)
        with autocast(device):
            codes = encoder(images)
            restored = generator.decode(codes, shared).float()
        mse = torch.nn.functional.mse_loss(restored, images)
        loss = mse
        if labelled:
            logits = label_head(codes.float()) + log_prior
            loss = mse + config.autoencoder_label_weight * torch.nn.functional.cross_entropy(
                logits, to_device(y[idx], device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if report is not None and ((step + 1) % max(1, steps // 5) == 0 or step + 1 == steps):
            report(step + 1, steps, mse.item())
    with torch.no_grad():
        generator.embed.weight.copy_(generator.embed.weight[:1].clone().expand_as(generator.embed.weight))
        for module in generator.modules():
            if isinstance(module, ConditionalBatchNorm2d):
                for table in (module.gain, module.bias):
                    table.weight.copy_(table.weight[:1].clone().expand_as(table.weight))
        encoder.eval()
        chunk = items_per_pass(size, 512)
        with autocast(device):
            codes = torch.cat([encoder(to_device(x[s : s + chunk].contiguous(memory_format=torch.channels_last),
                                                 device)).float().cpu() for s in range(0, len(x), chunk)])
        means, factors = class_latent_prior(codes, y, n_classes)
        generator.latent_mean.copy_(to_device(means, device))
        generator.latent_factor.copy_(to_device(factors, device))
    return float(mse.item())


def class_latent_prior(codes: torch.Tensor, y: torch.Tensor, n_classes: int,
                       shrinkage: float = LATENT_SHRINKAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the mean ``(n_classes, D)`` of the codes ``codes: (N, D)`` of its items and a
    factor ``(n_classes, D, D)`` ``L`` with ``L @ L.T`` its covariance: the class's own covariance
    (n items) shrunk towards the within-class covariance pooled over all classes,
    ``(n * own + shrinkage * pooled) / (n + shrinkage)``. A class of ten items thus gets mostly the
    pooled spread, one of hundreds mostly its own. Classes without items: mean 0, pooled spread."""
    codes = codes.double()
    dim = codes.shape[1]
    counts = torch.bincount(y, minlength=n_classes)
    means = codes.new_zeros(n_classes, dim).index_add(0, y, codes)
    means = means / counts.clamp(min=1)[:, None]
    centred = codes - means[y]
    present = int((counts > 0).sum())
    pooled = centred.T @ centred / max(len(codes) - present, 1)
    factors = []
    for k in range(n_classes):
        own_items = centred[y == k]
        n = len(own_items)
        own = own_items.T @ own_items / (n - 1) if n > 1 else pooled.new_zeros(pooled.shape)
        covariance = (n * own + shrinkage * pooled) / (n + shrinkage)
        jitter = 1e-6 * float(torch.diagonal(covariance).mean().clamp(min=1e-12))
        factors.append(torch.linalg.cholesky(covariance + jitter * torch.eye(dim, dtype=torch.float64,
                                                                              device=codes.device)))
    return means.float(), torch.stack(factors).float()


class ClassFeatures(NamedTuple):
    """Per class, the mean judge features of its real images (``means: (n_classes, F)``) and the
    real features' standard deviation per dimension (``scale: (F,)``): the targets of
    :func:`~gan_aug.losses.class_feature_matching`; for :func:`~gan_aug.losses.class_feature_support`
    also every real view's features and label (kept only for ``feature_match="nearest"``)."""

    means: torch.Tensor
    scale: torch.Tensor
    features: torch.Tensor | None = None  # (M, F): every real view's features, for the "nearest" mode
    labels: torch.Tensor | None = None  # (M,)


@torch.no_grad()
def class_feature_targets(judge: Judge, x: torch.Tensor, y: torch.Tensor, n_classes: int, config: GANConfig,
                          device: torch.device = CPU, views: int = 4) -> ClassFeatures:
    """:class:`ClassFeatures` of the real images ``x: (N, C, H, W)`` in [-1, 1] (on the CPU), seen as
    the generator's fakes are seen by the judge: ``views`` DiffAugmented copies of each image when
    ``config.guide_augment``, else the image itself. Draws from its own seeded generator, so the
    training stream is the same with and without it."""
    rng = torch.Generator(device=CPU).manual_seed(config.seed + 2)
    chunk = items_per_pass(x.shape[-1], 512)
    feats, labels = [], []
    for _ in range(views if config.guide_augment else 1):
        for start in range(0, len(x), chunk):
            batch = x[start : start + chunk]
            if config.guide_augment:
                batch = diff_augment(batch, rng, config.translation, config.cutout)
            with autocast(device):
                feats.append(judge.features(to_device(batch, device)).float().cpu())
            labels.append(y[start : start + chunk])
    feats, labels = torch.cat(feats), torch.cat(labels)
    means = torch.zeros(n_classes, feats.shape[1], device=CPU).index_add(0, labels, feats)
    means = means / torch.bincount(labels, minlength=n_classes).clamp(min=1)[:, None].float()
    scale = feats.std(dim=0).clamp(min=1e-3)
    if config.feature_match != "nearest":
        return ClassFeatures(to_device(means, device), to_device(scale, device))
    return ClassFeatures(to_device(means, device), to_device(scale, device), to_device(feats, device),
                         to_device(labels, device))


def class_probabilities(y: np.ndarray, n_classes: int, class_balance: float) -> np.ndarray:
    """Draw probability per class (classes without items get 0)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts ** (1.0 - class_balance), 0.0)
    return weights / weights.sum()


class Networks:
    """The networks and optimisers of a run, on ``device`` (built on the CPU, then moved);
    :meth:`modules` gives them by checkpoint key."""

    def __init__(self, n_classes: int, channels: int, size: int, config: GANConfig, device: torch.device = CPU) -> None:
        generator, discriminator = build_seeded(lambda: (
            Generator(n_classes, channels, size, config.z_dim, config.width, config.class_latents, config.class_norms),
            Discriminator(n_classes, channels, size, config.width, classifier=config.adc_weight > 0,
                          contrast=config.critic_contrast)), config.seed)
        self.device = device
        # channels-last: the convolutions run 10-20% faster on the CPU (oneDNN) and on CUDA, same maths
        self.generator = generator.to(device, memory_format=torch.channels_last)
        self.discriminator = discriminator.to(device, memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.generator).eval()  # the moving average of its weights: what sampling uses
        betas = (0.0, 0.9)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_generator, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_discriminator, betas=betas)

    def modules(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer]:
        """Every network and optimiser, by attribute name: the keys of a checkpoint."""
        return {key: value for key, value in vars(self).items()
                if isinstance(value, (torch.nn.Module, torch.optim.Optimizer))}


def recolour(images: torch.Tensor, share: float, rng: torch.Generator) -> torch.Tensor:
    """``images: (N, 3, H, W)`` in [-1, 1] with a ``share`` of them recoloured: the three channels in a
    random order, and negated (each colour replaced by its opposite) half of the time. Shapes stay;
    which colours draw them changes, as between two images of one class whose colours vary freely."""
    n = len(images)
    chosen = torch.rand(n, generator=rng, device=rng.device) < share
    order = torch.argsort(torch.rand(n, 3, generator=rng, device=rng.device), dim=1)
    sign = torch.where(torch.rand(n, generator=rng, device=rng.device) < 0.5, -1.0, 1.0)
    swapped = torch.gather(images, 1, order[:, :, None, None].expand_as(images)) * sign[:, None, None, None]
    return torch.where(chosen[:, None, None, None], swapped, images)


class Minibatches:
    """What a training step draws, all from the run's one seeded ``rng`` (so the order of the calls
    is part of the result): class-balanced real minibatches, labels and latents for fakes, DiffAugment.

    ``real: (N, C, H, W)`` in [-1, 1], ``labels: (N,)`` int64 in ``[0, n_classes)``, both on the
    CPU like ``rng``; what the methods return is on ``device`` (each batch moved there)."""

    def __init__(self, real: torch.Tensor, labels: torch.Tensor, n_classes: int, config: GANConfig,
                 rng: torch.Generator, device: torch.device = CPU) -> None:
        self.real, self.labels, self.rng, self.device = real, labels, rng, device
        self.members = [torch.from_numpy(np.flatnonzero(labels.numpy() == k)) for k in range(n_classes)]
        self.class_p = torch.from_numpy(class_probabilities(labels.numpy(), n_classes, config.class_balance))
        self.z_dim, self.translation, self.cutout = config.z_dim, config.translation, config.cutout
        self.colour = config.colour_jitter
        self.recolour = config.recolour if real.shape[1] == 3 else 0.0  # grey images have no colours to swap

    def _classes(self, n: int) -> torch.Tensor:
        return torch.multinomial(self.class_p, n, replacement=True, generator=self.rng)

    def classes(self, n: int) -> torch.Tensor:
        """``(n,)`` class indices, drawn with :func:`class_probabilities`."""
        return to_device(self._classes(n), self.device)

    def real_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` real images ``(n, C, H, W)`` and their labels ``(n,)``: a class, then one of its images."""
        idx = torch.stack([self.members[c][torch.randint(len(self.members[c]), (1,), generator=self.rng,
                                                         device=self.rng.device)[0]]
                           for c in self._classes(n).tolist()])
        images = self.real[idx]
        if self.recolour > 0:
            images = recolour(images, self.recolour, self.rng)
        images = images.contiguous(memory_format=torch.channels_last)
        return to_device(images, self.device), to_device(self.labels[idx], self.device)

    def latents(self, n: int) -> torch.Tensor:
        return to_device(torch.randn(n, self.z_dim, generator=self.rng, device=self.rng.device), self.device)

    def augment(self, images: torch.Tensor, colour: bool | None = None) -> torch.Tensor:
        """DiffAugment of ``images``; the colour op when ``colour`` (default: the config's
        ``colour_jitter``, which only the critic's views use)."""
        return diff_augment(images, self.rng, self.translation, self.cutout, self.colour if colour is None else colour)


class GeneratorLosses(NamedTuple):
    adversarial: torch.Tensor  # -E[D(G(z))]
    mode_seeking: torch.Tensor
    total: torch.Tensor  # what the generator step minimised, with the regularisers' weights


class Fakes(NamedTuple):
    """A critic step's fakes, kept for the generator step that follows (as PyTorch's DCGAN example
    reuses them): ``images: (2H, C, H, W)`` still attached to the generator's graph, for the labels
    ``labels: (2H,)`` (``H`` classes drawn, each twice) from latents ``latents: (2H, z_dim)``, so the
    mode-seeking term compares ``images[:H]`` with ``images[H:]``."""

    images: torch.Tensor
    labels: torch.Tensor
    latents: torch.Tensor


def critic_step(nets: Networks, objective: losses.AdversarialLoss, batches: Minibatches, config: GANConfig,
                lecam_anchors: dict[str, float], keep_fakes: bool = False) -> tuple[torch.Tensor, Fakes | None]:
    """(1) One critic update on ``B = 2 * (batch_size // 2)`` class-balanced real images and ``B`` fakes
    (``B / 2`` classes, two latents each), all in [-1, 1] and DiffAugmented; -> the
    critic's loss (a scalar, LeCam included) and, with ``keep_fakes``, the fakes with their graph (the
    generator step that follows trains on them: one generator forward per step instead of two)."""
    half = config.batch_size // 2
    x_real, y_real = batches.real_batch(2 * half)
    y_fake = batches.classes(half).repeat(2)
    z = batches.latents(2 * half)
    with torch.set_grad_enabled(keep_fakes), autocast(nets.device):
        attached = nets.generator(z, y_fake).float()
    x_fake = attached.detach()
    with autocast(nets.device):
        real_scores, real_logits = nets.discriminator.scores(batches.augment(x_real), y_real)
        fake_scores, fake_logits = nets.discriminator.scores(batches.augment(x_fake), y_fake)
    real_scores, fake_scores = real_scores.float(), fake_scores.float()
    # losses and the gradient penalty: float32, outside autocast
    d_loss = objective.critic(real_scores, fake_scores,
                              lambda: gradient_penalty(nets.discriminator, x_real, x_fake, batches.rng, y_real))
    if config.adc_weight > 0:
        d_loss = d_loss + config.adc_weight * losses.adc_critic(real_logits.float(), y_real, fake_logits.float(), y_fake)
    if config.lecam_weight > 0:
        d_loss = d_loss + config.lecam_weight * losses.lecam(real_scores, fake_scores, lecam_anchors)
    nets.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    nets.opt_d.step()
    return d_loss, Fakes(attached, y_fake, z) if keep_fakes else None


def generator_step(nets: Networks, objective: losses.AdversarialLoss, config: GANConfig, fakes: Fakes,
                   guide: Judge | None, copies: MemorisationRejection | None, batches: Minibatches,
                   targets: ClassFeatures | None = None) -> GeneratorLosses:
    """(2) One generator update on the last critic step's ``fakes`` (scored by the critic as it is
    after that step's update): ``batch_size // 2`` labels with two latents each (the mode-seeking term
    compares the two images); ``guide`` adds the judge's guidance (with ``targets``, also the class
    feature matching term), ``copies`` withholds all reward from near-copies of real images."""
    half = len(fakes.labels) // 2
    images, y_gen, z = fakes
    keep = None if copies is None else copies.weights(images.detach(), y_gen)
    # the critic's weights get no gradient here: backward goes through it to the images only
    nets.discriminator.requires_grad_(False)
    with autocast(nets.device):
        fake_scores, fake_logits = nets.discriminator.scores(batches.augment(images), y_gen)
    adversarial = objective.generator(fake_scores.float(), keep)
    ms = losses.mode_seeking(images[:half], images[half:], z[:half], z[half:])
    g_total = adversarial + config.mode_seeking_weight * ms
    if config.adc_weight > 0:
        g_total = g_total + config.adc_weight * losses.adc_generator(fake_logits.float(), y_gen, keep)
    if guide is not None:
        with autocast(nets.device):
            features = guide.features(batches.augment(images, colour=False) if config.guide_augment else images)
            logits = guide.head(features).float()
        if config.guide_weight > 0:
            g_total = g_total + config.guide_weight * losses.guidance(logits, y_gen, config.guide_confidence, keep)
        if targets is not None:
            if config.feature_match == "nearest":
                matching = losses.class_feature_support(features.float(), y_gen, targets.features, targets.labels,
                                                        targets.scale)
            else:
                matching = losses.class_feature_matching(features.float(), y_gen, targets.means, targets.scale)
            g_total = g_total + config.feature_match_weight * matching
    nets.opt_g.zero_grad(set_to_none=True)
    g_total.backward()
    nets.discriminator.requires_grad_(True)
    nets.opt_g.step()
    return GeneratorLosses(adversarial, ms, g_total)


class Bookkeeping:
    """Everything around the maths: the history and progress reports, previews of the EMA generator
    on fixed latents, checkpoints, the clock. Nothing here draws from the training ``rng``."""

    def __init__(self, config: GANConfig, nets: Networks, rng: torch.Generator, data_digest: str, n_classes: int,
                 checkpoint_path: str | Path | None, progress: Progress | None, log_every: int | None,
                 preview: Preview | None, preview_every: int | None) -> None:
        self.config, self.nets, self.rng, self.data_digest = config, nets, rng, data_digest
        self.checkpoint_path, self.progress, self.preview = checkpoint_path, progress, preview
        self.log_every = log_every or max(1, config.steps // 20)
        self.preview_every = preview_every or max(1, config.steps // 10)
        self.start_step, self.history, self.seconds_before = 0, [], 0.0
        if preview is not None:
            self.preview_y = torch.arange(min(n_classes, PREVIEW_CLASSES), device=CPU).repeat_interleave(PREVIEW_PER_CLASS)
            self.preview_z = torch.randn(len(self.preview_y), config.z_dim, device=CPU,
                                         generator=torch.Generator(device=CPU).manual_seed(config.seed + 1))

    def resume(self) -> int:
        """Load a checkpoint of the same config and data into the networks and the ``rng``, if there
        is one; -> the step to start from."""
        self.start_step, self.history, self.seconds_before = resume(
            self.checkpoint_path, asdict(self.config), self.data_digest, self.nets.modules(), self.rng, self.config.steps)
        return self.start_step

    def start(self) -> None:
        self.started = time.perf_counter()
        if self.preview is not None and self.start_step == 0:
            # the untrained generator: a viewer that opens at step 0 (as MLflow's image card does) shows it
            self.show(0)
        elif self.preview is not None and self.start_step >= self.config.steps:
            # resumed from a finished checkpoint: no step is left to preview, so show the trained generator
            self.show(self.start_step)

    def seconds(self) -> float:
        """Training time so far, the time before a resume included."""
        return self.seconds_before + time.perf_counter() - self.started

    def after_step(self, done: int, d_loss: torch.Tensor, g: GeneratorLosses) -> None:
        """After ``done`` generator steps: preview, report and checkpoint when each is due."""
        if self.preview is not None and self._due(done, self.preview_every):
            self.show(done)
        if self._due(done, self.log_every):
            self.report(done, d_loss, g)
        if self.checkpoint_path is not None and self._due(done, self.config.checkpoint_every):
            self.save(done)

    def _due(self, done: int, every: int) -> bool:
        return done % every == 0 or done == self.config.steps

    def show(self, step: int) -> None:
        device = self.nets.device
        with torch.no_grad():
            images = self.nets.ema(to_device(self.preview_z, device), to_device(self.preview_y, device))
            images = ((images + 1.0) / 2.0).clamp(0, 1)
        self.preview(step, images.cpu().numpy().astype(np.float32), self.preview_y.numpy())

    def report(self, done: int, d_loss: torch.Tensor, g: GeneratorLosses) -> None:
        rate = (time.perf_counter() - self.started) / max(done - self.start_step, 1)
        metrics = {"d_loss": d_loss.item(), "g_adversarial_loss": g.adversarial.item(), "g_total_loss": g.total.item(),
                   "mode_seeking": g.mode_seeking.item(), "seconds": self.seconds(),
                   "eta_seconds": rate * (self.config.steps - done)}
        self.history.append({"step": done, **metrics})
        if self.progress is not None:
            self.progress(done, self.config.steps, metrics)
        else:
            log.info("step %d/%d d_loss %.3f g_adversarial_loss %.3f eta %.0fs", done, self.config.steps,
                     metrics["d_loss"], metrics["g_adversarial_loss"], metrics["eta_seconds"])

    def save(self, done: int) -> None:
        save_checkpoint(self.checkpoint_path, {
            "step": done, "config": asdict(self.config), "fingerprint": self.data_digest,
            **{key: module.state_dict() for key, module in self.nets.modules().items()},
            "rng": self.rng.get_state(), "history": self.history, "seconds": self.seconds(),
        })


def train_conditional_gan(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: GANConfig = GANConfig(),
    checkpoint_path: str | Path | None = None,
    progress: Progress | None = None,
    log_every: int | None = None,
    preview: Preview | None = None,
    preview_every: int | None = None,
    device: torch.device | str = CPU,
) -> TrainedGAN:
    """Train on every class at once so rare classes borrow structure from common ones.

    ``x: (N, C, H, W)`` float32 in [0, 1]; ``y: (N,)`` int in ``[0, n_classes)``. With
    ``checkpoint_path`` the state is saved every ``config.checkpoint_every`` steps and a matching
    checkpoint (same config and data) is resumed. ``progress(step, steps, metrics)`` is called every
    ``log_every`` steps (default: a twentieth of the run) and at the end; metrics hold ``d_loss`` (the
    critic's), ``g_adversarial_loss`` (-E[D(G(z))]), ``g_total_loss`` (with the regularisers),
    ``mode_seeking``, ``seconds`` and ``eta_seconds``. With class latents, the autoencoder phase
    before them reports as ``progress(0, steps, metrics)`` with ``metrics["phase"] == "autoencoder"``
    (``autoencoder_step``, ``autoencoder_steps``, ``reconstruction_mse``, ``seconds``, ``eta_seconds``).
    ``preview(step, images, labels)`` is called at step 0 (a fresh run), every ``preview_every`` steps
    (default: a tenth of the run) and at the end with the EMA generator's images of the same fixed latents each time
    (:data:`PREVIEW_PER_CLASS` per class), drawn from their own seeded stream in eval mode: a run with
    previews trains exactly as one without.
    ``device``: where the networks train (a ``torch.device`` or a name :func:`~pipelines.devices.resolve_device`
    takes, "auto" included); the images stay on the CPU and move per minibatch.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    channels, height, width = x.shape[1:]
    if height != width:
        raise ValueError(f"images must be square, got {height}x{width}")
    device = resolve_device(device)
    config = resolve_label_weight(config, x, y)  # the trained GAN's config holds the weight used
    nets = Networks(n_classes, channels, height, config, device)
    rng = torch.Generator(device=CPU).manual_seed(config.seed)
    book = Bookkeeping(config, nets, rng, fingerprint_arrays(x, y), n_classes, checkpoint_path, progress, log_every,
                       preview, preview_every)
    start_step = book.resume()

    real = torch.from_numpy(x) * 2.0 - 1.0
    labels = torch.from_numpy(y)
    if config.class_latents and start_step == 0:  # a resumed run has the pretrained weights and prior
        started = time.perf_counter()

        def report(step: int, steps: int, mse: float) -> None:
            seconds = time.perf_counter() - started
            metrics = {"phase": "autoencoder", "autoencoder_step": step, "autoencoder_steps": steps,
                       "reconstruction_mse": mse, "seconds": seconds, "eta_seconds": seconds / step * (steps - step)}
            if progress is not None:
                progress(0, config.steps, metrics)
            else:
                log.info("autoencoder step %d/%d reconstruction mse %.4f", step, steps, mse)

        pretrain_autoencoder(nets.generator, real, labels, n_classes, config, device, report)
        nets.ema.load_state_dict(nets.generator.state_dict())
        book.seconds_before += time.perf_counter() - started  # part of the GAN's training time
    # data and seed fix the judge, so a resumed run trains the same judge again instead of storing it
    judge = train_judge(real, labels, n_classes, config, device) if config.uses_judge else None
    batches = Minibatches(real, labels, n_classes, config, rng, device)
    objective = losses.adversarial_loss(config.loss, config.gp_weight)
    guide = judge if config.guide_weight > 0 or config.feature_match_weight > 0 else None
    targets = class_feature_targets(judge, real, labels, n_classes, config, device) \
        if guide is not None and config.feature_match_weight > 0 else None
    copies = MemorisationRejection(real, labels, n_classes, config.memorisation_rejection, device) \
        if config.memorisation_rejection > 0 else None
    lecam_anchors = {"real": 0.0, "fake": 0.0}  # moving averages of the critic's outputs

    book.start()
    for step in range(start_step, config.steps):
        check_stop()  # a SIGTERM reaches training in a worker thread here; the last checkpoint resumes
        nets.generator.train()
        # (1) critic step(s): real images up, fakes down
        # (the last one keeps its fakes for the generator step)
        for i in range(config.critic_steps):
            d_loss, fakes = critic_step(nets, objective, batches, config, lecam_anchors, i == config.critic_steps - 1)
        # (2) generator step: the same fakes, pushed towards what the updated critic scores as real
        g_losses = generator_step(nets, objective, config, fakes, guide, copies, batches, targets)
        # warm-up: the EMA follows the generator closely at first (decay 0.1, 0.18, ...)
        ema_update(nets.ema, nets.generator, min(config.ema_decay, (1.0 + step) / (10.0 + step)))
        book.after_step(step + 1, d_loss, g_losses)
    total_seconds = book.seconds()
    novelty = NoveltyFilter.fit(x, y, n_classes, config.novelty_quantile, config.seed) \
        if config.novelty_quantile > 0 else None
    return TrainedGAN(nets.ema.eval(), config, n_classes, (channels, height, width), book.history, total_seconds,
                      judge, novelty, device=device)
