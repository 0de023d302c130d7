"""The first-stage autoencoder of latent diffusion (Rombach et al. 2022): a KL-regularised
convolutional autoencoder with a *spatial* latent.

Encoder E: image x (N, 3, 64, 64) in [0, 1] → the mean and log-variance of a diagonal Gaussian
q(z | x) over a latent z of shape (N, latent_channels, latent_size, latent_size), e.g. 16×16×4.
Decoder D: z → image. Training (`playground.training.trainers.autoencoder`) minimises

    L = |x − D(z)|  (or (x − D(z))², both averaged per element)
        + kl_weight · KL(q(z | x) ‖ N(0, I))  (averaged per latent element),  z = μ + σ·ε,

with a *small* kl_weight: the KL only keeps the latent bounded and slightly noisy (so the
decoder is robust to small errors of the diffusion model); it does not make z a N(0, I) sample.
After training, ``scale_factor`` = 1 / std(z) on a training sample is stored in the config, and
`encode` / `decode` work on *scaled* latents z · scale_factor, which have about unit variance —
what the diffusion model's noise schedule assumes.

Layout (one *level* per resolution, widths from ``channels``):

    encoder: conv3×3 → [level 0, 64×64] → down → [level 1: res blocks] → … → down →
             [last level: res blocks] → GN, SiLU, conv3×3 → (μ, log σ²)
    decoder: conv3×3 → [last level: res blocks] → up → … → up → [level 0] → GN, SiLU, conv3×3
             (with ``decoder_extra_blocks``, each level, 64×64 included, ends with that many more)

Level 0 (the full 64×64 resolution) has no residual block: it is by far the most expensive
resolution on a CPU, and the stride-2 convolutions that enter and leave it already work there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from playground.models.blocks import ResBlock, identity_stack
from playground.models.checks import check_images

# Default widths per level for each latent size (64 / latent_size = 2 ** (levels - 1)).
# Narrow at high resolution, where every channel costs the most (measured on the 2-core CPU:
# (16, 32, 64) trains ~3.4x faster than (32, 64, 128)).
DEFAULT_CHANNELS: dict[int, tuple[int, ...]] = {
    32: (16, 32),
    16: (16, 32, 64),
    8: (16, 32, 64, 128),
    4: (16, 32, 64, 128, 128),
}


@dataclass
class AutoencoderConfig:
    """Architecture of a `KLAutoencoder` (and its latent scale); saved as ``config.json``."""

    kind: ClassVar[str] = "autoencoder"  # registry key in config.json (not a field)

    latent_channels: int = 4  # channels of the spatial latent z
    latent_size: int = 16  # side of z: 64 / latent_size must be a power of two (16 → 16×16×4)
    channels: tuple[int, ...] | None = None  # width per level, 64×64 first (None = by latent_size)
    num_res_blocks: int = 1  # residual blocks per level below 64×64, in encoder and decoder
    # more residual blocks per decoder level, 64×64 included, after the ones above (as the LDM
    # paper's decoder is deeper than its encoder); each starts as the identity (see Decoder)
    decoder_extra_blocks: int = 0
    image_size: int = 64  # input height = width
    in_channels: int = 3  # RGB
    norm_groups: int = 8  # GroupNorm groups (batch-independent, DDP-safe)
    kl_weight: float = 1e-6  # training: weight of the per-element KL vs the per-element recon
    scale_factor: float = 1.0  # 1 / std of the latents, set after training (1 = not yet set)

    def __post_init__(self):
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")
        if (self.latent_size < 1 or self.image_size % self.latent_size
                or not _is_power_of_two(self.image_size // self.latent_size)):
            raise ValueError(f"latent_size must divide image_size={self.image_size} by a power "
                             f"of two (e.g. 8 or 16), got {self.latent_size}")
        levels = self.levels
        if self.channels is None:
            if self.image_size != 64 or self.latent_size not in DEFAULT_CHANNELS:
                raise ValueError("give channels explicitly (one width per level) for "
                                 f"image_size={self.image_size}, latent_size={self.latent_size}")
            self.channels = DEFAULT_CHANNELS[self.latent_size]
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != levels:
            raise ValueError(f"channels {self.channels} must have {levels} entries: one per "
                             f"resolution from {self.image_size} down to {self.latent_size}")
        if any(c < 1 or c % self.norm_groups for c in self.channels):
            raise ValueError(f"every width in {self.channels} must be a positive multiple of "
                             f"norm_groups={self.norm_groups}")
        if self.num_res_blocks < 0:
            raise ValueError(f"num_res_blocks must be >= 0, got {self.num_res_blocks}")
        if self.decoder_extra_blocks < 0:
            raise ValueError(f"decoder_extra_blocks must be >= 0, got {self.decoder_extra_blocks}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if not (self.scale_factor > 0 and math.isfinite(self.scale_factor)):
            raise ValueError(f"scale_factor must be a positive number, got {self.scale_factor}")

    @property
    def levels(self) -> int:
        """Resolutions from image_size down to latent_size (2 for 64 → 32, 3 for 64 → 16)."""
        return int(round(math.log2(self.image_size // self.latent_size))) + 1

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent, e.g. (4, 16, 16)."""
        return (self.latent_channels, self.latent_size, self.latent_size)


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _down(c_in: int, c_out: int) -> nn.Module:
    """Stride-2 conv: (N, c_in, H, W) → (N, c_out, H/2, W/2)."""
    return nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1)


