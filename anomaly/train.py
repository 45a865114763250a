"""f-AnoGAN training (Schlegl et al. 2019) on normal images only.

Stage 1: a WGAN-GP generator and critic. Stage 2: an encoder trained with G and D frozen on the
izi_f loss ``||x - G(E(x))||^2 / n + kappa * ||f(x) - f(G(E(x)))||^2 / n_f`` where ``f`` is the
critic's feature layer; the losses are in :mod:`anomaly.losses`, and each stage is a loop of update
steps with progress, history and checkpoints kept apart. Deviations from the paper, for 2 CPU
cores: small networks (``width``), far fewer iterations (but 5 critic updates per generator update,
as in the paper), and nearest-neighbour upsampling instead of transposed convolutions.

One seeded ``torch.Generator`` drives all randomness and is checkpointed with the weights, so an
interrupted run resumes to the same result. It lives on the CPU on every device: the networks are
built on the CPU (their initial weights from the seeded process-wide CPU RNG) and then moved to the
``device`` of the run, and every draw (batch indices, latents, the penalty's interpolation weights) is
made on the CPU and moved there (see :mod:`pipelines.devices`). On CUDA the forward passes run under
bf16 autocast, the losses and the gradient penalty in float32; on the CPU nothing changes. State
(checkpoints, :func:`state_of`) is saved as CPU tensors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from anomaly.losses import critic_loss, generator_loss, izif_loss
from anomaly.networks import AnoGenerator, Critic, Encoder
from gan_core.checkpoint import fingerprint_arrays, resume, save_checkpoint
from gan_core.config import GANTrainingConfig
from gan_core.seeding import build_seeded
from gan_core.regularisers import gradient_penalty
from pipelines.devices import autocast, to_device
from pipelines.stopping import check_stop

log = logging.getLogger(__name__)
CPU = torch.device("cpu")

Progress = Callable[[str, int, int, dict], None]  # (stage, step, steps, metrics)


@dataclass(frozen=True)
class FAnoGANConfig(GANTrainingConfig):
    """Hyperparameters on top of :class:`~gan_core.config.GANTrainingConfig`: ``gan_steps`` generator
    updates of stage 1, ``encoder_steps`` encoder updates of stage 2, ``kappa`` the weight of the
    feature residual in the izi_f loss and the anomaly score, ``snapshots`` the number of critics
    kept from stage 1 (a snapshot ensemble: the critic's features drift while it trains, and
    distances measured by several of them vary less than those of one)."""

    latent_dim: int = 64
    width: int = 8
    gan_steps: int = 500
    critic_steps: int = 5
    encoder_steps: int = 100
    lr: float = 2e-4
    kappa: float = 1.0
    snapshots: int = 5  # critics kept: copies at evenly spaced points of stage 1, the last being the final one


@dataclass
class FAnoGAN:
    generator: AnoGenerator
    critic: Critic
    encoder: Encoder
    config: FAnoGANConfig
    image_shape: tuple[int, int, int]
    history: list[dict]
    seconds: float
    snapshots: list[Critic] = field(default_factory=list)  # earlier critics of stage 1, oldest first

    @property
    def critics(self) -> list[Critic]:
        """The snapshot ensemble: the earlier critics, then the final one."""
        return [*self.snapshots, self.critic]

    @property
    def nets(self) -> list[torch.nn.Module]:
        return [self.generator, self.encoder, *self.critics]

    @property
    def device(self) -> torch.device:
        """Where the networks are (all of them are on one device)."""
        return next(self.generator.parameters()).device

    def eval(self) -> "FAnoGAN":
        """Inference mode; channels-last weights (faster CPU convolutions, same values)."""
        for net in self.nets:
            net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        return self

    def to(self, device: torch.device) -> "FAnoGAN":
        """The networks moved to ``device`` (in place; nothing moves when they are there already)."""
        if self.device != device:
            for net in self.nets:
                net.to(device)
        return self


def snapshot_steps(config: FAnoGANConfig) -> list[int]:
    """Generator steps after which a copy of the critic is kept (the final critic is the last snapshot)."""
    n = max(1, config.snapshots)
    return sorted({max(1, round(config.gan_steps * k / n)) for k in range(1, n)} - {config.gan_steps})


def _build(config: FAnoGANConfig, shape: tuple[int, int, int]) -> tuple[AnoGenerator, Critic, Encoder]:
    c, h, _ = shape
    return build_seeded(lambda: (AnoGenerator(config.latent_dim, c, h, config.width), Critic(c, h, config.width),
                                 Encoder(config.latent_dim, c, h, config.width)), config.seed)


def _critic(config: FAnoGANConfig, shape: tuple[int, int, int]) -> Critic:
    """An empty critic of the right shape, to load a snapshot's weights into."""
    return build_seeded(lambda: Critic(shape[0], shape[1], config.width), config.seed)


