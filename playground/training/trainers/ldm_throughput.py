"""Training speed of a U-Net configuration on random inputs: images per second of forward,
loss, backward and optimizer step (the pixel-vs-latent comparison)."""
from __future__ import annotations

import time
from typing import Sequence

import torch

from playground.models.unet import LatentUNet, UNetConfig
from playground.training import autocast, resolve_device


def measure_train_throughput(unet_config: UNetConfig, input_shape: Sequence[int],
                             context_shape: Sequence[int], batch_size: int = 64, steps: int = 5,
                             amp: str = "none", device: str | torch.device = "cpu",
                             warmup: int = 1, seed: int = 0) -> float:
    """Training images per second of a U-Net (forward, MSE loss, backward, Adam step) on
    random inputs, timed by the wall clock after `warmup` untimed steps.

    Args:
        input_shape: (C, H, W) of x_t, e.g. (4, 16, 16) for the latent or (3, 64, 64) pixels
            (``unet_config.in_channels`` must match C).
        context_shape: (L, D) of the text tokens, e.g. (77, 128) (all L tokens real).
    Returns:
        images per second.
    """
    device = resolve_device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LatentUNet(unet_config).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn((batch_size, *input_shape), generator=g).to(device)
    eps = torch.randn((batch_size, *input_shape), generator=g).to(device)
    context = torch.randn((batch_size, *context_shape), generator=g).to(device)
    mask = torch.ones(batch_size, context_shape[0], dtype=torch.bool, device=device)
    t = torch.randint(0, unet_config.schedule.num_timesteps, (batch_size,), generator=g).to(device)

    def one():
        with autocast(device, amp):
            pred = model(x, t, context, mask)
        loss = (pred.float() - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch_size * steps / (time.perf_counter() - start)
