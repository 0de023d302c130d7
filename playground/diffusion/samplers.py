"""The reverse process: DDPM ancestral sampling, DDIM and DPM-Solver++(2M), as free functions of
a denoiser.

A *denoiser* is any callable ``(x_t, t, cond) -> eps``: ``x_t`` (N, C, H, W), ``t`` a long tensor
(N,) on x_t's device, ``cond`` whatever conditioning the model takes (or None); it returns the
predicted noise eps^ with x_t's shape. The samplers know no model.

Every sampler has a ``*_progressive`` generator that yields a ``Step`` after each denoising step
(so a UI can stream x_t and x^_0), and a plain function that drains it and returns x_0. An optional
``callback(step)`` is called with every ``Step`` too (k-diffusion style).

Randomness: all noise is drawn on the CPU from ``generator`` (a CPU ``torch.Generator``, or the
global CPU generator when None) and then moved to the sample's device, so a seed gives the same
samples on CPU and GPU. Sampling runs under ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from playground.diffusion.schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]

DDIM_SPACINGS = ("trailing", "leading")


@dataclass(frozen=True)
class Step:
    """One step of a sampler.

    index: 0-based step number (0 .. steps-1).
    t: the timestep the denoiser was evaluated at in this step (T-1 down to 0 for DDPM).
    x_t: the new sample after the step, (N, C, H, W) (after the last step this is x_0).
    x0_pred: the prediction x^_0 of the clean sample made in this step, (N, C, H, W).
    """

    index: int
    t: int
    x_t: torch.Tensor
    x0_pred: torch.Tensor


def draw_noise(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from ``generator``, then moved to ``device``.

    Use it for x_T too, e.g. ``draw_noise((4, 4, 16, 16), torch.Generator().manual_seed(0))``:
    the same seed gives the same tensor whatever the device.
    """
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (seeds must give the same samples on every device), "
            f"got one on {generator.device}"
        )
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device="cpu").to(device)