@dataclass
class _Run:
    """The networks and optimisers one training run updates; :meth:`modules` names them as the checkpoint does."""

    generator: AnoGenerator
    critic: Critic
    encoder: Encoder
    critic_snapshots: torch.nn.ModuleList  # filled as stage 1 passes snapshot_steps
    opt_g: torch.optim.Optimizer
    opt_c: torch.optim.Optimizer
    opt_e: torch.optim.Optimizer

    @classmethod
    def build(cls, config: FAnoGANConfig, shape: tuple[int, int, int], device: torch.device = CPU) -> "_Run":
        """Built on the CPU, then moved to ``device``, before the optimisers are made."""
        generator, critic, encoder = _build(config, shape)
        for net in (generator, critic, encoder):  # channels-last: ~25% faster CPU convolutions at these widths
            net.to(device, memory_format=torch.channels_last)
        snapshots = torch.nn.ModuleList(_critic(config, shape).to(device, memory_format=torch.channels_last)
                                        for _ in snapshot_steps(config))
        return cls(generator, critic, encoder, snapshots,
                   opt_g=torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.0, 0.9)),
                   opt_c=torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.0, 0.9)),
                   opt_e=torch.optim.Adam(encoder.parameters(), lr=config.lr, betas=(0.5, 0.999)))

    def modules(self) -> dict:
        return {"generator": self.generator, "critic": self.critic, "encoder": self.encoder, "opt_g": self.opt_g,
                "opt_c": self.opt_c, "opt_e": self.opt_e, "critic_snapshots": self.critic_snapshots}


class _Draws:
    """Every random draw of a run, from its one seeded CPU ``rng``: real batches ``(bs, C, H, W)`` of
    the training images (kept on the CPU) and latents ``(bs, latent_dim)`` from the uniform prior on
    [-1, 1], each drawn on the CPU and then moved to ``device``."""

    def __init__(self, real: torch.Tensor, config: FAnoGANConfig, rng: torch.Generator,
                 device: torch.device = CPU) -> None:
        self.real, self.rng, self.latent_dim, self.device = real, rng, config.latent_dim, device
        self.size = min(config.batch_size, len(real))

    def batch(self) -> torch.Tensor:
        index = torch.randint(len(self.real), (self.size,), generator=self.rng, device=self.rng.device)
        return to_device(self.real[index], self.device)

    def latent(self) -> torch.Tensor:
        z = torch.rand(self.size, self.latent_dim, generator=self.rng, device=self.rng.device) * 2 - 1
        return to_device(z, self.device)


class _Bookkeeping:
    """Progress, history and checkpoints of a run, apart from the maths. Starts from the checkpoint
    at ``checkpoint_path`` made with the same settings and data ``digest``, if there is one (loaded
    into ``run`` and ``rng``); :meth:`done` after every update."""

    def __init__(self, config: FAnoGANConfig, digest: str, run: _Run, rng: torch.Generator,
                 checkpoint_path: str | Path | None, progress: Progress | None, log_every: int) -> None:
        self.config, self.digest, self.modules, self.rng = config, digest, run.modules(), rng
        self.checkpoint_path, self.progress, self.log_every = checkpoint_path, progress, log_every
        self.total = config.gan_steps + config.encoder_steps
        self.step, self.history, self.seconds_before = resume(checkpoint_path, asdict(config), digest, self.modules,
                                                              rng, self.total)
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def done(self, stage: str, metrics: dict) -> None:
        """Count one update; record it every ``log_every`` steps and at the end of each stage, and
        checkpoint every ``checkpoint_every`` steps and at the end. ``metrics`` are 0-d tensors, read
        (a wait for the GPU) only when recorded."""
        self.step += 1
        step, total = self.step, self.total
        if step % self.log_every == 0 or step in (self.config.gan_steps, total):
            metrics = {key: float(value) for key, value in metrics.items()}
            record = {"stage": stage, "step": step, **metrics, "seconds": self.seconds()}
            self.history.append(record)
            if self.progress is not None:
                self.progress(stage, step, total, record)
            else:
                log.info("%s step %d/%d %s", stage, step, total, {k: round(v, 4) for k, v in metrics.items()})
        if self.checkpoint_path is not None and (step % self.config.checkpoint_every == 0 or step == total):
            save_checkpoint(self.checkpoint_path, {
                "step": step, "config": asdict(self.config), "fingerprint": self.digest,
                **{name: module.state_dict() for name, module in self.modules.items()},
                "rng": self.rng.get_state(), "history": self.history, "seconds": self.seconds(),
            })


def _critic_step(run: _Run, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator, gp_weight: float) -> dict:
    """One WGAN-GP update of the critic on a real and a generated batch (the penalty's double
    backward in float32, outside autocast)."""
    loss = critic_loss(run.critic, real, fake)
    penalty = gradient_penalty(run.critic, real, fake, rng)
    run.opt_c.zero_grad(set_to_none=True)
    (loss + gp_weight * penalty).backward()
    run.opt_c.step()
    return {"critic_loss": loss.detach(), "gradient_penalty": penalty.detach()}


def _generator_step(run: _Run, z: torch.Tensor) -> dict:
    """One update of the generator against the critic, from latents ``z``."""
    with autocast(z.device):
        fake = run.generator(z)
    loss = generator_loss(run.critic, fake)
    run.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    run.opt_g.step()
    return {"generator_loss": loss.detach()}


