"""Benchmarks: the speed budgets of DESIGN.md §8, and side-by-side comparisons, measured on
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
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from playground.data import pictures

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
    "ddim50_s": ({"max": 1.5}, "DDIM 50 steps, 4 faces"),
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
        {"max": 1.3}, "Morph handler / its core calls (two faces, pipelines.vae.morph, GIF bytes)"),
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
DIFFUSION_ROWS = ("ddim50_s", "ddpm1000_s", "ddpm_first_frame_s", "prompt_s")
# rows that need a diffusion model (a U-Net in trained/ or runs/)
PIPELINE_ROWS = DIFFUSION_ROWS + (
    "denoise_overhead_ratio", "prompt_overhead_ratio", "ours_ddim50_s", "diffusers_ddim50_s",
    "ddim_vs_diffusers_ratio", "ours_ddpm_s", "diffusers_ddpm_s", "ddpm_vs_diffusers_ratio",
    "ddim_loop_vs_diffusers_ratio", "ddpm_loop_vs_diffusers_ratio")
NO_DIFFUSERS = "diffusers not installed (a test-only dependency: pip install -r requirements-test.txt)"
NO_OPENTSNE = "openTSNE not installed (optional: pip install openTSNE)"
PROMPT = "a smiling woman with blond hair"  # the Prompt tab's example prompt


def _median_time(fn: Callable[[], object], runs: int, inner: int = 1) -> float:
    """Median seconds of one call of `fn` over `runs` × `inner` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(runs * inner):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ machine
def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cores": os.cpu_count(),
        "load_avg_start": [round(v, 2) for v in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


# ------------------------------------------------------------------------------ β-VAE rows
def bench_traverse(name: str, runs: int, inner: int) -> dict:
    """Core decode and the slider handler (no server)."""
    from playground.app import traverse
    from playground.pipelines import vae as ops

    model = ops.get_model(name)
    z = ops.encode_mean(model, ops.random_face(0)[None])  # (1, D)
    core = _median_time(lambda: ops.decode(model, z), runs, inner)
    state = traverse.encode(name, "random", 0, 0, None)[2]
    values = [0.5] * traverse.N_SLIDERS
    handler = _median_time(lambda: traverse.decode(state, *values), runs, inner)
    return {"traverse_decode_ms": core * 1000, "traverse_decode_handler_ms": handler * 1000}


def bench_morph(name: str, runs: int, inner: int) -> dict:
    from playground.app import morph
    from playground.pipelines import vae as ops

    model = ops.get_model(name)
    a, b = ops.random_face(1), ops.dataset_face(5)

    def run():
        frames = ops.morph(model, a, b, 8, "lerp")
        return pictures.gif_bytes(frames, fps=morph.GIF_FPS, pingpong=True, scale=2)

    return {"morph_ms": _median_time(run, runs, inner) * 1000}


def bench_latent_map(name: str, runs: int, method: str, n: int) -> tuple[dict, str]:
    import gradio as gr

    from playground.app import latent_map as tab
    from playground.pipelines import latent_map as lm
    from playground.pipelines import vae as ops

    note = f"{lm.METHOD_LABELS[method]}, {n} points, coloured by {tab.DEFAULT_COLOUR}"
    if lm.latent_map(name, method, n, 0, cached_only=True) is None:
        _log(f"latent map {method}/{n} of {name} is not cached: computing it once")
        result = lm.latent_map(name, method, n, 0)
        note += (f"; the cache was missing: computed once in {result['seconds']:.1f} s"
                 + (f" ({result['cache_note']})" if result["cache_note"] else
                    " and written next to the model"))
    tab._warm_imports()
    plot = gr.Plot()
    times = []
    for _ in range(runs):
        lm.clear_cache()
        ops.clear_model_cache()
        t0 = time.perf_counter()
        figure, _, notice = tab.show_cached_map(name, method, n, 0, tab.DEFAULT_COLOUR, "")
        if figure is None:
            raise RuntimeError(f"the cached map was not used: {notice}")
        plot.postprocess(figure)  # the plot's JSON, as gradio sends it
        times.append(time.perf_counter() - t0)
    return {"latent_map_s": statistics.median(times)}, note


def _launch_app():
    import app

    demo = app.build_app()
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True))
    return demo


