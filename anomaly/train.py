"""f-AnoGAN training (Schlegl et al. 2019) on normal images only.

Stage 1: a WGAN-GP generator and critic. Stage 2: an encoder trained with G and D frozen on the
izi_f loss ``||x - G(E(x))||^2 / n + kappa * ||f(x) - f(G(E(x)))||^2 / n_f`` where ``f`` is the
critic's feature layer. Deviations from the paper, for 2 CPU cores: small networks (``width``),
far fewer iterations (but 5 critic updates per generator update, as in the paper), and
nearest-neighbour upsampling instead of transposed convolutions.

One seeded ``torch.Generator`` drives all randomness and is checkpointed with the weights, so an
interrupted run resumes to the same result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from anomaly.networks import AnoGenerator, Critic, Encoder
from gan_core.checkpoint import fingerprint_arrays, resume, save_checkpoint
from gan_core.config import GANTrainingConfig
from gan_core.seeding import build_seeded
from gan_core.regularisers import gradient_penalty
from pipelines.stopping import check_stop

log = logging.getLogger(__name__)

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

    def eval(self) -> "FAnoGAN":
        """Inference mode; channels-last weights (faster CPU convolutions, same values)."""
        for net in (self.generator, self.encoder, *self.critics):
            net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
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


def train_fanogan(
    x: np.ndarray,
    config: FAnoGANConfig = FAnoGANConfig(),
    checkpoint_path: str | Path | None = None,
    progress: Progress | None = None,
    log_every: int = 50,
) -> FAnoGAN:
    """Train both stages on normal images ``x: (N, C, H, W)`` in [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    shape = tuple(x.shape[1:])
    generator, critic, encoder = _build(config, shape)
    for net in (generator, critic, encoder):  # channels-last: ~25% faster CPU convolutions at these widths
        net.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.0, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.0, 0.9))
    opt_e = torch.optim.Adam(encoder.parameters(), lr=config.lr, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(config.seed)
    digest = fingerprint_arrays(x)
    total = config.gan_steps + config.encoder_steps
    keep_at = snapshot_steps(config)
    # filled as training passes keep_at
    snapshots = torch.nn.ModuleList(_critic(config, shape).to(memory_format=torch.channels_last) for _ in keep_at)
    modules = {"generator": generator, "critic": critic, "encoder": encoder, "opt_g": opt_g, "opt_c": opt_c, "opt_e": opt_e,
               "critic_snapshots": snapshots}
    step, history, seconds_before = resume(checkpoint_path, asdict(config), digest, modules, rng, total)

    real = (torch.from_numpy(x) * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)
    bs = min(config.batch_size, len(real))
    started = time.perf_counter()

    def batch() -> torch.Tensor:
        return real[torch.randint(len(real), (bs,), generator=rng)]

    def latent(n: int) -> torch.Tensor:
        return torch.rand(n, config.latent_dim, generator=rng) * 2 - 1

    while step < total:
        check_stop()  # a SIGTERM reaches training in a worker thread here; the last checkpoint resumes
        if step < config.gan_steps:
            stage = "gan"
            generator.train()
            for _ in range(config.critic_steps):
                x_real = batch()
                with torch.no_grad():
                    x_fake = generator(latent(bs))
                c_loss = critic(x_fake).mean() - critic(x_real).mean()
                penalty = gradient_penalty(critic, x_real, x_fake, rng)
                opt_c.zero_grad(set_to_none=True)
                (c_loss + config.gp_weight * penalty).backward()
                opt_c.step()
            g_loss = -critic(generator(latent(bs))).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            metrics = {"critic_loss": c_loss.item(), "gradient_penalty": penalty.item(), "generator_loss": g_loss.item()}
            if step + 1 in keep_at:
                snapshots[keep_at.index(step + 1)].load_state_dict(critic.state_dict())
        else:
            stage = "encoder"
            generator.eval().requires_grad_(False)
            critic.requires_grad_(False)
            x_real = batch()
            rec = generator(encoder(x_real))
            image_res = F.mse_loss(rec, x_real)
            feature_res = F.mse_loss(critic.features(rec), critic.features(x_real))
            e_loss = image_res + config.kappa * feature_res
            opt_e.zero_grad(set_to_none=True)
            e_loss.backward()
            opt_e.step()
            metrics = {"encoder_loss": e_loss.item(), "image_residual": image_res.item(),
                       "feature_residual": feature_res.item()}
        step += 1
        if step % log_every == 0 or step in (config.gan_steps, total):
            elapsed = time.perf_counter() - started
            record = {"stage": stage, "step": step, **metrics, "seconds": seconds_before + elapsed}
            history.append(record)
            if progress is not None:
                progress(stage, step, total, record)
            else:
                log.info("%s step %d/%d %s", stage, step, total, {k: round(v, 4) for k, v in metrics.items()})
        if checkpoint_path is not None and (step % config.checkpoint_every == 0 or step == total):
            save_checkpoint(checkpoint_path, {
                "step": step, "config": asdict(config), "fingerprint": digest,
                "generator": generator.state_dict(), "critic": critic.state_dict(), "encoder": encoder.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_c": opt_c.state_dict(), "opt_e": opt_e.state_dict(),
                "critic_snapshots": snapshots.state_dict(),
                "rng": rng.get_state(), "history": history,
                "seconds": seconds_before + time.perf_counter() - started,
            })
    seconds = seconds_before + time.perf_counter() - started
    return FAnoGAN(generator, critic, encoder, config, shape, history, seconds, list(snapshots)).eval()


def networks_from_state(state: dict) -> FAnoGAN:
    """Rebuild trained networks from :func:`state_of` output (no optimiser state)."""
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


def state_of(model: FAnoGAN) -> dict:
    return {"config": asdict(model.config), "image_shape": list(model.image_shape),
            "generator": model.generator.state_dict(), "critic": model.critic.state_dict(),
            "encoder": model.encoder.state_dict(), "history": model.history, "seconds": model.seconds,
            "critic_snapshots": [c.state_dict() for c in model.snapshots]}
