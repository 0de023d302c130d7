"""The forward process q(x_t | x_0) on pictures, for the Denoise tab (no UI here).

    pictures = noised_images(faces, t=500, seed=0, schedule=pipe.schedule)   # x0, noise, x_t
    pictures = noised_latents(pipe, faces, t=500, seed=0)                     # z_t, decoded

In closed form, x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε: in pixel space (x_0 = 2·image − 1) and
in the autoencoder's latent space (z_0 = the scaled posterior mean), with ε seeded so that
moving t keeps the same noise; plus the latent drawn as a picture (a tile per channel) and the
ᾱ_t / SNR curves the tab plots.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from playground.data.images import IMAGE_SIZE, images_to_tensor, tensor_to_images
from playground.diffusion import NoiseSchedule, draw_noise
from playground.pipelines.inputs import whole_number
from playground.pipelines.latent_diffusion import MAX_SEED, LatentDiffusion


def check_timestep(t, schedule: NoiseSchedule) -> int:
    """t as an int in [0, T − 1]."""
    t = whole_number(t, "the timestep t")
    if not 0 <= t < schedule.num_timesteps:
        raise ValueError(f"the timestep t must be between 0 and {schedule.num_timesteps - 1}, "
                         f"got {t}")
    return t


def noised_images(images, t: int, seed: int, schedule: NoiseSchedule) -> dict[str, np.ndarray]:
    """The forward process in pixel space, in closed form:

        x_t = sqrt(ᾱ_t) · x_0 + sqrt(1 − ᾱ_t) · ε,   ε ~ N(0, I),   x_0 = 2 · image − 1 ∈ [−1, 1]

    Args:
        images: uint8 (N, 64, 64, 3) faces.
        t: timestep 0 … T − 1 (t = 0 already adds a little noise: ᾱ_0 = 1 − β_0).
        seed: seeds ε (a CPU generator), so moving t keeps the same noise.
    Returns:
        {"x0", "noise", "x_t"}: uint8 (N, 64, 64, 3) pictures of x_0, ε and x_t, each mapped
        from [−1, 1] to 0 … 255 (values outside are clipped: noise beyond ±1 saturates).
    """
    t = check_timestep(t, schedule)
    seed = whole_number(seed, "noise seed")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"noise seed must be between 0 and 2^63 - 1, got {seed}")
    x0 = images_to_tensor(images) * 2 - 1  # (N, 3, 64, 64) in [-1, 1]
    noise = draw_noise(x0.shape, torch.Generator().manual_seed(seed))
    x_t = schedule.q_sample(x0, t, noise)
    return {name: tensor_to_images((v + 1) / 2) for name, v in
            (("x0", x0), ("noise", noise), ("x_t", x_t))}


def noised_latents(pipe: LatentDiffusion, images, t: int, seed: int) -> dict[str, np.ndarray]:
    """The same forward process on the autoencoder's latent z_0 = E(x) (what latent diffusion
    noises), decoded back to pictures.

    Returns:
        {"z_t": uint8 (N, 64, 64, 3) picture of the latent channels (`latent_picture`),
         "decoded": uint8 (N, 64, 64, 3) D(z_t)}.
    """
    t = check_timestep(t, pipe.schedule)
    z0 = pipe.encode(images_to_tensor(images))  # (N, C, h, w)
    noise = draw_noise(z0.shape, torch.Generator().manual_seed(whole_number(seed, "noise seed")),
                       device=z0.device)
    z_t = pipe.schedule.q_sample(z0, t, noise)
    return {"z_t": latent_picture(z_t), "decoded": tensor_to_images(pipe.decode(z_t))}


def latent_picture(x: torch.Tensor, size: int = IMAGE_SIZE, limit: float = 3.0) -> np.ndarray:
    """Latents (N, C, h, w) → uint8 (N, size, size, 3): the C channels as grey tiles in a
    ceil(√C)-wide grid (4 channels: 2 × 2), value −limit … +limit mapped to black … white,
    enlarged (nearest neighbour) to `size`. Pure noise looks like TV static at every t."""
    x = x.detach().float().cpu()
    if x.dim() != 4:
        raise ValueError(f"expected latents (N, C, h, w), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    grey = ((x.clamp(-limit, limit) + limit) / (2 * limit) * 255).round().to(torch.uint8)
    canvas = torch.full((n, rows * h, cols * w), 128, dtype=torch.uint8)
    for i in range(c):
        r, k = divmod(i, cols)
        canvas[:, r * h:(r + 1) * h, k * w:(k + 1) * w] = grey[:, i]
    side = max(rows * h, cols * w)
    scale = max(1, size // side)
    canvas = canvas.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    picture = canvas[..., None].expand(-1, -1, -1, 3).numpy()
    if picture.shape[1:3] != (size, size):  # sizes that do not divide evenly
        from PIL import Image

        picture = np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.NEAREST))
                            for p in picture])
    return np.ascontiguousarray(picture)


def schedule_curves(schedule: NoiseSchedule) -> dict[str, np.ndarray]:
    """{"t": (T,), "alphas_cumprod": ᾱ_t (T,), "snr": ᾱ_t / (1 − ᾱ_t) (T,)} as float64 arrays."""
    ab = schedule.alphas_cumprod.numpy()
    return {"t": np.arange(schedule.num_timesteps), "alphas_cumprod": ab, "snr": ab / (1 - ab)}