def bench_client(name: str, runs: int, inner: int) -> dict:
    """Slider decode through gradio_client against an app in this process."""
    import gradio_client

    from playground.app import traverse

    demo = _launch_app()
    try:
        client = gradio_client.Client(demo.local_url, verbose=False)
        client.predict(name, "random", 0, 0, None, api_name="/traverse_encode")
        values = [0.5] * traverse.N_SLIDERS
        t = _median_time(lambda: client.predict(*values, api_name="/traverse_decode"),
                         runs, inner)
        trivial = _median_time(lambda: client.predict(name, api_name="/traverse_models"),
                               runs, inner)
    finally:
        demo.close()
    return {"traverse_decode_client_ms": t * 1000, "gradio_roundtrip_ms": trivial * 1000}


_APP_CHILD = """
import sys
import app
demo = app.build_app()
demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
    prevent_thread_lock=True, server_name="127.0.0.1", quiet=True))
app.preload()  # every β-VAE, the diffusion pipeline and the judge, as `python app.py` does
print("URL", demo.local_url, flush=True)
sys.stdin.read()  # serve until the parent closes stdin
demo.close()
"""


def bench_app_start(name: str | None, runs: int) -> dict:
    """Wall time from starting `python` to the first answer, in a fresh process each run."""
    import gradio_client

    from playground.store.checkpoints import repo_root

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", _APP_CHILD], cwd=repo_root(),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            url = None
            for line in child.stdout:
                if line.startswith("URL "):
                    url = line.split()[1]
                    break
            if url is None:
                raise RuntimeError(f"the app did not start (exit code {child.wait(60)})")
            client = gradio_client.Client(url, verbose=False)
            if name:
                client.predict(name, "random", 0, 0, None, api_name="/traverse_encode")
            else:
                client.predict(seed=1, count=2, api_name="/synthfaces_grid")
            times.append(time.perf_counter() - t0)
        finally:
            child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return {"app_start_s": statistics.median(times)}


# ------------------------------------------------------------------------------ data vs training
def bench_synthfaces(runs: int, n: int, parallel: bool) -> tuple[dict, dict]:
    """Rendering speed: one thread, and `render_parallel` on every core (what `generate` uses)."""
    from playground.data import synthfaces as sf

    factors = sf.generate_factors(n, 12_345)
    one = n / _median_time(lambda: sf.render(factors), runs)
    out = {"synthfaces_img_s_1proc": one}
    notes = {"synthfaces_img_s_1proc": f"{n} faces per run, one thread"}
    if not parallel:
        notes["synthfaces_img_s"] = "skipped in --quick"
        return out, notes
    workers = os.cpu_count() or 1
    total = max(n, 1000 * workers)
    many = sf.generate_factors(total, 54_321)
    out["synthfaces_img_s"] = total / _median_time(lambda: sf.render_parallel(many), runs)
    notes["synthfaces_img_s"] = f"{workers} threads, {total} faces per run"
    return out, notes


