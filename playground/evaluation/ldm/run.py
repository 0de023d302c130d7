"""One evaluation run: the selected parts in order, their sample counts and times, and the merge of
their results into ``trained/<ldm>/metrics.json``."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from playground.evaluation.ldm.budget import (
    choose_counts,
    estimate_seconds,
    format_minutes,
    measure_step_cost,
)
from playground.evaluation.ldm.config import MAX_SAMPLES, UNCONDITIONAL_PROMPT, EvalConfig
from playground.evaluation.ldm.guidance_sweep import evaluate_guidance
from playground.evaluation.ldm.model_comparisons import (
    evaluate_pixel_vs_latent,
    evaluate_vae_vs_ldm,
)
from playground.evaluation.ldm.prompt_grid import evaluate_grid
from playground.evaluation.ldm.sampler_table import evaluate_table1
from playground.evaluation.ldm.scores import reference_stats
from playground.evaluation.ldm.solver_frontier import evaluate_frontier, frontier_figure
from playground.evaluation.ldm.word_sensitivity import word_sensitivity
from playground.store.checkpoints import METRICS_FILE
from playground.store.files import atomic_write_json

PARTS = ("table1", "frontier", "guidance", "vae", "pixel", "grid", "words")
# metrics.json keys each part writes, besides its entries under "targets" and "samples"
PART_KEYS: dict[str, tuple[str, ...]] = {
    "table1": ("ddim_table",),
    "frontier": ("solver_frontier",),
    "guidance": ("guidance_sweep", "guidance_per_prompt"),
    "vae": ("vae_vs_ldm", "fd_by_model"),
    "pixel": ("pixel_vs_latent",),
    "grid": ("prompt_grid",),
    "words": ("word_sensitivity",),
}
NESTED_KEYS = ("targets", "samples")  # merged one level deep (each part owns its sub-key)


def evaluate(pipeline, judge, parts: Sequence[str] = PARTS, cfg: EvalConfig | None = None,
             judge_name: str = "judge", ldm_name: str = "ldm") -> dict:
    """Run the selected parts; return the metrics to merge into metrics.json (package docstring)."""
    cfg = cfg or EvalConfig()
    unknown = sorted(set(parts) - set(PARTS))
    parts = [p for p in PARTS if p in parts]
    if unknown or not parts:
        raise ValueError(f"parts must be some of {PARTS}, got {unknown or 'none'}")
    if cfg.fast_steps not in cfg.table_steps:
        raise ValueError(f"fast_steps={cfg.fast_steps} must be one of table_steps={cfg.table_steps}")
    t_start = time.perf_counter()
    T = pipeline.schedule.num_timesteps
    counts_auto = {"samples": cfg.samples is None, "guidance_samples": cfg.guidance_samples is None}
    n = k = 0
    if any(p in parts for p in ("table1", "frontier", "guidance", "vae", "grid")):
        uncond = measure_step_cost(pipeline, cfg.batch_size, 1.0, UNCONDITIONAL_PROMPT, cfg.seed)
        guided = measure_step_cost(pipeline, cfg.batch_size, cfg.grid_guidance,
                                   cfg.guidance_prompts[0].prompt, cfg.seed)
        print(f"one denoising step of a batch of {cfg.batch_size}: {uncond.per_step * 1e3:.1f} ms "
              f"unconditional (w=1), {guided.per_step * 1e3:.1f} ms guided "
              f"(+ {uncond.overhead:.2f} / {guided.overhead:.2f} s per batch)", file=sys.stderr)
        n, k = choose_counts(parts, cfg, uncond, guided, T)
        print(f"samples: {n} per Table-1 row and VAE-table model"
              f"{' (auto)' if counts_auto['samples'] else ''}, {k} per prompt and w"
              f"{' (auto)' if counts_auto['guidance_samples'] else ''}; budget {cfg.minutes:g} min",
              file=sys.stderr)
        eta = {p: estimate_seconds(p, cfg, n, k, uncond, guided, T) for p in parts
               if p not in ("pixel", "words")}
        if "table1" in parts and "vae" in parts:
            eta["vae"] /= 2  # reuses the table's unprompted DDIM samples
        for p, s in eta.items():
            print(f"  ETA {p:<9} {format_minutes(s)}", file=sys.stderr)
        print(f"  ETA total    {format_minutes(sum(eta.values()))} (sampling only)",
              file=sys.stderr)
    reference = None
    if any(p in parts for p in ("table1", "frontier", "vae")):
        print(f"reference: judge features of {cfg.reference_n} SynthFaces {cfg.reference_split} "
              "faces", file=sys.stderr)
        reference = reference_stats(judge, cfg.reference_split, cfg.reference_n)

    out: dict = {"targets": {}, "samples": {}}
    cache: dict = {}
    common = {"seed": cfg.seed, "judge": judge_name, "device": cfg.device,
              "threads": torch.get_num_threads(), "batch_size": cfg.batch_size}
    ref = {"reference": {"split": cfg.reference_split, "n": cfg.reference_n}}
    for part in parts:
        print(f"== {part}", file=sys.stderr)
        t0 = time.perf_counter()
        if part == "table1":
            result = evaluate_table1(pipeline, judge, reference, n, cfg, cache)
            counts = {"n": n, **ref, **_count_note(n, MAX_SAMPLES, counts_auto["samples"], cfg)}
        elif part == "frontier":
            result = evaluate_frontier(pipeline, judge, reference, n, cfg,
                                       out.get("ddim_table", ()))
            ddpm_full = next((r for r in out.get("ddim_table", ()) if r["method"] == "ddpm"), None)
            figure = frontier_figure(result["solver_frontier"], cfg.frontier_path,
                                     cfg.fast_steps, ddpm_full)
            print(f"   wrote {figure}", file=sys.stderr)
            counts = {"n": n, **ref, **_count_note(n, MAX_SAMPLES, counts_auto["samples"], cfg)}
        elif part == "guidance":
            result = evaluate_guidance(pipeline, judge, k, cfg)
            per_w = k * len(cfg.guidance_prompts)
            counts = {"per_prompt_per_w": k, "prompts": len(cfg.guidance_prompts), "per_w": per_w,
                      **_count_note(per_w, MAX_SAMPLES, counts_auto["guidance_samples"], cfg)}
        elif part == "vae":
            result = evaluate_vae_vs_ldm(pipeline, judge, reference, n, cfg, cache, ldm_name)
            counts = {"n": n, **ref, **_count_note(n, MAX_SAMPLES, counts_auto["samples"], cfg)}
        elif part == "pixel":
            result = evaluate_pixel_vs_latent(pipeline, cfg)
            counts = {"batch_size": cfg.pixel_batch_size, "steps": cfg.pixel_steps}
        elif part == "words":
            result = word_sensitivity(pipeline, cfg.words_faces, batch_size=cfg.batch_size,
                                      seed=cfg.seed)
            counts = {"faces": cfg.words_faces}
        else:
            result = evaluate_grid(pipeline, cfg)
            counts = {"per_prompt": cfg.grid_seeds, "prompts": len(cfg.grid_prompts)}
        seconds = time.perf_counter() - t0
        out["targets"].update(result.pop("targets", {}))
        out.update(result)
        out["samples"][PART_KEYS[part][0]] = {**counts, **common, "seconds": round(seconds, 1)}
        print(f"   {part} took {format_minutes(seconds)}", file=sys.stderr)
    if not out["targets"]:
        del out["targets"]
    print(f"evaluation took {format_minutes(time.perf_counter() - t_start)}", file=sys.stderr)
    return out


def _count_note(used: int, wanted: int, auto: bool, cfg: EvalConfig) -> dict:
    """A note when fewer than the issue's 1,000 samples were used, saying why."""
    if used >= wanted:
        return {}
    why = (f"the most that fit the {cfg.minutes:g}-minute budget (auto)" if auto
           else "the count given on the command line")
    return {"note": f"{used} samples instead of {wanted}: {why}"}


def merge_into_metrics(folder: str | Path, new: dict) -> dict:
    """Merge ``new`` into ``folder/metrics.json`` (re-read just before writing), atomically.

    Top-level keys are replaced; ``targets`` and ``samples`` are merged one level deep, so parts
    run in separate processes keep each other's entries.
    """
    path = Path(folder) / METRICS_FILE
    current = json.loads(path.read_text()) if path.exists() else {}
    for key, value in new.items():
        if key in NESTED_KEYS and isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key] = {**current[key], **value}
        else:
            current[key] = value
    atomic_write_json(path, current)
    return current
