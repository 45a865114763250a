"""Regularisers both GAN families train with: the WGAN-GP gradient penalty, differentiable
augmentation applied to real and fake images alike, and the EMA of generator weights.

Random draws come from the run's ``torch.Generator`` on its own device (the CPU) and are moved to
the images' device (towards a GPU without blocking the host), so a seed gives the same draws on
every device."""

from __future__ import annotations

import torch

from pipelines.devices import to_device


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator, *args) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad critic(x_hat)|| - 1)^2]`` on random interpolates of real and fake.

    In float32 outside any autocast (a double backward in bf16 is not safe), on ``real``'s device."""
    alpha = to_device(torch.rand(len(real), 1, 1, 1, generator=generator, device=generator.device), real.device)
    with torch.autocast(real.device.type, enabled=False):
        mixed = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
        grad = torch.autograd.grad(critic(mixed, *args).float().sum(), mixed, create_graph=True)[0]
        return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def diff_augment(x: torch.Tensor, generator: torch.Generator, translation: float = 0.125, cutout: float = 0.5,
                 colour: bool = False) -> torch.Tensor:
    """Random translation (up to ``translation`` of the side, zero fill) and one square cutout
    (``cutout`` of the side) per image, differentiable in ``x`` (Zhao et al. 2020). With ``colour``
    first the paper's colour op on ``x`` in [-1, 1], per image: brightness (add U(-0.5, 0.5)),
    saturation (each pixel's distance from its channel mean times U(0, 2)) and contrast (the
    distance from the image mean times U(0.5, 1.5)). On one channel saturation changes nothing."""
    n, _, h, w = x.shape
    device = x.device

    def draw(low: int, high: int) -> torch.Tensor:  # (n, 1, 1) on the generator's device, then on x's
        return to_device(torch.randint(low, high, (n, 1, 1), generator=generator, device=generator.device), device)

    if colour:
        u = to_device(torch.rand(n, 3, 1, 1, generator=generator, device=generator.device), device).to(x.dtype)
        x = x + (u[:, :1] - 0.5)
        pixel_mean = x.mean(dim=1, keepdim=True)
        x = (x - pixel_mean) * (u[:, 1:2] * 2.0) + pixel_mean
        image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - image_mean) * (u[:, 2:] + 0.5) + image_mean

    if translation > 0:
        shift_h, shift_w = max(1, int(h * translation + 0.5)), max(1, int(w * translation + 0.5))
        dy = draw(-shift_h, shift_h + 1)
        dx = draw(-shift_w, shift_w + 1)
        rows = torch.arange(h, device=device).view(1, h, 1) + dy
        cols = torch.arange(w, device=device).view(1, 1, w) + dx
        inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
        batch = torch.arange(n, device=device).view(n, 1, 1)
        moved = x.permute(0, 2, 3, 1)[batch, rows.clamp(0, h - 1), cols.clamp(0, w - 1)].permute(0, 3, 1, 2)
        x = moved * inside
    if cutout > 0:
        ch, cw = max(1, int(h * cutout + 0.5)), max(1, int(w * cutout + 0.5))
        cy = draw(0, h + (1 - ch % 2))
        cx = draw(0, w + (1 - cw % 2))
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        hole = ((rows - cy).abs() <= ch // 2) & ((cols - cx).abs() <= cw // 2)
        x = x * (~hole).unsqueeze(1)
    return x


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move ``ema``'s weights towards ``model``'s (``ema = decay * ema + (1 - decay) * model``); copy buffers."""
    for target, source in zip(ema.parameters(), model.parameters()):
        target.lerp_(source, 1.0 - decay)
    for target, source in zip(ema.buffers(), model.buffers()):
        target.copy_(source)
