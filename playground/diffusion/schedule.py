"""The forward (noising) process of a DDPM and the closed forms derived from it.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"):

    q(x_t | x_{t-1}) = N(x_t; sqrt(alpha_t) x_{t-1}, beta_t I),        alpha_t = 1 - beta_t
    q(x_t | x_0)     = N(x_t; sqrt(alphabar_t) x_0, (1 - alphabar_t) I), alphabar_t = prod_{s<=t} alpha_s
    q(x_{t-1} | x_t, x_0) = N(x_{t-1}; mu~_t(x_t, x_0), beta~_t I)
        mu~_t   = sqrt(alphabar_{t-1}) beta_t / (1 - alphabar_t) * x_0
                + sqrt(alpha_t) (1 - alphabar_{t-1}) / (1 - alphabar_t) * x_t
        beta~_t = (1 - alphabar_{t-1}) / (1 - alphabar_t) * beta_t

Timesteps are 0-based: t = 0 .. T-1, with alphabar_{-1} = 1 (so x_{-1} is the clean image).

All arrays are float64 tensors of shape (T,) on the CPU; every method casts what it gathers to the
dtype and device of its tensor input, and broadcasts it over (N, C, H, W) (or any (N, ...)).
There is no model in here: see ``playground.diffusion.samplers`` for the reverse process.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

SCHEDULE_KINDS = ("linear", "cosine")


@dataclass
class ScheduleConfig:
    """The noise schedule's settings (saved in a model's config.json)."""

    num_timesteps: int = 1000  # T, the number of diffusion steps (Ho et al. use 1000)
    beta_start: float = 1e-4  # beta_0 of the linear schedule (Ho et al.)
    beta_end: float = 0.02  # beta_{T-1} of the linear schedule (Ho et al.)
    kind: str = "linear"  # "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal 2021; ignores beta_start/end)
    cosine_s: float = 0.008  # the cosine schedule's small offset s, so beta_0 is not vanishingly small
    max_beta: float = 0.999  # the cosine schedule clips beta_t to this, avoiding a singularity at t = T-1

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        if int(self.num_timesteps) != self.num_timesteps or self.num_timesteps < 1:
            raise ValueError(f"num_timesteps must be a positive integer, got {self.num_timesteps!r}")
        if self.kind == "linear" and not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(
                "the linear schedule needs 0 < beta_start <= beta_end < 1, "
                f"got beta_start={self.beta_start}, beta_end={self.beta_end}"
            )
        if self.kind == "cosine" and not (self.cosine_s >= 0.0 and 0.0 < self.max_beta < 1.0):
            raise ValueError(
                f"the cosine schedule needs cosine_s >= 0 and 0 < max_beta < 1, "
                f"got cosine_s={self.cosine_s}, max_beta={self.max_beta}"
            )


def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """beta_t evenly spaced from beta_start to beta_end (Ho et al. 2020). Returns float64 (T,)."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021), "Improved DDPM". Returns float64 (T,).

    alphabar(u) = f(u) / f(0) with f(u) = cos^2((u + s) / (1 + s) * pi / 2), u = t / T in [0, 1],
    and beta_t = min(1 - alphabar((t+1)/T) / alphabar(t/T), max_beta).
    """

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    T = num_timesteps
    betas = [min(1.0 - f((t + 1) / T) / f(t / T), max_beta) for t in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


class NoiseSchedule:
    """The DDPM forward process q and its closed forms; ``NoiseSchedule()`` is linear, T = 1000.

    Build it from a ``ScheduleConfig`` or from keyword overrides of the default config, e.g.
    ``NoiseSchedule(kind="cosine")`` or ``NoiseSchedule(ScheduleConfig(num_timesteps=50))``.

    Attributes (float64 tensors of shape (T,), index t = 0 .. T-1):
        betas, alphas, alphas_cumprod (alphabar_t), alphas_cumprod_prev (alphabar_{t-1}, 1 at t=0),
        sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, sqrt_recip_alphas_cumprod,
        sqrt_recipm1_alphas_cumprod (sqrt(1/alphabar_t - 1)),
        posterior_variance (beta~_t, 0 at t=0), posterior_log_variance_clipped (log beta~_t with
        the t=0 entry replaced by t=1's so it stays finite), posterior_mean_coef1 (of x_0),
        posterior_mean_coef2 (of x_t).
    """

    def __init__(self, config: ScheduleConfig | None = None, **overrides):
        config = dataclasses.replace(config or ScheduleConfig(), **overrides)
        self.config = config
        T = self.num_timesteps = int(config.num_timesteps)

        if config.kind == "linear":
            betas = linear_betas(T, config.beta_start, config.beta_end)
        else:
            betas = cosine_betas(T, config.cosine_s, config.max_beta)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])

        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / self.alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / self.alphas_cumprod - 1.0).sqrt()

        # q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # beta~_0 = 0: log would be -inf, so reuse beta~_1 there (as improved-diffusion does)
        first = self.posterior_variance[1:2] if T > 1 else self.betas[:1]
        self.posterior_log_variance_clipped = torch.log(torch.cat([first, self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1.0 - self.alphas_cumprod)

    def __len__(self) -> int:
        return self.num_timesteps

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.config})"

    # -- helpers -------------------------------------------------------------------------------

    def _check_t(self, t: torch.Tensor | int, n: int) -> torch.Tensor:
        """Validate t and return it as a long CPU tensor of shape (n,)."""
        if isinstance(t, int):
            t = torch.full((n,), t, dtype=torch.long)
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"t must be a long tensor of shape (N,) or an int, got {type(t).__name__}")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"t must be an integer (long) tensor, got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"t must have shape ({n},) to match the batch, got {tuple(t.shape)}")
        t = t.detach().to("cpu", torch.long)
        if n and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(
                f"timesteps must lie in [0, {self.num_timesteps - 1}], got min {int(t.min())}, max {int(t.max())}"
            )
        return t

    def _gather(self, array: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """array[t] as a (N, 1, ..., 1) tensor with like's dtype and device, broadcastable to like."""
        if like.dim() < 1:
            raise ValueError("expected a batched tensor of shape (N, ...)")
        t = self._check_t(t, like.shape[0])
        values = array[t].to(device=like.device, dtype=like.dtype)  # (N,)
        return values.reshape(-1, *([1] * (like.dim() - 1)))

    @staticmethod
    def _check_same_shape(a: torch.Tensor, b: torch.Tensor, names: str):
        if a.shape != b.shape:
            raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")

    # -- the forward process -------------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) in closed form: x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps.

        Args:
            x0: clean data (N, C, H, W) (any (N, ...) works).
            t: long tensor (N,) of timesteps in [0, T-1] (an int is broadcast to N).
            noise: eps ~ N(0, I), same shape as x0.
        Returns:
            x_t, same shape, dtype and device as x0.
        """
        self._check_same_shape(x0, noise, "x0 and noise")
        return self._gather(self.sqrt_alphas_cumprod, t, x0) * x0 + self._gather(
            self.sqrt_one_minus_alphas_cumprod, t, x0
        ) * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """x^_0 = (x_t - sqrt(1 - alphabar_t) eps) / sqrt(alphabar_t), the inverse of ``q_sample``.

        Args: x_t (N, C, H, W); t long (N,); eps (N, C, H, W). Returns x^_0 (N, C, H, W).
        """
        self._check_same_shape(x_t, eps, "x_t and eps")
        return self._gather(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - self._gather(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        ) * eps

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(alphabar_t) x_0) / sqrt(1 - alphabar_t), the noise that maps x_0 to x_t.

        Args: x_t (N, C, H, W); t long (N,); x0 (N, C, H, W). Returns eps (N, C, H, W).
        """
        self._check_same_shape(x_t, x0, "x_t and x0")
        return (self._gather(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0) / self._gather(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        )

    def q_posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I).

        Args: x0 (N, C, H, W); x_t (N, C, H, W); t long (N,).
        Returns:
            mean mu~_t (N, C, H, W),
            variance beta~_t (N, 1, 1, 1),
            log-variance (N, 1, 1, 1), clipped so it is finite at t = 0 (uses beta~_1 there).
        """
        self._check_same_shape(x0, x_t, "x0 and x_t")
        mean = self._gather(self.posterior_mean_coef1, t, x_t) * x0 + self._gather(
            self.posterior_mean_coef2, t, x_t
        ) * x_t
        variance = self._gather(self.posterior_variance, t, x_t)
        log_variance = self._gather(self.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    def snr(self, t: torch.Tensor | int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Signal-to-noise ratio alphabar_t / (1 - alphabar_t) at timesteps t.

        Args: t long tensor (N,) (or an int). Returns a (N,) tensor of ``dtype`` on t's device.
        """
        device = t.device if isinstance(t, torch.Tensor) else torch.device("cpu")
        n = 1 if isinstance(t, int) or (isinstance(t, torch.Tensor) and t.dim() == 0) else t.shape[0]
        t_cpu = self._check_t(t, n)
        snr = self.alphas_cumprod[t_cpu] / (1.0 - self.alphas_cumprod[t_cpu])
        return snr.to(device=device, dtype=dtype)
