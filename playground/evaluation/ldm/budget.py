"""The sampling budget: the measured cost of a denoising step, each part's ETA, and the sample
counts that fit ``--minutes``."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from playground.evaluation.ldm.config import MAX_SAMPLES, EvalConfig
from playground.evaluation.ldm.sampler_table import table1_rows
from playground.evaluation.ldm.sampling import initial_noise
from playground.evaluation.ldm.solver_frontier import frontier_rows

# Share of --minutes each part may use when its sample count is "auto" (normalised over the
# parts of one run; pixel and words run a fixed amount of work).
BUDGET_SHARES = {"table1": 0.45, "frontier": 0.15, "guidance": 0.33, "vae": 0.04, "pixel": 0.0,
                 "grid": 0.03, "words": 0.0}


@dataclass
class StepCost:
    """Measured cost of one ``pipeline.sample`` call on a batch: ``overhead + per_step · steps``."""

    batch_size: int
    overhead: float  # seconds per call that do not depend on the steps (text encoder, decoder)
    per_step: float  # seconds per denoising step of a batch

    def seconds(self, n: int, steps: int) -> float:
        """Seconds to sample n images with ``steps`` steps in batches of ``batch_size`` (a last,
        partial batch costs its share of a full one)."""
        return n / self.batch_size * (self.overhead + self.per_step * steps)


def measure_step_cost(pipeline, batch_size: int, guidance: float, prompt: str, seed: int = 0,
                      steps: tuple[int, int] = (2, 6)) -> StepCost:
    """Time ``pipeline.sample`` (DDIM) on one batch at two step counts and fit a line."""
    prompts = [prompt] * batch_size
    x_T = initial_noise(pipeline, batch_size, seed)
    pipeline.sample(prompts[:2], guidance=guidance, sampler="ddim", steps=1, eta=0.0, seed=seed,
                    x_T=x_T[:2])  # warm-up (first-call allocations)
    times = []
    for s in steps:
        t0 = time.perf_counter()
        pipeline.sample(prompts, guidance=guidance, sampler="ddim", steps=s, eta=0.0, seed=seed,
                        x_T=x_T)
        times.append(time.perf_counter() - t0)
    per_step = max((times[1] - times[0]) / (steps[1] - steps[0]), 1e-9)
    return StepCost(batch_size, max(times[0] - per_step * steps[0], 0.0), per_step)


def estimate_seconds(part: str, cfg: EvalConfig, n: int, k: int, uncond: StepCost,
                     guided: StepCost, num_timesteps: int) -> float:
    """Sampling seconds of one part, for n samples per table row and k per prompt and w."""
    if part == "table1":
        return sum(uncond.seconds(n, r["steps"]) for r in table1_rows(cfg.table_steps, num_timesteps))
    if part == "frontier":  # (rows the DDIM table already measured are reused: an upper bound)
        return (sum(uncond.seconds(n, r["steps"]) for r in frontier_rows(cfg.frontier_steps))
                + sum(guided.seconds(n, r["steps"])
                      for r in frontier_rows(cfg.frontier_steps, "captioned")))
    if part == "guidance":
        per_w = guided.seconds(len(cfg.guidance_prompts) * k, cfg.fast_steps)
        return len(cfg.guidance_scales) * per_w
    if part == "vae":
        # unprompted (or nothing, after table1) + captioned, at w = 1; VAE decodes: ~0
        return 2 * uncond.seconds(n, cfg.fast_steps)
    if part == "grid":
        return guided.seconds(len(cfg.grid_prompts) * cfg.grid_seeds, cfg.fast_steps)
    return 0.0  # pixel: a fixed number of training steps; words: no sampling


def choose_counts(parts: Sequence[str], cfg: EvalConfig, uncond: StepCost, guided: StepCost,
                  num_timesteps: int) -> tuple[int, int]:
    """(n per table row, k per prompt and w). Given counts are kept; an auto (None) one is the
    largest that fits its part's share of ``cfg.minutes``: n a multiple of 10 (≥ 20, ≤ 1000),
    k with k · prompts ≤ 1000 (≥ 4)."""
    weights = {p: BUDGET_SHARES[p] for p in parts if BUDGET_SHARES[p] > 0}
    if "table1" in weights and "vae" in weights:  # the VAE table then reuses the table's samples
        weights["table1"] += weights.pop("vae")
    if "table1" in weights and "frontier" in weights:  # one n for both; the frontier reuses the
        weights["table1"] += weights.pop("frontier")  # table's rows and adds ~7 % to its steps
    budget = {p: cfg.minutes * 60 * w / (sum(weights.values()) or 1) for p, w in weights.items()}

    def largest(part: str, count: Callable[[int], tuple[int, int]], values: range, floor: int) -> int:
        best = floor
        for v in values:
            if estimate_seconds(part, cfg, *count(v), uncond, guided, num_timesteps) > budget[part]:
                break
            best = v
        return best

    n = cfg.samples
    if n is None:
        part = next((p for p in ("table1", "frontier", "vae") if p in parts), None)
        n = largest(part, lambda v: (v, 0), range(20, MAX_SAMPLES + 1, 10), 20) if part else 0
    k = cfg.guidance_samples
    if k is None:
        cap = max(MAX_SAMPLES // len(cfg.guidance_prompts), 4)
        k = largest("guidance", lambda v: (0, v), range(4, cap + 1), 4) if "guidance" in parts else 0
    return int(n), int(k)


def format_minutes(seconds: float) -> str:
    """Seconds as minutes with one decimal, for the ETA and timing lines on stderr."""
    return f"{seconds / 60:.1f} min"