def _up(c_in: int, c_out: int) -> nn.Module:
    """Stride-2 transposed conv (kernel 4 = 2 × stride: no checkerboard): (N, c_in, H, W) →
    (N, c_out, 2H, 2W)."""
    return nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1)


class Encoder(nn.Module):
    """x (N, 3, 64, 64) in [−1, 1] → moments (N, 2·latent_channels, h, w): [μ, log σ²]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c, g = cfg.channels, cfg.norm_groups
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, c[0], 3, padding=1)]
        for i in range(1, len(c)):
            layers.append(_down(c[i - 1], c[i]))
            layers += [ResBlock(c[i], g) for _ in range(cfg.num_res_blocks)]
        layers += [nn.GroupNorm(g, c[-1]), nn.SiLU(),
                   nn.Conv2d(c[-1], 2 * cfg.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """z (N, latent_channels, h, w) (unscaled) → image (N, 3, 64, 64) in [−1, 1] (unclamped).

    ``extra[level]`` holds the level's ``decoder_extra_blocks`` residual blocks, run where the
    level's own blocks end (before its upsampling; at 64×64, before the output head). They live
    outside ``net`` so that ``net``'s weight names are those of a decoder without them, and
    their last convolution starts at zero, so each starts as the identity: a trained decoder
    warm-starts into a deeper one that draws exactly what it drew (`new_at_warm_start`)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c, g = cfg.channels, cfg.norm_groups
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, c[-1], 3, padding=1)]
        self._extra_after: dict[int, int] = {}  # index in net after which a level's extras run
        for i in range(len(c) - 1, 0, -1):
            layers += [ResBlock(c[i], g) for _ in range(cfg.num_res_blocks)]
            self._extra_after[len(layers) - 1] = i
            layers.append(_up(c[i], c[i - 1]))
        self._extra_after[len(layers) - 1] = 0
        layers += [nn.GroupNorm(g, c[0]), nn.SiLU(),
                   nn.Conv2d(c[0], cfg.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.extra = nn.ModuleList()
        if cfg.decoder_extra_blocks:
            self.extra = nn.ModuleList(identity_stack(c[i], g, cfg.decoder_extra_blocks)
                                       for i in range(len(c)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        for index, layer in enumerate(self.net):
            x = layer(x)
            if len(self.extra) and index in self._extra_after:
                x = self.extra[self._extra_after[index]](x)
        return x


class KLAutoencoder(nn.Module):
    """KL-regularised autoencoder: (N, 3, 64, 64) in [0, 1] ↔ latents (N, C, h, w).

    The public `encode` / `decode` use *scaled* latents (``z · scale_factor``, about unit
    variance once trained); `encode_moments`, `decode_unscaled` and `forward` use raw z.
    """

    # weights a warm start may find missing in an older model: they start as the identity
    new_at_warm_start = ("decoder.extra.",)

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config = config or AutoencoderConfig()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    @property
    def scale_factor(self) -> float:
        return self.config.scale_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent."""
        return self.config.latent_shape

    def encoder_tensors(self) -> dict[str, torch.Tensor]:
        """The weights `encode` depends on, by state_dict name: two models with equal tensors
        here and the same scale factor give a U-Net the same latents."""
        return {k: v for k, v in self.state_dict().items() if k.startswith("encoder.")}

    # ----------------------------------------------------------------------------- checks
    def _check_latents(self, z: torch.Tensor) -> None:
        shape = self.config.latent_shape
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != shape:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"expected latents of shape (N, {', '.join(map(str, shape))}), "
                             f"got {got}")
        if not z.is_floating_point():
            raise ValueError(f"expected float latents, got dtype {z.dtype}")

    # ----------------------------------------------------------------------------- raw z
    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): images (N, 3, 64, 64) in [0, 1] → (mean, logvar), each (N, C, h, w), unscaled."""
        check_images(x, self.config.in_channels, self.config.image_size)
        mean, logvar = self.encoder(x * 2 - 1).chunk(2, dim=1)  # (N, C, h, w) each
        return mean, logvar.clamp(-30.0, 20.0)  # keeps exp(logvar) finite

    @staticmethod
    def reparameterize(mean: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = μ + σ·ε with σ = exp(½ log σ²), ε ~ N(0, I) (from `generator`, or given)."""
        if eps is None:
            gen_device = generator.device if generator is not None else mean.device
            eps = torch.randn(mean.shape, generator=generator, device=gen_device).to(mean)
        elif eps.shape != mean.shape:
            raise ValueError(f"eps has shape {tuple(eps.shape)}, expected {tuple(mean.shape)}")
        return mean + torch.exp(0.5 * logvar) * eps

    def decode_unscaled(self, z: torch.Tensor) -> torch.Tensor:
        """Raw decoder output for an unscaled z (N, C, h, w) → (N, 3, 64, 64) ≈ [0, 1], unclamped
        (the training loss sees this, so its gradient never vanishes at the range limits)."""
        self._check_latents(z)
        return (self.decoder(z) + 1) / 2

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None):
        """Encode, sample z = μ + σ·ε, decode (training path, unscaled z).

        Returns:
            (reconstruction (N, 3, 64, 64) unclamped, mean (N, C, h, w), logvar (N, C, h, w)).
        """
        mean, logvar = self.encode_moments(x)
        z = self.reparameterize(mean, logvar, generator=generator, eps=eps)
        return self.decode_unscaled(z), mean, logvar

    # ----------------------------------------------------------------------------- public API
    def encode(self, x: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (N, 3, 64, 64) in [0, 1] → scaled latents (N, C, h, w) = z · scale_factor.

        Args:
            sample: draw z ~ q(z | x) (with `generator`) instead of taking its mean.
        """
        mean, logvar = self.encode_moments(x)
        z = self.reparameterize(mean, logvar, generator=generator) if sample else mean
        return z * self.config.scale_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (N, C, h, w) → images (N, 3, 64, 64) clamped to [0, 1]."""
        self._check_latents(latents)
        return self.decode_unscaled(latents / self.config.scale_factor).clamp(0.0, 1.0)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)) through the posterior mean: (N, 3, 64, 64) in [0, 1]."""
        mean, _ = self.encode_moments(x)
        return self.decode_unscaled(mean).clamp(0.0, 1.0)


def psnr(x_hat: torch.Tensor, x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB, for images in [0, 1] (peak 1).

    PSNR = 10 · log10(1 / MSE), the MSE taken over the pixels and channels of each image.

    Args:
        x_hat, x: (N, C, H, W).
    Returns:
        (N,) float32.
    """
    if x_hat.shape != x.shape:
        raise ValueError(f"shapes differ: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    mse = (x_hat.float() - x.float()).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse + eps)