def _encoder_step(run: _Run, real: torch.Tensor, kappa: float) -> dict:
    """One izi_f update of the encoder (G and D frozen)."""
    loss, image_residual, feature_residual = izif_loss(run.generator, run.critic, run.encoder, real, kappa)
    run.opt_e.zero_grad(set_to_none=True)
    loss.backward()
    run.opt_e.step()
    return {"encoder_loss": loss.detach(), "image_residual": image_residual.detach(),
            "feature_residual": feature_residual.detach()}


def _train_gan(run: _Run, draws: _Draws, config: FAnoGANConfig, book: _Bookkeeping) -> None:
    """Stage 1: ``critic_steps`` critic updates per generator update, up to ``gan_steps``; copies
    of the critic kept after the :func:`snapshot_steps`."""
    keep_at = snapshot_steps(config)
    run.generator.train()
    while book.step < config.gan_steps:
        check_stop()  # a SIGTERM reaches training in a worker thread here; the last checkpoint resumes
        # (1) update the critic: maximise D(real) - D(G(z)), gradient-penalised
        for _ in range(config.critic_steps):
            real = draws.batch()
            with torch.no_grad(), autocast(draws.device):
                fake = run.generator(draws.latent())
            fake = fake.float()  # bf16 under CUDA autocast; the penalty interpolates in float32
            metrics = _critic_step(run, real, fake, draws.rng, config.gp_weight)
        # (2) update the generator: maximise D(G(z))
        metrics.update(_generator_step(run, draws.latent()))
        if book.step + 1 in keep_at:
            run.critic_snapshots[keep_at.index(book.step + 1)].load_state_dict(run.critic.state_dict())
        book.done("gan", metrics)


def _train_encoder(run: _Run, draws: _Draws, config: FAnoGANConfig, book: _Bookkeeping) -> None:
    """Stage 2: ``encoder_steps`` izi_f updates of the encoder, with G (in inference mode) and D frozen."""
    run.generator.eval().requires_grad_(False)
    run.critic.requires_grad_(False)
    while book.step < book.total:
        check_stop()
        book.done("encoder", _encoder_step(run, draws.batch(), config.kappa))


def train_fanogan(
    x: np.ndarray,
    config: FAnoGANConfig = FAnoGANConfig(),
    checkpoint_path: str | Path | None = None,
    progress: Progress | None = None,
    log_every: int = 50,
    device: torch.device = CPU,
) -> FAnoGAN:
    """Train both stages on normal images ``x: (N, C, H, W)`` in [0, 1] on ``device``. A checkpoint
    at ``checkpoint_path`` made with the same config and data is resumed (on any device: it holds
    CPU tensors); ``progress(stage, step, steps, record)`` gets every ``log_every``-th record
    (without it they are logged). The networks returned are on ``device``."""
    x = np.asarray(x, dtype=np.float32)
    shape = tuple(x.shape[1:])
    run = _Run.build(config, shape, device)
    rng = torch.Generator(device=CPU).manual_seed(config.seed)
    book = _Bookkeeping(config, fingerprint_arrays(x), run, rng, checkpoint_path, progress, log_every)
    real = (torch.from_numpy(x) * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)
    draws = _Draws(real, config, rng, device)
    _train_gan(run, draws, config, book)
    _train_encoder(run, draws, config, book)
    return FAnoGAN(run.generator, run.critic, run.encoder, config, shape, book.history, book.seconds(),
                   list(run.critic_snapshots)).eval()


def networks_from_state(state: dict) -> FAnoGAN:
    """Rebuild trained networks from :func:`state_of` output (no optimiser state), on the CPU."""
    config = FAnoGANConfig(**state["config"])
    shape = tuple(state["image_shape"])
    generator, critic, encoder = _build(config, shape)
    generator.load_state_dict(state["generator"])
    critic.load_state_dict(state["critic"])
    encoder.load_state_dict(state["encoder"])
    snapshots = []
    for weights in state.get("critic_snapshots", []):  # none in a state saved before the snapshot ensemble
        snapshot = _critic(config, shape)
        snapshot.load_state_dict(weights)
        snapshots.append(snapshot)
    return FAnoGAN(generator, critic, encoder, config, shape, state.get("history", []), state.get("seconds", 0.0),
                   snapshots).eval()


def host_weights(net: torch.nn.Module) -> dict:
    """``net.state_dict()`` with its tensors on the CPU (kept as they are there), its metadata kept."""
    state = net.state_dict()
    for key, value in state.items():
        state[key] = value.cpu()
    return state


def state_of(model: FAnoGAN) -> dict:
    """The networks' weights (as CPU tensors, wherever the networks are), settings and history."""
    return {"config": asdict(model.config), "image_shape": list(model.image_shape),
            "generator": host_weights(model.generator), "critic": host_weights(model.critic),
            "encoder": host_weights(model.encoder), "history": model.history, "seconds": model.seconds,
            "critic_snapshots": [host_weights(c) for c in model.snapshots]}