def ddim_timesteps(num_timesteps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """The S = ``steps`` timesteps a DDIM run visits, in decreasing order; long tensor (S,).

    spacing:
        "trailing" (default): t_i = round((i+1) T / S) - 1 for i = S-1 .. 0, so the run starts at
            t = T-1, where x_T ~ N(0, I) really holds (T=1000, S=50: 999, 979, ..., 19).
            Same as diffusers' ``timestep_spacing="trailing"``.
        "leading": t_i = i * (T // S), i = S-1 .. 0 (T=1000, S=50: 980, 960, ..., 0), as in the DDIM
            paper and diffusers' ``timestep_spacing="leading"`` with ``steps_offset=0``.
    With S = T both give T-1, T-2, ..., 0, the DDPM chain.
    """
    if spacing not in DDIM_SPACINGS:
        raise ValueError(f"spacing must be one of {DDIM_SPACINGS}, got {spacing!r}")
    if int(steps) != steps or not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be an integer in [1, {num_timesteps}], got {steps!r}")
    T, S = int(num_timesteps), int(steps)
    if spacing == "trailing":
        i = torch.arange(S, 0, -1, dtype=torch.float64)  # S .. 1
        return (torch.round(i * T / S) - 1).to(torch.long)
    return torch.arange(S - 1, -1, -1, dtype=torch.long) * (T // S)


# -- internals ----------------------------------------------------------------------------------


def _check_inputs(x_T: torch.Tensor, schedule: NoiseSchedule, generator: torch.Generator | None):
    if not isinstance(x_T, torch.Tensor) or x_T.dim() < 2 or not x_T.dtype.is_floating_point:
        raise ValueError("x_T must be a floating-point tensor of shape (N, C, H, W)")
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")


def _predict_eps(denoiser: Denoiser, x: torch.Tensor, t: int, cond: Any) -> torch.Tensor:
    """Call the denoiser at timestep t for the whole batch and check its answer."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # (N,)
    eps = denoiser(x, t_batch, cond)
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        shape = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"the denoiser must return eps with the shape of x_t {tuple(x.shape)}, got {shape}")
    return eps.to(x.dtype)  # e.g. a bf16-autocast model: keep the sampler's arithmetic in x's dtype


def _final(x_T: torch.Tensor, chain: Iterator[Step]) -> torch.Tensor:
    """Drain a progressive sampler → its last x_t, the sample x_0 (x_T if it took no step)."""
    x = x_T
    for step in chain:
        x = step.x_t
    return x


def _scalar(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A float64 schedule entry as a 0-d tensor of like's dtype and device."""
    return value.to(device=like.device, dtype=like.dtype)


# -- DDPM ---------------------------------------------------------------------------------------


@torch.no_grad()
def ddpm_sample_progressive(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    cond: Any = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
    callback: Callable[[Step], None] | None = None,
) -> Iterator[Step]:
    """DDPM ancestral sampling (Ho et al. 2020), yielding a ``Step`` after each of the T steps.

    For t = T-1 .. 0:
        x^_0    = (x_t - sqrt(1 - alphabar_t) eps^(x_t, t, cond)) / sqrt(alphabar_t)
        x_{t-1} = mu~_t(x_t, x^_0) + sqrt(beta~_t) z,   z ~ N(0, I) drawn only for t > 0,
    with the posterior variance beta~_t ("fixed small"; diffusers' ``variance_type="fixed_small"``).

    Args:
        denoiser: (x_t, t, cond) -> eps.
        x_T: the starting noise (N, C, H, W), e.g. from ``draw_noise``.
        schedule: the model's noise schedule.
        cond: passed through to the denoiser.
        generator: CPU generator for the per-step noise z.
        clip_x0: clamp x^_0 to [-1, 1] (only for data living in [-1, 1], not for latents).
        callback: called with every Step.
    """
    _check_inputs(x_T, schedule, generator)
    x = x_T
    T = schedule.num_timesteps
    for index, t in enumerate(range(T - 1, -1, -1)):
        eps = _predict_eps(denoiser, x, t, cond)
        x0_pred = schedule.predict_x0(x, t, eps)
        if clip_x0:
            x0_pred = x0_pred.clamp(-1.0, 1.0)
        mean, variance, _ = schedule.q_posterior_mean_variance(x0_pred, x, t)
        if t > 0:
            z = draw_noise(x.shape, generator, device=x.device, dtype=x.dtype)
            x = mean + variance.sqrt() * z
        else:
            x = mean
        step = Step(index=index, t=t, x_t=x, x0_pred=x0_pred)
        if callback is not None:
            callback(step)
        yield step


def ddpm_sample(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    cond: Any = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
    callback: Callable[[Step], None] | None = None,
) -> torch.Tensor:
    """DDPM ancestral sampling; returns x_0 (N, C, H, W). See ``ddpm_sample_progressive``."""
    return _final(x_T, ddpm_sample_progressive(denoiser, x_T, schedule, cond, generator, clip_x0, callback))


# -- DDIM ---------------------------------------------------------------------------------------


@torch.no_grad()
def ddim_sample_progressive(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    eta: float = 0.0,
    cond: Any = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
    spacing: str = "trailing",
    callback: Callable[[Step], None] | None = None,
) -> Iterator[Step]:
    """DDIM sampling (Song et al. 2021) over S = ``steps`` timesteps, yielding a ``Step`` after each.

    For consecutive timesteps t > s of ``ddim_timesteps(T, S, spacing)`` (s = -1 after the last,
    with alphabar_{-1} = 1, so the last step returns its x^_0):
        x^_0    = (x_t - sqrt(1 - alphabar_t) eps^) / sqrt(alphabar_t)
        sigma_t = eta * sqrt((1 - alphabar_s) / (1 - alphabar_t)) * sqrt(1 - alphabar_t / alphabar_s)
        x_s     = sqrt(alphabar_s) x^_0 + sqrt(1 - alphabar_s - sigma_t^2) eps^ + sigma_t z
    eta = 0 is deterministic (no noise is drawn); eta = 1 with S = T is DDPM with beta~_t.
    With ``clip_x0`` the clamped x^_0 is used and eps^ is recomputed from it (diffusers'
    ``use_clipped_model_output=True``).

    Args:
        denoiser: (x_t, t, cond) -> eps.
        x_T: the starting noise (N, C, H, W).
        schedule: the model's noise schedule.
        steps: S, the number of denoiser calls (1 .. T).
        eta: 0 (deterministic DDIM) .. 1 (DDPM-like noise).
        cond: passed through to the denoiser.
        generator: CPU generator for z (used only when eta > 0).
        clip_x0: clamp x^_0 to [-1, 1] (only for data living in [-1, 1], not for latents).
        spacing: "trailing" or "leading", see ``ddim_timesteps``.
        callback: called with every Step.
    """
    _check_inputs(x_T, schedule, generator)
    if not eta >= 0.0:
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    timesteps = ddim_timesteps(schedule.num_timesteps, steps, spacing).tolist()
    x = x_T
    for index, t in enumerate(timesteps):
        s = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        alphabar_t = schedule.alphas_cumprod[t]
        alphabar_s = schedule.alphas_cumprod[s] if s >= 0 else torch.tensor(1.0, dtype=torch.float64)
        sigma = eta * ((1 - alphabar_s) / (1 - alphabar_t) * (1 - alphabar_t / alphabar_s)).sqrt()

        eps = _predict_eps(denoiser, x, t, cond)
        x0_pred = schedule.predict_x0(x, t, eps)
        if clip_x0:
            x0_pred = x0_pred.clamp(-1.0, 1.0)
            eps = schedule.predict_eps(x, t, x0_pred)

        direction = (1 - alphabar_s - sigma**2).clamp(min=0.0).sqrt()
        x = _scalar(alphabar_s.sqrt(), x) * x0_pred + _scalar(direction, x) * eps
        if eta > 0 and s >= 0:
            z = draw_noise(x.shape, generator, device=x.device, dtype=x.dtype)
            x = x + _scalar(sigma, x) * z
        step = Step(index=index, t=t, x_t=x, x0_pred=x0_pred)
        if callback is not None:
            callback(step)
        yield step


def ddim_sample(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    eta: float = 0.0,
    cond: Any = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
    spacing: str = "trailing",
    callback: Callable[[Step], None] | None = None,
) -> torch.Tensor:
    """DDIM sampling; returns x_0 (N, C, H, W). See ``ddim_sample_progressive``."""
    return _final(x_T, ddim_sample_progressive(
        denoiser, x_T, schedule, steps, eta, cond, generator, clip_x0, spacing, callback
    ))


# -- DPM-Solver++ (2M) ---------------------------------------------------------------------------


@torch.no_grad()
def dpmpp_2m_sample_progressive(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 20,
    cond: Any = None,
    spacing: str = "trailing",
    callback: Callable[[Step], None] | None = None,
) -> Iterator[Step]:
    """DPM-Solver++(2M) (Lu et al. 2022): a deterministic multistep solver of the diffusion ODE
    in the data prediction x^_0, second order from its second step, yielding a ``Step`` after
    each denoiser call.

    With alpha_t = sqrt(alphabar_t), sigma_t = sqrt(1 - alphabar_t), lambda_t = log(alpha_t /
    sigma_t) (half the log-SNR), and for consecutive timesteps t > s of ``ddim_timesteps``
    (h = lambda_s - lambda_t > 0):
        x^_0(t) = (x_t - sigma_t eps^) / alpha_t
        first order (the first step, = DDIM eta 0):
            x_s = (sigma_s / sigma_t) x_t - alpha_s (e^-h - 1) x^_0(t)
        second order (with x^_0 of the previous timestep p, r = (lambda_t - lambda_p) / h):
            D   = x^_0(t) + (x^_0(t) - x^_0(p)) / (2 r)
            x_s = (sigma_s / sigma_t) x_t - alpha_s (e^-h - 1) D
    The last step goes to sigma = 0 with the first-order rule, i.e. it returns its x^_0 (as
    diffusers' ``DPMSolverMultistepScheduler`` with ``final_sigmas_type="zero"``).
    Each step calls the denoiser once, like DDIM, but reuses the previous x^_0 to follow the
    curvature of the trajectory: fewer steps for the same quality.

    Args:
        denoiser: (x_t, t, cond) -> eps.
        x_T: the starting noise (N, C, H, W).
        schedule: the model's noise schedule.
        steps: S, the number of denoiser calls (1 .. T).
        cond: passed through to the denoiser.
        spacing: "trailing" or "leading", see ``ddim_timesteps``.
        callback: called with every Step.
    """
    _check_inputs(x_T, schedule, None)
    timesteps = ddim_timesteps(schedule.num_timesteps, steps, spacing).tolist()

    def alpha_sigma_lambda(t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        alphabar = schedule.alphas_cumprod[t]  # float64
        alpha, sigma = alphabar.sqrt(), (1 - alphabar).sqrt()
        return alpha, sigma, alpha.log() - sigma.log()

    x, previous = x_T, None  # previous: (lambda, x^_0) of the last step
    for index, t in enumerate(timesteps):
        alpha_t, sigma_t, lambda_t = alpha_sigma_lambda(t)
        eps = _predict_eps(denoiser, x, t, cond)
        x0_pred = schedule.predict_x0(x, t, eps)
        last = index == len(timesteps) - 1
        if last:  # to sigma = 0, alpha = 1: x_0 is the prediction itself
            x = x0_pred
        else:
            alpha_s, sigma_s, lambda_s = alpha_sigma_lambda(timesteps[index + 1])
            h = lambda_s - lambda_t
            data = x0_pred
            if previous is not None:  # second order: a finite difference of x^_0 in lambda
                lambda_p, x0_p = previous
                r = (lambda_t - lambda_p) / h
                data = x0_pred + _scalar(1 / (2 * r), x) * (x0_pred - x0_p)
            x = _scalar(sigma_s / sigma_t, x) * x - _scalar(alpha_s * torch.expm1(-h), x) * data
        previous = (lambda_t, x0_pred)
        step = Step(index=index, t=t, x_t=x, x0_pred=x0_pred)
        if callback is not None:
            callback(step)
        yield step


def dpmpp_2m_sample(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 20,
    cond: Any = None,
    spacing: str = "trailing",
    callback: Callable[[Step], None] | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) sampling; returns x_0 (N, C, H, W). See ``dpmpp_2m_sample_progressive``."""
    return _final(x_T, dpmpp_2m_sample_progressive(denoiser, x_T, schedule, steps, cond, spacing, callback))


# -- DDIM inversion ------------------------------------------------------------------------------


@torch.no_grad()
def ddim_invert(
    denoiser: Denoiser,
    x_0: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    cond: Any = None,
    spacing: str = "trailing",
) -> torch.Tensor:
    """DDIM inversion: the x_T from which deterministic DDIM (η = 0, same steps) returns to x_0.

    DDIM with η = 0 is the Euler discretisation of an ODE, so it can be run backwards: over the
    timesteps of ``ddim_timesteps`` in increasing order, from s (the previous one; alphabar = 1
    before the first) to t:
        eps^ = eps(x_s, t)
        x^_0 = (x_s - sqrt(1 - alphabar_s) eps^) / sqrt(alphabar_s)
        x_t  = sqrt(alphabar_t) x^_0 + sqrt(1 - alphabar_t) eps^
    eps is evaluated at x_s in place of the unknown x_t (the step the sampler takes from t
    uses eps(x_t, t)), so the round trip is exact only as the steps get small; strong guidance
    makes it worse (the guided eps is far from the data's own). DDPM, being stochastic, has no
    such inverse.

    Args:
        denoiser: (x_t, t, cond) -> eps.
        x_0: the clean sample (N, C, H, W) (a face's latent).
        schedule: the model's noise schedule.
        steps: S, the number of denoiser calls (1 .. T); sample back with the same S.
        cond: passed through to the denoiser.
        spacing: "trailing" or "leading", see ``ddim_timesteps``.
    Returns:
        x_T (N, C, H, W).
    """
    _check_inputs(x_0, schedule, None)
    ascending = ddim_timesteps(schedule.num_timesteps, steps, spacing).flip(0).tolist()
    x, alphabar_s = x_0, torch.tensor(1.0, dtype=torch.float64)
    for t in ascending:
        alphabar_t = schedule.alphas_cumprod[t]
        eps = _predict_eps(denoiser, x, t, cond)
        x0_pred = (x - _scalar((1 - alphabar_s).sqrt(), x) * eps) / _scalar(alphabar_s.sqrt(), x)
        x = _scalar(alphabar_t.sqrt(), x) * x0_pred + _scalar((1 - alphabar_t).sqrt(), x) * eps
        alphabar_s = alphabar_t
    return x
