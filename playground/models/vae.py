"""The β-VAE: a convolutional encoder q(z | x), a Gaussian latent z and a deconvolutional decoder p(x | z).

Encoder: four stride-2 convolutions 64 → 32 → 16 → 8 → 4, then a linear map to the mean μ and
the log-variance log σ² of q(z | x) = N(μ, diag σ²). Decoder: a linear map from z to a
(256, 4, 4) feature map, then four stride-2 transposed convolutions back to 64×64 Bernoulli
logits (one per pixel and channel). With ``decoder_extra_blocks`` each decoder resolution
(4, 8, 16 and 32) also ends with that many residual blocks, which start as the identity so a
trained VAE warm-starts into the deeper decoder unchanged. With ``full_res_channels`` a small
head also works at the full 64×64 resolution, where the plain decoder has only its last
(linear) transposed convolution: it reads the same 32×32 features, upsamples them to that many
channels, runs one residual block and adds a 1×1 projection to the logits; the projection
starts at zero, so this head too warm-starts as a no-op. ``decoder_fine_blocks`` adds residual
blocks (again starting as the identity) at the two finest resolutions only, 16 and 32, where a
block costs 1/16 and 1/64 of the parameters of one at 4×4. The β of the β-VAE lives in the loss
(`playground.models.losses.beta_vae_loss`); it is stored here only so a checkpoint knows how it was
trained.

With the default config the model has 2,957,955 parameters (about 3 M).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from playground.models.blocks import ResBlock, identity_stack
from playground.models.checks import check_images


@dataclass
class VAEConfig:
    """Architecture (and training β) of a `BetaVAE`; saved as ``config.json``."""

    kind: ClassVar[str] = "vae"  # registry key in config.json (not a field)

    latent_dim: int = 128  # size of z; the traversal sliders rank these dimensions by KL
    channels: tuple[int, ...] = (32, 64, 128, 256)  # encoder widths, one stride-2 conv each
    image_size: int = 64  # input height = width; must be divisible by 2 ** len(channels)
    in_channels: int = 3  # RGB
    beta: float = 1.0  # KL weight used in training: 1 = plain VAE, > 1 = β-VAE (Higgins et al. 2017)
    norm_groups: int = 8  # GroupNorm groups after each hidden conv (batch-independent, DDP-safe)
    # residual blocks at each decoder resolution before its upsampling (0 = the plain deconv
    # stack): depth to draw small details precisely without more latent nats
    decoder_extra_blocks: int = 0
    # width of the 64×64 head that adds a correction to the logits (0 = none): the decoder's
    # only non-linear layers at full resolution, where lips, brows and mouths are drawn
    full_res_channels: int = 0
    # more residual blocks at the 16×16 and 32×32 decoder resolutions only (0 = none): depth
    # where mouths, brows and lips are drawn, at ~0.2 MB of fp16 weights per block pair
    decoder_fine_blocks: int = 0

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.channels:
            raise ValueError("channels must name at least one layer width")
        if self.image_size % (2 ** len(self.channels)):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by 2**{len(self.channels)} "
                f"(one halving per entry of channels={self.channels})"
            )
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"every channel count in {self.channels} must be divisible by "
                             f"norm_groups={self.norm_groups}")
        for name in ("decoder_extra_blocks", "decoder_fine_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.full_res_channels < 0 or self.full_res_channels % self.norm_groups:
            raise ValueError(f"full_res_channels must be 0 or a positive multiple of "
                             f"norm_groups={self.norm_groups}, got {self.full_res_channels}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")

    @property
    def bottleneck_size(self) -> int:
        """Side of the smallest feature map (4 for 64×64 inputs and four layers)."""
        return self.image_size // 2 ** len(self.channels)


def _down(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    """Stride-2 conv block: (N, c_in, H, W) → (N, c_out, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),  # GN adds the bias
        nn.GroupNorm(groups, c_out),
        nn.SiLU(),
    )


