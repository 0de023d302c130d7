"""Classifier-free guidance (Ho & Salimans 2021) as a wrapper around a denoiser.

    eps~(x_t, c) = eps(x_t, null) + w * (eps(x_t, c) - eps(x_t, null))

w = 0 is the unconditional model, w = 1 the conditional one, w > 1 pushes samples further towards
the prompt (sharper, less diverse). Both predictions come from ONE forward pass on a batch of 2N:
[x_t; x_t] with conditioning [null; c].

``cond`` and ``null_cond`` are tensors (or dicts / tuples / lists of tensors, e.g. text tokens and
their padding mask) whose leading dimension is the batch N. The null conditioning may be given for
one sample (shape ``cond.shape[1:]`` or ``(1, *cond.shape[1:])``, e.g. the embedding of the empty
prompt) and is then broadcast to N, or per sample (shape ``cond.shape``, e.g. a negative prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from playground.diffusion.samplers import Denoiser


def _broadcast_null(null: Any, cond: Any, n: int, where: str = "cond") -> Any:
    """null expanded to cond's structure and batch size n."""
    if isinstance(cond, torch.Tensor):
        if not isinstance(null, torch.Tensor):
            raise ValueError(f"null_cond must be a tensor where {where} is one, got {type(null).__name__}")
        if cond.dim() == 0 or cond.shape[0] != n:
            raise ValueError(f"{where} must have batch size {n} as its first dimension, got {tuple(cond.shape)}")
        if null.shape == cond.shape[1:]:
            null = null.unsqueeze(0)
        if null.shape[1:] != cond.shape[1:] or null.shape[0] not in (1, n):
            raise ValueError(
                f"null_cond for {where} must have shape {tuple(cond.shape[1:])}, (1, ...) or "
                f"{tuple(cond.shape)}, got {tuple(null.shape)}"
            )
        return null.to(device=cond.device, dtype=cond.dtype).expand_as(cond)
    if isinstance(cond, dict):
        if not isinstance(null, dict) or set(null) != set(cond):
            raise ValueError(f"null_cond must be a dict with the keys of {where}: {sorted(cond)}")
        return {k: _broadcast_null(null[k], cond[k], n, f"{where}[{k!r}]") for k in cond}
    if isinstance(cond, (tuple, list)):
        if not isinstance(null, (tuple, list)) or len(null) != len(cond):
            raise ValueError(f"null_cond must be a sequence of {len(cond)} items like {where}")
        return type(cond)(_broadcast_null(a, b, n, f"{where}[{i}]") for i, (a, b) in enumerate(zip(null, cond)))
    raise ValueError(
        f"{where} must be a tensor (or a dict/tuple/list of tensors) for classifier-free guidance, "
        f"got {type(cond).__name__}"
    )


def _concat(a: Any, b: Any) -> Any:
    """[a; b] along the batch dimension, for tensors or matching dicts / tuples / lists of them."""
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b], dim=0)
    if isinstance(a, dict):
        return {k: _concat(a[k], b[k]) for k in a}
    return type(a)(_concat(x, y) for x, y in zip(a, b))


@dataclass
class GuidedDenoiser:
    """A denoiser (x_t, t, cond) -> eps applying classifier-free guidance to ``denoiser``."""

    denoiser: Denoiser  # the conditional model eps(x_t, t, cond), trained with condition dropout
    w: float  # the guidance scale
    null_cond: Any  # the "no condition" input, broadcast to the batch

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """x_t (N, C, H, W), t long (N,), cond (N, ...) -> guided eps (N, C, H, W)."""
        if cond is None:
            raise ValueError("classifier-free guidance needs a condition; call the denoiser directly for none")
        n = x_t.shape[0]
        null = _broadcast_null(self.null_cond, cond, n)
        eps = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), _concat(null, cond))  # (2N, C, H, W)
        if not isinstance(eps, torch.Tensor) or eps.shape != (2 * n, *x_t.shape[1:]):
            shape = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(f"the denoiser must return eps of shape {(2 * n, *x_t.shape[1:])}, got {shape}")
        eps_uncond, eps_cond = eps.chunk(2)  # (N, C, H, W) each
        return eps_uncond + self.w * (eps_cond - eps_uncond)


def classifier_free_guidance(denoiser: Denoiser, w: float, null_cond: Any) -> GuidedDenoiser:
    """Wrap ``denoiser`` so it returns eps(x_t, null) + w * (eps(x_t, c) - eps(x_t, null)).

    Args:
        denoiser: (x_t, t, cond) -> eps, a model that knows both c and the null condition.
        w: guidance scale (0 = unconditional, 1 = conditional, typical 3 .. 8).
        null_cond: the null condition: a tensor shaped like one sample's cond (broadcast to N) or
            like the whole batch's (e.g. a negative prompt per sample); a dict / tuple / list of
            such tensors when cond is one.
    Returns:
        a new denoiser (x_t, t, cond) -> eps that calls ``denoiser`` once, on a batch of 2N.
    """
    if not callable(denoiser):
        raise ValueError("denoiser must be callable as denoiser(x_t, t, cond)")
    w = float(w)
    if w != w:  # NaN
        raise ValueError("the guidance scale w must be a number, got NaN")
    return GuidedDenoiser(denoiser=denoiser, w=w, null_cond=null_cond)


@dataclass
class GuidanceAnatomy:
    """What classifier-free guidance does at one step, in ε and in the x^_0 it implies.

    All tensors (N, C, H, W). ``push`` = eps_guided − eps_cond = (w − 1)(eps_cond − eps_uncond)
    is what guidance adds to the conditional model's prediction; in x^_0 it becomes
    x0_guided − x0_cond = −sqrt(1/alphabar_t − 1) · push: an extrapolation of the step from
    the unconditional guess through the conditional one, w − 1 times further.
    """

    eps_uncond: torch.Tensor
    eps_cond: torch.Tensor
    eps_guided: torch.Tensor
    push: torch.Tensor
    x0_uncond: torch.Tensor
    x0_cond: torch.Tensor
    x0_guided: torch.Tensor


def guidance_anatomy(x_t: torch.Tensor, t: int, eps_uncond: torch.Tensor,
                     eps_cond: torch.Tensor, w: float, schedule) -> GuidanceAnatomy:
    """Split one guided prediction at (x_t, t) into its parts (see `GuidanceAnatomy`).

    Args:
        x_t: (N, C, H, W) the sample at timestep t; eps_uncond, eps_cond: the model's noise
        predictions without and with the condition, same shape; w: the guidance scale;
        schedule: the model's `NoiseSchedule` (for x^_0 = (x_t − sqrt(1 − alphabar_t) eps) /
        sqrt(alphabar_t)).
    """
    eps_guided = eps_uncond + w * (eps_cond - eps_uncond)
    return GuidanceAnatomy(
        eps_uncond=eps_uncond, eps_cond=eps_cond, eps_guided=eps_guided,
        push=eps_guided - eps_cond,
        x0_uncond=schedule.predict_x0(x_t, t, eps_uncond),
        x0_cond=schedule.predict_x0(x_t, t, eps_cond),
        x0_guided=schedule.predict_x0(x_t, t, eps_guided))
