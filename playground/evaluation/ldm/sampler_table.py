"""The DDIM paper's Table 1 on SynthFaces: FD-judge and wall time of DDIM and DDPM at several step
counts, and the issue's targets read off the rows."""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from playground.evaluation.ldm.config import UNCONDITIONAL_PROMPT, EvalConfig
from playground.evaluation.ldm.sampling import initial_noise, sample_and_judge
from playground.evaluation.ldm.scores import fd_to_reference
from playground.training import mix_seed

# The targets.
FD_WITHIN = 0.20  # DDIM-50's FD at most 20 % above DDPM-1000's
TIME_RATIO_MIN = 18.0  # DDPM-1000 at least 18× slower than DDIM-50


def table1_rows(table_steps: Sequence[int], num_timesteps: int) -> list[dict]:
    """The rows of the DDIM table, in order: ``{"sampler", "eta", "steps", "method"}``. Method
    "ddim" is `ddim_sample` (with η = 1: the paper's strided DDPM rows), "ddpm" the ancestral
    chain over all T = ``num_timesteps`` steps."""
    rows = [{"sampler": "DDIM", "eta": 0.0, "steps": int(s), "method": "ddim"} for s in table_steps]
    rows += [{"sampler": "DDPM", "eta": 1.0, "steps": int(s), "method": "ddim"} for s in table_steps]
    rows.append({"sampler": "DDPM", "eta": 1.0, "steps": int(num_timesteps), "method": "ddpm"})
    return rows


def evaluate_table1(pipeline, judge, reference, n: int, cfg: EvalConfig,
                    cache: dict | None = None) -> dict:
    """The DDIM paper's Table 1 (package docstring): ``{"ddim_table": rows, "targets":
    {"ddim_table": checks}}``. ``cache`` receives the unconditional DDIM-``fast_steps`` set."""
    x_T = initial_noise(pipeline, n, cfg.seed)
    prompts = [UNCONDITIONAL_PROMPT] * n
    rows = []
    for spec in table1_rows(cfg.table_steps, pipeline.schedule.num_timesteps):
        name = f"{spec['sampler']}-{spec['steps']} (η={spec['eta']:g})"
        result = sample_and_judge(pipeline, judge, prompts, x_T, guidance=1.0,
                                  sampler=spec["method"], steps=spec["steps"], eta=spec["eta"],
                                  seed=mix_seed(cfg.seed, 1), batch_size=cfg.batch_size,
                                  desc=name, progress=cfg.progress)
        fd = fd_to_reference(result.features, reference)
        rows.append({**spec, "fd": fd, "seconds": result.seconds,
                     "seconds_per_sample": result.seconds / n, "cpu_seconds": result.cpu_seconds,
                     "n": n})
        print(f"  {name:<20} FD-judge {fd:9.4f}   {result.seconds:8.1f} s "
              f"({result.cpu_seconds:.1f} s CPU)", file=sys.stderr)
        if cache is not None and (spec["method"], spec["eta"], spec["steps"]) == ("ddim", 0.0,
                                                                                  cfg.fast_steps):
            cache[("uncond", cfg.fast_steps, n, cfg.seed)] = result
    return {"ddim_table": rows, "targets": {"ddim_table": table1_targets(rows, cfg.fast_steps)}}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None  # JSON has no inf


def table1_targets(rows: list[dict], fast_steps: int = 50) -> dict:
    """The issue's Table 1 targets, computed from the rows: booleans with their numbers."""
    def row(sampler: str, steps: int, method: str = "ddim") -> dict:
        return next(r for r in rows if (r["sampler"], r["steps"], r["method"]) == (sampler, steps, method))

    per_s = {}
    for r in rows:
        if r["sampler"] == "DDIM":
            ddpm = row("DDPM", r["steps"])
            per_s[str(r["steps"])] = {"ddim_fd": r["fd"], "ddpm_fd": ddpm["fd"],
                                      "ddim_better": r["fd"] < ddpm["fd"]}
    fast = row("DDIM", fast_steps)
    full = next(r for r in rows if r["method"] == "ddpm")
    fd_ratio = fast["fd"] / full["fd"] if full["fd"] > 0 else math.inf
    time_ratio = full["seconds"] / fast["seconds"] if fast["seconds"] > 0 else math.inf
    cpu_ratio = (full["cpu_seconds"] / fast["cpu_seconds"]
                 if fast.get("cpu_seconds") and "cpu_seconds" in full else None)
    return {
        "ddim_beats_ddpm": {"per_steps": per_s, "met": all(v["ddim_better"] for v in per_s.values())},
        "ddim50_fd_within_20pct_of_ddpm1000": {
            "ddim_steps": fast_steps, "ddpm_steps": full["steps"],
            "ddim_fd": fast["fd"], "ddpm_fd": full["fd"], "ratio": _finite(fd_ratio),
            "limit": 1 + FD_WITHIN, "met": fd_ratio <= 1 + FD_WITHIN},
        "ddpm1000_over_ddim50_time": {
            "ddim_steps": fast_steps, "ddpm_steps": full["steps"],
            "ddpm_seconds": full["seconds"], "ddim_seconds": fast["seconds"],
            "ratio": _finite(time_ratio), "limit": TIME_RATIO_MIN, "met": time_ratio >= TIME_RATIO_MIN,
            "cpu_ratio": cpu_ratio},  # the same ratio in CPU time (a check on a busy machine)
    }