def bench_vae_train(runs: int, steps: int, batch: int) -> dict:
    """Adam steps of the β-VAE trainer's default model (β = 4) on SynthFaces faces."""
    import torch

    from playground.data import synthfaces as sf
    from playground.data.images import images_to_tensor
    from playground.models.losses import beta_vae_loss
    from playground.models.vae import BetaVAE
    from playground.training.trainers.vae import VAETrainConfig

    cfg = VAETrainConfig()
    torch.manual_seed(0)
    model = BetaVAE(cfg.model_config()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    images = sf.render(sf.generate_factors(batch, 777))
    x = images_to_tensor(images)
    eps = torch.randn(batch, cfg.latent_dim, generator=torch.Generator().manual_seed(0))

    def step():
        logits, mu, logvar, _ = model(x, eps=eps)
        loss = beta_vae_loss(logits, x, mu, logvar, cfg.beta)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    t = _median_time(step, runs, steps)
    params = sum(p.numel() for p in model.parameters())
    return {"vae_train_img_s": batch / t, "_params": params}


# ------------------------------------------------------------------------------ UI overhead
def _paired(handler: Callable[[], object], bare: Callable[[], object], runs: int,
            inner: int = 1) -> tuple[float, float]:
    """Median seconds of `handler()` and of `bare()`, called alternately after one warm-up
    each, so that a change in the machine's load hits both alike."""
    handler()
    bare()
    th, tb = [], []
    for _ in range(runs * inner):
        t0 = time.perf_counter()
        handler()
        th.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare()
        tb.append(time.perf_counter() - t0)
    return statistics.median(th), statistics.median(tb)


def _ratio(values: dict, notes: dict, key: str, handler_s: float, bare_s: float) -> None:
    values[key] = handler_s / bare_s
    notes[key] = f"handler {handler_s * 1000:.1f} ms / core {bare_s * 1000:.1f} ms"


def bench_vae_overhead(name: str, runs: int, inner: int, method: str,
                       points: int) -> tuple[dict, dict]:
    """UI overhead of the β-VAE tabs and the SynthFaces tab (see ROWS)."""
    from playground.app import data_tab, morph, traverse
    from playground.app import latent_map as tab
    from playground.data import synthfaces as sf
    from playground.evaluation import separation
    from playground.pipelines import latent_map as lm
    from playground.pipelines import vae as ops

    values, notes = {}, {}
    model = ops.get_model(name)
    state = traverse.encode(name, "random", 0, 0, None)[2]
    sliders = [0.5] * traverse.N_SLIDERS
    z = ops.with_values(state["z"], state["dims"], sliders[:len(state["dims"])])
    _ratio(values, notes, "traverse_overhead_ratio",
           *_paired(lambda: traverse.decode(state, *sliders),
                    lambda: ops.decode(model, z[None]), runs, inner))

    def encode_core():
        face = ops.random_face(3)
        ops.dims_by_kl(model)
        mu = ops.encode_mean(model, face[None])[0]
        ops.decode(model, mu[None])

    _ratio(values, notes, "traverse_encode_overhead_ratio",
           *_paired(lambda: traverse.encode(name, "random", 3, 0, None), encode_core,
                    runs, max(1, inner // 3)))

    def morph_core():
        frames = ops.morph(model, ops.random_face(1), ops.random_face(2), 8, "lerp")
        pictures.gif_bytes(frames, fps=morph.GIF_FPS, pingpong=True, scale=2)

    _ratio(values, notes, "morph_overhead_ratio",
           *_paired(lambda: morph.morph(name, "random", 1, 0, None, "random", 2, 0, None, 8,
                                        "lerp"), morph_core, runs, max(1, inner // 3)))

    if lm.latent_map(name, method, points, 0, cached_only=True) is None:
        lm.latent_map(name, method, points, 0)  # computed once, then served from memory

    def map_core():
        result = lm.latent_map(name, method, points, 0, cached_only=True)
        colour = lm.colour_values(result, tab.DEFAULT_COLOUR)
        separation.separation(result["points"], colour["labels"], seed=result["seed"])

    _ratio(values, notes, "latent_map_overhead_ratio",
           *_paired(lambda: tab.show_cached_map(name, method, points, 0, tab.DEFAULT_COLOUR, ""),
                    map_core, runs))
    notes["latent_map_overhead_ratio"] += f" ({lm.METHOD_LABELS[method]}, {points} points)"
    _ratio(values, notes, "synthfaces_overhead_ratio",
           *_paired(lambda: data_tab.random_grid(0, 32), lambda: sf.generate(32, 0), runs))
    return values, notes


def bench_diffusion(pipe_name: str, runs: int) -> tuple[dict, dict]:
    """The diffusion budgets (DDIM 50, DDPM streamed, prompt) and the Denoise / Prompt tabs'
    UI overhead, on the pipeline of U-Net `pipe_name`."""
    import math

    import torch

    from playground.app import denoise
    from playground.app import prompt as prompt_tab
    from playground.pipelines import latent_diffusion

    pipe = latent_diffusion.get_pipeline(pipe_name)
    T = pipe.num_timesteps
    S = min(50, T)
    values, notes = {}, {}
    about = f"{pipe_name} (T = {T})"
    ddim = f"DDIM {S} steps" + ("" if S == 50 else f" (T = {T} < 50)")

    def sample(prompts, guidance):
        with latent_diffusion.inference():
            return pipe.sample(prompts, guidance=guidance, steps=S, seed=0)

    values["ddim50_s"] = _median_time(lambda: sample([""] * 4, 1.0), runs)
    notes["ddim50_s"] = f"{about}, {ddim}, unconditional (one U-Net pass per step)"

    handler_s, bare_s = _paired(
        lambda: prompt_tab.generate(pipe_name, PROMPT, "", 7.5, S, 0, False, 4),
        lambda: sample([PROMPT] * 4, 7.5), runs)
    values["prompt_s"] = handler_s
    notes["prompt_s"] = f"{about}: the Prompt tab's handler, “{PROMPT}”, w = 7.5, {ddim}"
    _ratio(values, notes, "prompt_overhead_ratio", handler_s, bare_s)

    every = max(1, math.ceil(S / denoise.DDIM_FRAMES))

    def denoise_core():
        chain = pipe.sample_progressive([""] * 4, guidance=1.0, sampler="ddim", steps=S,
                                        seed=0, yield_every=every, decode=False)
        while True:
            with latent_diffusion.inference():
                item = next(chain, None)
                if item is None:
                    break
                pipe.decode(torch.cat([item[0].x_t, item[0].x0_pred]))

    _ratio(values, notes, "denoise_overhead_ratio",
           *_paired(lambda: list(denoise.run_ddim(pipe_name, "", 1.0, 4, 0, S, 0.0)),
                    denoise_core, runs))

    firsts, totals = [], []
    for _ in range(max(1, min(runs, 2))):  # DDPM is long: at most two runs
        t0 = time.perf_counter()
        stream = denoise.run_ddpm(pipe_name, "", 1.0, 4, 0, S, 0.0)
        next(stream)
        firsts.append(time.perf_counter() - t0)
        for _ in stream:
            pass
        totals.append(time.perf_counter() - t0)
    values["ddpm_first_frame_s"] = statistics.median(firsts)
    values["ddpm1000_s"] = statistics.median(totals)
    notes["ddpm1000_s"] = notes["ddpm_first_frame_s"] = (
        f"{about}: the Denoise tab's DDPM handler over all {T} steps, 4 faces, streamed "
        f"(a frame every {denoise.DDPM_EVERY} steps), {len(totals)} run(s)")
    return values, notes


# ------------------------------------------------------------------------------ embeddings
def bench_embeddings(name: str, n: int, seed: int = 0) -> tuple[dict, dict]:
    """t-SNE vs UMAP (vs openTSNE) on μ of the first `n` SynthFaces test faces, one run each,
    with the kNN separation of Smiling on each map for context."""
    from playground.data import synthfaces as sf
    from playground.evaluation import projection, separation
    from playground.pipelines import latent_map as lm
    from playground.pipelines import vae as ops

    model = ops.get_model(name)
    factors = sf.generate_factors(n, sf.SPLIT_SEEDS[lm.SPLIT])
    mu = ops.encode_mean(model, sf.render(factors))  # (n, D)
    smiling = sf.attributes_from_factors(factors)["Smiling"]
    values, notes = {}, {}

    def timed(key, fn):
        t0 = time.perf_counter()
        points = fn()
        values[key] = time.perf_counter() - t0
        knn = separation.separation(points, smiling, seed=seed)["knn_acc"]
        notes[key] = (f"{n} points of dimension {mu.shape[1]} ({name}); Smiling kNN accuracy "
                      f"on the map {knn:.3f}" if knn is not None else f"{n} points")

    timed("tsne_s", lambda: projection.embed(mu, "tsne", seed))
    t0 = time.perf_counter()
    projection.embed(mu[:64], "umap", seed, n_neighbors=5)  # numba compiles on the first call
    compile_s = time.perf_counter() - t0
    timed("umap_s", lambda: projection.embed(mu, "umap", seed))
    notes["umap_s"] += f"; first call (numba compilation) {compile_s:.1f} s, not counted"
    try:
        from openTSNE import TSNE as OpenTSNE
    except ImportError:
        notes["opentsne_s"] = NO_OPENTSNE
    else:
        timed("opentsne_s", lambda: np.asarray(OpenTSNE(
            n_components=2, perplexity=30, initialization="pca", n_jobs=1,
            random_state=seed).fit(mu)))
    values["umap_vs_tsne_ratio"] = values["umap_s"] / values["tsne_s"]
    return values, notes


# ------------------------------------------------------------------------------ vs diffusers
def bench_vs_diffusers(pipe_name: str, runs: int) -> tuple[dict, dict]:
    """Our DDIM / DDPM loops vs diffusers' schedulers, both driving the pipeline's U-Net on the
    same x_T, prompt and (DDPM) noise generator; the final samples are compared too."""
    try:
        import diffusers
    except ImportError:
        return {}, {key: NO_DIFFUSERS for key in (
            "ours_ddim50_s", "diffusers_ddim50_s", "ddim_vs_diffusers_ratio", "ours_ddpm_s",
            "diffusers_ddpm_s", "ddpm_vs_diffusers_ratio", "ddim_loop_vs_diffusers_ratio",
            "ddpm_loop_vs_diffusers_ratio")}
    import torch

    from playground.diffusion import ddim_sample, ddpm_sample
    from playground.pipelines import latent_diffusion

    pipe = latent_diffusion.get_pipeline(pipe_name)
    schedule, unet = pipe.schedule, pipe.unet
    T = schedule.num_timesteps
    S = min(50, T)
    cond = pipe.encode_prompts([PROMPT] * 4)
    context, mask = cond
    x_T, _ = pipe.initial_noise(4, 0)
    denoiser = pipe.unet_denoiser()
    betas = schedule.betas.float().numpy()
    ddim = diffusers.DDIMScheduler(num_train_timesteps=T, trained_betas=betas,
                                   clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                                   timestep_spacing="trailing", prediction_type="epsilon")
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=betas,
                                   variance_type="fixed_small", clip_sample=False,
                                   prediction_type="epsilon")

    def unet_eps(x, t):
        return unet(x, torch.full((x.shape[0],), int(t), dtype=torch.long), context, mask)

    def theirs(scheduler, steps, generator=None, eps_fn=unet_eps):
        scheduler.set_timesteps(steps)
        x = x_T
        for t in scheduler.timesteps:
            x = scheduler.step(eps_fn(x, t), t, x, generator=generator).prev_sample
        return x

    runs_ = {"ddim": (lambda: ddim_sample(denoiser, x_T, schedule, steps=S, cond=cond),
                      lambda: theirs(ddim, S)),
             "ddpm": (lambda: ddpm_sample(denoiser, x_T, schedule, cond=cond,
                                          generator=torch.Generator().manual_seed(1)),
                      lambda: theirs(ddpm, T, torch.Generator().manual_seed(1)))}
    values, notes = {}, {}
    for kind, (ours_fn, theirs_fn) in runs_.items():
        with latent_diffusion.inference():
            gap = float((ours_fn() - theirs_fn()).abs().max())
            ours_s, theirs_s = _paired(ours_fn, theirs_fn, max(1, min(runs, 3)))
        prefix = "ddim50" if kind == "ddim" else "ddpm"
        values[f"ours_{prefix}_s"], values[f"diffusers_{prefix}_s"] = ours_s, theirs_s
        values[f"{kind}_vs_diffusers_ratio"] = ours_s / theirs_s
        steps = S if kind == "ddim" else T
        notes[f"{kind}_vs_diffusers_ratio"] = (
            f"{pipe_name}, {steps} steps, 4 faces; max |x_0 ours − diffusers| = {gap:.1e} "
            "(diffusers keeps ᾱ in float32); diffusers " + diffusers.__version__)

    def free(x, t, cond=None):  # ε = 0 at no cost: what is left is the samplers' own work
        return torch.zeros_like(x)

    loops = {"ddim": (lambda: ddim_sample(free, x_T, schedule, steps=S),
                      lambda: theirs(ddim, S, eps_fn=free)),
             "ddpm": (lambda: ddpm_sample(free, x_T, schedule,
                                          generator=torch.Generator().manual_seed(1)),
                      lambda: theirs(ddpm, T, torch.Generator().manual_seed(1), eps_fn=free))}
    for kind, (ours_fn, theirs_fn) in loops.items():
        with latent_diffusion.inference():
            ours_s, theirs_s = _paired(ours_fn, theirs_fn, 5 * max(1, min(runs, 3)))
        steps = S if kind == "ddim" else T
        values[f"{kind}_loop_vs_diffusers_ratio"] = ours_s / theirs_s
        notes[f"{kind}_loop_vs_diffusers_ratio"] = (
            f"{steps} steps: ours {1e6 * ours_s / steps:.0f} µs/step, diffusers "
            f"{1e6 * theirs_s / steps:.0f} µs/step")
    return values, notes


# ------------------------------------------------------------------------------ untrained
UNTRAINED = "untrained-ldm"  # name of the random-weights pipeline of --untrained-diffusion


def save_untrained_pipeline(folder: Path) -> str:
    """The shipped architectures (the trainers' default configs) with random weights, saved as
    `UNTRAINED` + its autoencoder and CLIP in `folder` → the U-Net's name. Speed does not
    depend on the weights, so this times the diffusion rows before a model is trained."""
    import torch

    from playground.models.autoencoder import KLAutoencoder
    from playground.models.clip import TextImageCLIP
    from playground.models.unet import LatentUNet
    from playground.store import checkpoints
    from playground.training.trainers.autoencoder import AutoencoderTrainConfig
    from playground.training.trainers.clip import CLIPTrainConfig
    from playground.training.trainers.ldm import LDMTrainConfig

    torch.manual_seed(0)
    autoencoder = KLAutoencoder(AutoencoderTrainConfig().model_config())
    clip = TextImageCLIP(CLIPTrainConfig().model_config())
    unet = LatentUNet(LDMTrainConfig().model_config(
        clip.config.text_width, autoencoder="untrained-autoencoder",
        text_encoder="untrained-clip"))
    checkpoints.save_model(folder / "untrained-autoencoder", autoencoder)
    checkpoints.save_model(folder / "untrained-clip", clip)
    checkpoints.save_model(folder / UNTRAINED, unet)
    return UNTRAINED


@contextlib.contextmanager
def _runs_dir(folder: Path):
    """Look for runs in `folder` (where `save_untrained_pipeline` wrote) for a while."""
    before = os.environ.get("PLAYGROUND_RUNS")
    os.environ["PLAYGROUND_RUNS"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PLAYGROUND_RUNS", None)
        else:
            os.environ["PLAYGROUND_RUNS"] = before


# ------------------------------------------------------------------------------ the run
def run(repeats: int = 5, quick: bool = False, model: str | None = None,
        only: set[str] | None = None, diffusion_model: str | None = None,
        untrained_diffusion: bool = False) -> dict:
    """Measure every row that can be measured now → the JSON-ready report."""
    from playground.pipelines import latent_diffusion
    from playground.pipelines import vae as ops

    started = time.perf_counter()
    info = machine_info()
    report: dict = {key: None for key in ROWS}
    notes: dict[str, str] = {}
    pipelines = latent_diffusion.list_pipelines()
    pipe_name = diffusion_model or latent_diffusion.default_pipeline(pipelines)
    if diffusion_model and diffusion_model not in pipelines:
        raise ValueError(f"no diffusion model named {diffusion_model!r} (available: "
                         f"{', '.join(pipelines) or 'none'})")
    untrained = None
    if pipe_name is None and untrained_diffusion:
        import tempfile

        untrained = Path(tempfile.mkdtemp(prefix="bench-untrained-"))
        with _runs_dir(untrained):
            pipe_name = save_untrained_pipeline(untrained)
    if pipe_name is None:
        for key in PIPELINE_ROWS:
            notes[key] = NO_DIFFUSION
    else:
        _log(f"diffusion rows use {pipe_name}" + (" (random weights)" if untrained else ""))
    pipeline_env = _runs_dir(untrained) if untrained else contextlib.nullcontext()
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
        _log(hint)
    else:
        from playground.store.checkpoints import resolve_model_dir

        _log(f"β-VAE rows use {name} ({resolve_model_dir(name)})")

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
        _log(f"measuring {', '.join(keys)}")
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