def _up(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    """Stride-2 transposed conv block: (N, c_in, H, W) → (N, c_out, 2H, 2W)."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
        nn.GroupNorm(groups, c_out),
        nn.SiLU(),
    )


class FullResolutionHead(nn.Module):
    """Features (N, C, H/2, W/2) → a logit correction (N, out, H, W), zero until trained."""

    def __init__(self, c_in: int, width: int, out: int, groups: int):
        super().__init__()
        self.up = _up(c_in, width, groups)
        self.block = ResBlock(width, groups)
        self.project = nn.Conv2d(width, out, kernel_size=1)
        nn.init.zeros_(self.project.weight)  # a no-op at the start, so --init keeps the model
        nn.init.zeros_(self.project.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.project(self.block(self.up(h)))


class BetaVAE(nn.Module):
    """Convolutional β-VAE on (N, 3, 64, 64) images in [0, 1] with a 128-d Gaussian latent."""

    # weights a warm start may find missing in an older model: they start as the identity
    new_at_warm_start = ("decoder_extra.", "full_res_head.", "decoder_fine.")

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = config or VAEConfig()
        c, g, s = config.channels, config.norm_groups, config.bottleneck_size
        widths = (config.in_channels, *c)
        self.encoder = nn.Sequential(*[_down(a, b, g) for a, b in zip(widths[:-1], widths[1:])])
        flat = c[-1] * s * s
        # One linear layer gives both halves: [μ, log σ²].
        self.to_moments = nn.Linear(flat, 2 * config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, flat)
        back = c[::-1]  # e.g. 256, 128, 64, 32
        self.decoder = nn.Sequential(
            nn.SiLU(),
            *[_up(a, b, g) for a, b in zip(back[:-1], back[1:])],
            nn.ConvTranspose2d(back[-1], config.in_channels, kernel_size=4, stride=2, padding=1),
        )
        # decoder_extra[i] runs after decoder[i] (the activation, then each upsampling but the
        # last); kept outside `decoder` so its weight names stay those of the plain VAE
        self.decoder_extra = nn.ModuleList()
        if config.decoder_extra_blocks:
            self.decoder_extra = nn.ModuleList(
                identity_stack(width, g, config.decoder_extra_blocks) for width in back)
        # decoder_fine[j] runs after decoder_extra at the two finest resolutions (16, 32)
        self.decoder_fine = nn.ModuleList()
        if config.decoder_fine_blocks:
            self.decoder_fine = nn.ModuleList(
                identity_stack(width, g, config.decoder_fine_blocks) for width in back[-2:])
        self.full_res_head = (FullResolutionHead(back[-1], config.full_res_channels,
                                                 config.in_channels, g)
                              if config.full_res_channels else None)

    # ----------------------------------------------------------------------------- checks
    def _check_latents(self, z: torch.Tensor) -> None:
        d = self.config.latent_dim
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != d:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"expected latents of shape (N, {d}), got {shape}")

    # ----------------------------------------------------------------------------- model
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): images (N, 3, 64, 64) in [0, 1] → (mu, logvar), each (N, latent_dim)."""
        check_images(x, self.config.in_channels, self.config.image_size)
        h = self.encoder(x * 2 - 1).flatten(1)  # centre the input; (N, C·s·s)
        mu, logvar = self.to_moments(h).chunk(2, dim=1)  # (N, D), (N, D)
        return mu, logvar

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = μ + σ·ε with σ = exp(½ log σ²) and ε ~ N(0, I) (drawn from `generator`, or given)."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        elif eps.shape != mu.shape:
            raise ValueError(f"eps has shape {tuple(eps.shape)}, expected {tuple(mu.shape)}")
        return mu + torch.exp(0.5 * logvar) * eps

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """p(x | z) as Bernoulli logits: z (N, latent_dim) → (N, 3, 64, 64)."""
        self._check_latents(z)
        c, s = self.config.channels[-1], self.config.bottleneck_size
        h = self.from_latent(z).view(-1, c, s, s)  # (N, 256, 4, 4)
        hidden = self.decoder[:-1]
        for index, layer in enumerate(hidden):
            h = layer(h)
            if index < len(self.decoder_extra):
                h = self.decoder_extra[index](h)
            fine = index - (len(hidden) - len(self.decoder_fine))
            if fine >= 0:
                h = self.decoder_fine[fine](h)
        logits = self.decoder[-1](h)  # h: (N, 32, 32, 32) → (N, 3, 64, 64)
        if self.full_res_head is not None:
            logits = logits + self.full_res_head(h)
        return logits

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z): z (N, latent_dim) → (N, 3, 64, 64) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None):
        """Encode, sample z by reparameterisation, decode.

        Args:
            x: (N, 3, 64, 64) images in [0, 1].
            generator: source of ε (on the model's device); ignored if `eps` is given.
            eps: optional fixed noise (N, latent_dim), e.g. a slice of a bigger batch's noise.
        Returns:
            (logits (N, 3, 64, 64), mu (N, D), logvar (N, D), z (N, D)).
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator=generator, eps=eps)
        return self.decode_logits(z), mu, logvar, z

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior z ~ N(0, I) → (n, 3, 64, 64) images in [0, 1]."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        p = next(self.parameters())
        gen_device = generator.device if generator is not None else p.device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=gen_device)
        return self.decode(z.to(device=p.device, dtype=p.dtype))
