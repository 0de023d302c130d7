"""Checks of what a caller asks the diffusion pipeline for: prompts, the guidance scale, and
the sampler with its steps and η (no UI here).

Each returns the clean value or raises ValueError with a message the app shows as it is, e.g.
"the prompt is 1,050,000 characters long; at most 2,000 are accepted …".
"""
from __future__ import annotations

import math

from playground.pipelines.inputs import whole_number

SAMPLERS = ("ddim", "ddpm", "dpm++")  # dpm++: DPM-Solver++(2M), deterministic like DDIM η = 0
DEFAULT_DDIM_STEPS = 50  # S when a DDIM run does not say
MAX_BATCH = 1024  # prompts per sample call at most
MAX_PROMPT_CHARS = 2_000  # longer prompts are refused (CLIP reads 77 tokens, ~300 characters)
EXAMPLE_PROMPT = "a smiling woman with blond hair"  # the Prompt tab's first prompt


def check_prompt(prompt, name: str = "prompt") -> str:
    """A prompt string (None → ""); ValueError for a non-string or one over MAX_PROMPT_CHARS."""
    if prompt is None:
        return ""
    if not isinstance(prompt, str):
        raise ValueError(f"the {name} must be text, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the {name} is {len(prompt):,} characters long; at most "
                         f"{MAX_PROMPT_CHARS:,} are accepted (the text encoder reads only the "
                         "first 77 tokens, about 300 characters)")
    return prompt


def check_prompts(prompts) -> list[str]:
    """A non-empty list of prompts (a single string is refused: it is easy to pass by mistake)."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise ValueError("prompts must be a list of strings (one face per prompt), got "
                         f"{type(prompts).__name__}")
    if not 1 <= len(prompts) <= MAX_BATCH:
        raise ValueError(f"give between 1 and {MAX_BATCH} prompts, got {len(prompts)}")
    return [check_prompt(p) for p in prompts]


def check_guidance(guidance) -> float:
    """The guidance scale w as a float ≥ 0; ValueError for NaN, ±inf, negative or not a number."""
    try:
        w = float(guidance)
    except (TypeError, ValueError):
        raise ValueError(f"the guidance scale must be a number, got {guidance!r}") from None
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"the guidance scale must be a finite number >= 0, got {guidance!r}")
    return w


def check_sampler(sampler, steps, eta, num_timesteps: int) -> tuple[str, int, float]:
    """(sampler, steps, eta) checked, with the default steps filled in."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if steps is None:
        steps = num_timesteps if sampler == "ddpm" else min(DEFAULT_DDIM_STEPS, num_timesteps)
    steps = whole_number(steps, "steps")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be between 1 and {num_timesteps}, got {steps}")
    try:
        eta = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}") from None
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    return sampler, steps, eta

