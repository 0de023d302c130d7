"""Benchmarks: the speed budgets of every tab (`ROWS`), and side-by-side comparisons, measured on
this machine.

    python -m playground.bench [--json] [--repeats 5] [--model vae-beta10] [--quick]
                               [--only traverse_decode_ms,morph_ms] [--diffusion-model ldm]

Side by side (each pair measured in the same run, alternately): every tab's handler against
the core calls it makes (UI overhead, ≤ 1.3); scikit-learn t-SNE against UMAP (and openTSNE
when installed) on the same latents; SynthFaces rendering against β-VAE training
(data_vs_train_ratio ≥ 3); our DDIM / DDPM loops against diffusers' schedulers driving the same
U-Net (≤ 1.0; "diffusers not installed" when it is absent: it is a test-only dependency).

Every row is a median over `--repeats` runs (short operations are timed several times per run).
The machine may be shared (e.g. trainings in the background), so the load average at the start
and end, the number of cores and torch's thread count are reported with the numbers. Rows
that cannot be measured yet (no diffusion model) are null with a note — never a guess.

``--json`` prints one JSON object: one key per row (a number or null), plus ``budget``
({row: {"max": x} or {"min": x}}), ``ok`` ({row: true/false, or null when not measured}),
``notes`` ({row: why null / how measured}), ``about`` ({row: what is timed}), ``machine``,
``model``, ``repeats``, ``quick``.

The β-VAE rows use the model named by --model, else vae-beta10 (or the first β-VAE) from
trained/, else from runs/; the diffusion rows the U-Net named by --diffusion-model, else ldm
(or the first U-Net). Timing the latent map writes its cache file next to that model
(what the Latent map tab would do on first use). ``--quick`` (1 repeat, tiny sizes, no process
pool) is for tests.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from playground.bench.app_rows import bench_app_start, bench_client
from playground.bench.diffusion_rows import (
    bench_diffusion,
    bench_vs_diffusers,
    save_untrained_pipeline,
    use_runs_folder,
)
from playground.bench.timing import log, machine_info
from playground.bench.vae_rows import (
    bench_embeddings,
    bench_latent_map,
    bench_morph,
    bench_synthfaces,
    bench_traverse,
    bench_vae_overhead,
    bench_vae_train,
)

NO_DIFFUSION = "no diffusion model yet"

# row: (budget or None, what is timed)
ROWS: dict[str, tuple[dict | None, str]] = {
    "traverse_decode_ms": ({"max": 30}, "one traversal-slider decode: pipelines.vae.decode of 1 latent"),
    "traverse_decode_handler_ms": (
        {"max": 30}, "the Traverse tab's slider handler (decode + 256 px enlargement), called "
                     "directly"),
    "traverse_decode_client_ms": (
        {"max": 30}, "the same slider move through gradio_client (HTTP, queue, PNG encoding)"),
    "gradio_roundtrip_ms": (None, "a trivial event (the ↻ model list) through gradio_client: "
                                  "the fixed cost of any call on this machine"),
    "morph_ms": ({"max": 200}, "8-step lerp morph (encode 2 faces, decode 8) + GIF bytes"),
    "ddim50_s": ({"max": 1.5}, "DDIM 50 steps, 4 faces (the U-Net compiled as the app does)"),
    "ddim50_eager_s": (None, "the same with the eager U-Net, timed alternately"),
    "unet_compile_speedup": (None, "ddim50_eager_s / ddim50_s: torch.compile with Inductor's "
                                   "freezing, per input shape (pipelines.compiled_unet)"),
    "ddpm1000_s": ({"max": 20}, "DDPM 1000 steps, 4 faces, streamed"),
    "ddpm_first_frame_s": ({"max": 1}, "DDPM: time to the first streamed frame"),
    "prompt_s": ({"max": 3}, "prompt → 4 faces, DDIM 50 with guidance"),
    "latent_map_s": ({"max": 1}, "Latent map first view from its cache file (the page-load "
                                 "handler incl. model load, scores and plot JSON; memory caches "
                                 "cleared)"),
    "app_start_s": ({"max": 15}, "python app (subprocess): build, launch, load every model "
                                 "(app.preload: β-VAEs, diffusion pipeline, judge), then the "
                                 "first answer to /traverse_encode via gradio_client"),
    "synthfaces_img_s_1proc": (None, "SynthFaces rendering, one process (images/s)"),
    "synthfaces_img_s": (None, "SynthFaces rendering on every core, as generate() does (images/s)"),
    "vae_train_img_s": (None, "β-VAE training steps (the shipped 3M-parameter config, Adam, "
                              "batch 128; images/s)"),
    "data_vs_train_ratio": ({"min": 3}, "synthfaces_img_s / vae_train_img_s: can on-the-fly "
                                        "data keep up with training?"),
    # UI overhead: a tab's handler, called directly, over the core calls it makes (same inputs,
    # called alternately); what is left is the adapter: pictures, plots, GIF files, notices
    "traverse_overhead_ratio": (
        {"max": 1.3}, "Traverse slider handler / pipelines.vae.decode of the same latent"),
    "traverse_encode_overhead_ratio": (
        {"max": 1.3}, "Traverse encode handler (face, decoding, sliders, KL bar chart) / its core "
                      "calls (render, KL ranking, encode, decode)"),
    "morph_overhead_ratio": (
        {"max": 1.3},
        "Morph handler / its core calls (two faces, pipelines.latent_paths.morph, GIF bytes)"),
    "latent_map_overhead_ratio": (
        {"max": 1.3}, "Latent map handler (from the memory cache) / its core calls (map, colour "
                      "values, separation scores)"),
    "synthfaces_overhead_ratio": (
        {"max": 1.3}, "SynthFaces grid handler / synthfaces.generate of the same faces"),
    "denoise_overhead_ratio": (
        {"max": 1.3}, "Denoise DDIM handler, streamed (4 faces) / the sampler with the same "
                      "frames decoded"),
    "prompt_overhead_ratio": (
        {"max": 1.3}, "Prompt handler (4 faces, w = 7.5) / LatentDiffusion.sample"),
    # 2-D embeddings of the same latents
    "tsne_s": (None, "scikit-learn t-SNE (perplexity 30, PCA init, 1 thread) of μ of the "
                     "first N SynthFaces test faces"),
    "umap_s": (None, "umap-learn UMAP (15 neighbours, 1 thread; numba compiled beforehand) of "
                     "the same μ"),
    "opentsne_s": (None, "openTSNE (perplexity 30, PCA init, 1 thread) of the same μ, when "
                         "installed"),
    "umap_vs_tsne_ratio": (None, "umap_s / tsne_s (< 1: UMAP is faster)"),
    # our samplers vs diffusers' schedulers driving the same U-Net
    "ours_ddim50_s": (None, "playground.diffusion.ddim_sample, 50 steps, 4 faces, the "
                            "pipeline's U-Net with a prompt (w = 1)"),
    "diffusers_ddim50_s": (None, "diffusers DDIMScheduler (trailing spacing, same betas) "
                                 "driving the same U-Net, same x_T and prompt"),
    "ddim_vs_diffusers_ratio": ({"max": 1.0}, "ours_ddim50_s / diffusers_ddim50_s"),
    "ours_ddpm_s": (None, "playground.diffusion.ddpm_sample over all T steps, 4 faces"),
    "diffusers_ddpm_s": (None, "diffusers DDPMScheduler (fixed_small) over all T steps, same "
                               "U-Net, x_T, prompt and noise generator"),
    "ddpm_vs_diffusers_ratio": ({"max": 1.0}, "ours_ddpm_s / diffusers_ddpm_s"),
    "ddim_loop_vs_diffusers_ratio": (None, "the same two DDIM loops with a free denoiser "
                                           "(ε = 0): the samplers' own cost per step"),
    "ddpm_loop_vs_diffusers_ratio": (None, "the same two DDPM loops with a free denoiser"),
}
DIFFUSION_ROWS = ("ddim50_s", "ddim50_eager_s", "unet_compile_speedup", "ddpm1000_s",
                  "ddpm_first_frame_s", "prompt_s")
# rows that need a diffusion model (a U-Net in trained/ or runs/)
PIPELINE_ROWS = DIFFUSION_ROWS + (
    "denoise_overhead_ratio", "prompt_overhead_ratio", "ours_ddim50_s", "diffusers_ddim50_s",
    "ddim_vs_diffusers_ratio", "ours_ddpm_s", "diffusers_ddpm_s", "ddpm_vs_diffusers_ratio",
    "ddim_loop_vs_diffusers_ratio", "ddpm_loop_vs_diffusers_ratio")


# ------------------------------------------------------------------------------ the run
def run(repeats: int = 5, quick: bool = False, model: str | None = None,
        only: set[str] | None = None, diffusion_model: str | None = None,
        untrained_diffusion: bool = False) -> dict:
    """Measure every row that can be measured now → the JSON-ready report."""
    from playground.pipelines import diffusion_models
    from playground.pipelines import vae as ops

    started = time.perf_counter()
    info = machine_info()
    report: dict = {key: None for key in ROWS}
    notes: dict[str, str] = {}
    pipelines = diffusion_models.list_pipelines()
    pipe_name = diffusion_model or diffusion_models.default_pipeline(pipelines)
    if diffusion_model and diffusion_model not in pipelines:
        raise ValueError(f"no diffusion model named {diffusion_model!r} (available: "
                         f"{', '.join(pipelines) or 'none'})")
    untrained = None
    if pipe_name is None and untrained_diffusion:
        import tempfile

        untrained = Path(tempfile.mkdtemp(prefix="bench-untrained-"))
        with use_runs_folder(untrained):
            pipe_name = save_untrained_pipeline(untrained)
    if pipe_name is None:
        for key in PIPELINE_ROWS:
            notes[key] = NO_DIFFUSION
    else:
        log(f"diffusion rows use {pipe_name}" + (" (random weights)" if untrained else ""))
    pipeline_env = use_runs_folder(untrained) if untrained else contextlib.nullcontext()
    runs = 1 if quick else max(1, int(repeats))
    inner = 3 if quick else 10  # calls per run for the millisecond rows
    train_batch, train_steps = (32, 1) if quick else (128, 3)
    render_n = 64 if quick else 500  # faces per run, one process
    method, points = ("pca", 100) if quick else ("tsne", 2000)  # the tab's default map
    embed_points = 300 if quick else 5000  # t-SNE vs UMAP

    names = ops.list_vae_models()
    name = model or ops.default_model(names)
    if model and model not in names:
        raise ValueError(f"no β-VAE model named {model!r} (available: "
                         f"{', '.join(names) or 'none'})")
    if name is None:
        hint = ops.no_models_hint()
        log(hint)
    else:
        from playground.store.checkpoints import resolve_model_dir

        log(f"β-VAE rows use {name} ({resolve_model_dir(name)})")

    def wanted(*keys: str) -> bool:
        return only is None or any(k in only for k in keys)

    def measure(keys: tuple[str, ...], fn: Callable[[], dict | tuple[dict, str | dict]],
                needs_model: bool = True, needs_pipeline: bool = False) -> None:
        if needs_pipeline and pipe_name is None:
            return  # noted above
        if not wanted(*keys):
            for key in keys:
                notes.setdefault(key, "not measured (--only)")
            return
        if needs_model and name is None:
            for key in keys:
                notes[key] = "no β-VAE model: " + hint
            return
        log(f"measuring {', '.join(keys)}")
        try:
            out = fn()
        except Exception as err:  # a failed row is reported, the others still run
            for key in keys:
                notes[key] = f"failed: {type(err).__name__}: {err}"
            return
        values, note = out if isinstance(out, tuple) else (out, "")
        for key in keys:
            if key in values:
                report[key] = round(float(values[key]), 3)
            row_note = note.get(key, "") if isinstance(note, dict) else note
            if row_note:
                notes[key] = row_note
        if "_params" in values:
            notes["vae_train_img_s"] = (f"{values['_params'] / 1e6:.2f}M parameters, "
                                        f"batch {train_batch}, {train_steps} steps per run, "
                                        f"{info['torch_threads']} torch threads")

    measure(("traverse_decode_ms", "traverse_decode_handler_ms"),
            lambda: bench_traverse(name, runs, inner))
    measure(("morph_ms",), lambda: bench_morph(name, runs, max(1, inner // 3)))
    measure(("latent_map_s",), lambda: bench_latent_map(name, runs, method, points))
    measure(("traverse_decode_client_ms", "gradio_roundtrip_ms"),
            lambda: bench_client(name, runs, inner))
    measure(("app_start_s",), lambda: bench_app_start(name, 1 if quick else min(runs, 3)),
            needs_model=False)
    measure(("synthfaces_img_s_1proc", "synthfaces_img_s"),
            lambda: bench_synthfaces(runs, render_n, parallel=not quick), needs_model=False)
    measure(("vae_train_img_s",), lambda: bench_vae_train(runs, train_steps, train_batch),
            needs_model=False)
    measure(("traverse_overhead_ratio", "traverse_encode_overhead_ratio", "morph_overhead_ratio",
             "latent_map_overhead_ratio", "synthfaces_overhead_ratio"),
            lambda: bench_vae_overhead(name, runs, inner, method, points))
    measure(("tsne_s", "umap_s", "opentsne_s", "umap_vs_tsne_ratio"),
            lambda: bench_embeddings(name, embed_points))
    with pipeline_env:
        measure(DIFFUSION_ROWS + ("denoise_overhead_ratio", "prompt_overhead_ratio"),
                lambda: bench_diffusion(pipe_name, runs), needs_model=False,
                needs_pipeline=True)
        measure(("ours_ddim50_s", "diffusers_ddim50_s", "ddim_vs_diffusers_ratio",
                 "ours_ddpm_s", "diffusers_ddpm_s", "ddpm_vs_diffusers_ratio",
                 "ddim_loop_vs_diffusers_ratio", "ddpm_loop_vs_diffusers_ratio"),
                lambda: bench_vs_diffusers(pipe_name, runs), needs_model=False,
                needs_pipeline=True)
    if untrained:
        import shutil

        shutil.rmtree(untrained, ignore_errors=True)
        for key in PIPELINE_ROWS:
            if report[key] is not None:
                notes[key] = ("UNTRAINED weights, shipped architectures (speed only): "
                              + notes.get(key, ""))
    if report["synthfaces_img_s"] and report["vae_train_img_s"]:
        report["data_vs_train_ratio"] = round(report["synthfaces_img_s"] /
                                              report["vae_train_img_s"], 3)
    else:
        notes.setdefault("data_vs_train_ratio", "needs synthfaces_img_s and vae_train_img_s")
    if report["app_start_s"] is not None and not notes.get("app_start_s"):
        notes["app_start_s"] = f"median of {1 if quick else min(runs, 3)} fresh processes"

    for key in ROWS:  # a null always says why
        if report[key] is None:
            notes.setdefault(key, "not measured")
    budget = {key: b for key, (b, _) in ROWS.items() if b is not None}
    ok = {key: meets(report[key], b) for key, b in budget.items()}
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    return {**report, "budget": budget, "ok": ok, "notes": notes,
            "about": {key: about for key, (_, about) in ROWS.items()}, "machine": info,
            "model": name, "diffusion_model": pipe_name, "untrained_diffusion": bool(untrained),
            "repeats": runs, "quick": quick,
            "seconds": round(time.perf_counter() - started, 1)}


def meets(value: float | None, budget: dict) -> bool | None:
    """True/False whether a measured value meets its budget ({"max": x} or {"min": x})."""
    if value is None:
        return None
    if "max" in budget:
        return value <= budget["max"]
    return value >= budget["min"]


def _table(result: dict) -> str:
    m = result["machine"]
    lines = [f"{m['cores']} cores, load average {m['load_avg_start']} at start, "
             f"{m['torch_threads']} torch threads; model {result['model']}; "
             f"median of {result['repeats']} runs" + (" (--quick)" if result["quick"] else "")]
    for key in ROWS:
        value, budget = result[key], result["budget"].get(key)
        shown = "—" if value is None else f"{value:g}"
        limit = "" if budget is None else (f"≤ {budget['max']:g}" if "max" in budget
                                           else f"≥ {budget['min']:g}")
        verdict = {True: "ok", False: "OVER", None: ""}[result["ok"].get(key)]
        note = result["notes"].get(key, "")
        lines.append(f"{key:28s} {shown:>10s} {limit:>8s} {verdict:4s} {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--training" in argv:  # the training-speed benchmark, with its own options
        from playground.bench import training as training_bench
        return training_bench.main([a for a in argv if a != "--training"])
    if "--browser" in argv:  # slider latency in chromium, with its own options
        from playground.bench import browser
        return browser.main([a for a in argv if a != "--browser"])
    parser = argparse.ArgumentParser(prog="python -m playground.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--browser", action="store_true",
                        help="Traverse slider latency in chromium instead "
                             "(playground/bench/browser.py; --browser --help for its options)")
    parser.add_argument("--training", action="store_true",
                        help="training speed instead (playground/bench/training.py; "
                             "--training --help for its options)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=5, help="runs per row (median)")
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat, tiny sizes, no process pool (for tests)")
    parser.add_argument("--model", help="β-VAE to time (default: vae-beta10 or the first one)")
    parser.add_argument("--only", help="comma-separated rows to measure (others are null)")
    parser.add_argument("--diffusion-model", dest="diffusion_model",
                        help="U-Net for the diffusion rows (default: ldm or the first one)")
    parser.add_argument("--untrained-diffusion", action="store_true",
                        help="no diffusion model yet: time the shipped architectures with "
                             "random weights (labelled so in the notes)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    only = None
    if args.only:
        only = {k.strip() for k in args.only.split(",") if k.strip()}
        unknown = only - set(ROWS)
        if unknown:
            parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # gradio prints; stdout is for the report
            result = run(args.repeats, args.quick, args.model, only, args.diffusion_model,
                         args.untrained_diffusion)
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
