"""The β-VAE rows of the speed benchmark: Traverse decode, Morph, the Latent map's first
view, the UI overhead of the β-VAE and SynthFaces tabs, t-SNE vs UMAP (vs openTSNE) on the
same latents, and SynthFaces rendering against β-VAE training (can the data keep up?)."""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from playground.bench.timing import log, median_seconds, paired_seconds, record_overhead
from playground.data import pictures

NO_OPENTSNE = "openTSNE not installed (optional: pip install openTSNE)"


# ------------------------------------------------------------------------------ the tabs' budgets
def bench_traverse(name: str, runs: int, inner: int) -> dict:
    """Core decode and the slider handler (no server)."""
    from playground.app import traverse
    from playground.pipelines import face_sources
    from playground.pipelines import vae as ops

    model = ops.get_model(name)
    z = ops.encode_mean(model, face_sources.random_face(0)[None])  # (1, D)
    core = median_seconds(lambda: ops.decode(model, z), runs, inner)
    state = traverse.encode(name, "random", 0, 0, None)[2]
    values = [0.5] * traverse.N_SLIDERS
    handler = median_seconds(lambda: traverse.decode(state, *values), runs, inner)
    return {"traverse_decode_ms": core * 1000, "traverse_decode_handler_ms": handler * 1000}


def bench_morph(name: str, runs: int, inner: int) -> dict:
    """An 8-step lerp morph between two faces, with its GIF bytes (no server)."""
    from playground.app import morph
    from playground.pipelines import face_sources, latent_paths
    from playground.pipelines import vae as ops

    model = ops.get_model(name)
    a, b = face_sources.random_face(1), face_sources.dataset_face(5)

    def run():
        frames = latent_paths.morph(model, a, b, 8, "lerp")
        return pictures.gif_bytes(frames, fps=morph.GIF_FPS, pingpong=True, scale=2)

    return {"morph_ms": median_seconds(run, runs, inner) * 1000}


def bench_latent_map(name: str, runs: int, method: str, n: int) -> tuple[dict, str]:
    """The Latent map tab's first view from its cache file, memory caches cleared each run
    (the cache file is written first if it is missing)."""
    import gradio as gr

    from playground.app import latent_map as tab
    from playground.pipelines import latent_map as lm
    from playground.pipelines import vae as ops

    note = f"{lm.METHOD_LABELS[method]}, {n} points, coloured by {tab.DEFAULT_COLOUR}"
    if lm.latent_map(name, method, n, 0, cached_only=True) is None:
        log(f"latent map {method}/{n} of {name} is not cached: computing it once")
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


# ------------------------------------------------------------------------------ UI overhead
def bench_vae_overhead(name: str, runs: int, inner: int, method: str,
                       points: int) -> tuple[dict, dict]:
    """UI overhead of the β-VAE tabs and the SynthFaces tab (see ROWS)."""
    from playground.app import data_tab, morph, traverse
    from playground.app import latent_map as tab
    from playground.data import synthfaces as sf
    from playground.evaluation import separation
    from playground.pipelines import face_sources, latent_paths
    from playground.pipelines import latent_map as lm
    from playground.pipelines import vae as ops

    values, notes = {}, {}
    model = ops.get_model(name)
    state = traverse.encode(name, "random", 0, 0, None)[2]
    sliders = [0.5] * traverse.N_SLIDERS
    z = latent_paths.with_values(state["z"], state["dims"], sliders[:len(state["dims"])])
    record_overhead(values, notes, "traverse_overhead_ratio",
                    *paired_seconds(lambda: traverse.decode(state, *sliders),
                                    lambda: ops.decode(model, z[None]), runs, inner))

    def encode_core():
        face = face_sources.random_face(3)
        ops.dims_by_kl(model)
        mu = ops.encode_mean(model, face[None])[0]
        ops.decode(model, mu[None])

    record_overhead(values, notes, "traverse_encode_overhead_ratio",
                    *paired_seconds(lambda: traverse.encode(name, "random", 3, 0, None),
                                    encode_core, runs, max(1, inner // 3)))

    def morph_core():
        frames = latent_paths.morph(model, face_sources.random_face(1),
                                    face_sources.random_face(2), 8, "lerp")
        pictures.gif_bytes(frames, fps=morph.GIF_FPS, pingpong=True, scale=2)

    record_overhead(values, notes, "morph_overhead_ratio",
                    *paired_seconds(lambda: morph.morph(name, "random", 1, 0, None, "random", 2,
                                                        0, None, 8, "lerp"),
                                    morph_core, runs, max(1, inner // 3)))

    if lm.latent_map(name, method, points, 0, cached_only=True) is None:
        lm.latent_map(name, method, points, 0)  # computed once, then served from memory

    def map_core():
        result = lm.latent_map(name, method, points, 0, cached_only=True)
        colour = lm.colour_values(result, tab.DEFAULT_COLOUR)
        separation.separation(result["points"], colour["labels"], seed=result["seed"])

    record_overhead(values, notes, "latent_map_overhead_ratio",
                    *paired_seconds(lambda: tab.show_cached_map(name, method, points, 0,
                                                                tab.DEFAULT_COLOUR, ""),
                                    map_core, runs))
    notes["latent_map_overhead_ratio"] += f" ({lm.METHOD_LABELS[method]}, {points} points)"
    record_overhead(values, notes, "synthfaces_overhead_ratio",
                    *paired_seconds(lambda: data_tab.random_grid(0, 32),
                                    lambda: sf.generate(32, 0), runs))
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


# ------------------------------------------------------------------------------ data vs training
def bench_synthfaces(runs: int, n: int, parallel: bool) -> tuple[dict, dict]:
    """Rendering speed: one thread, and `render_parallel` on every core (what `generate` uses)."""
    from playground.data import synthfaces as sf

    factors = sf.generate_factors(n, 12_345)
    one = n / median_seconds(lambda: sf.render(factors), runs)
    out = {"synthfaces_img_s_1proc": one}
    notes = {"synthfaces_img_s_1proc": f"{n} faces per run, one thread"}
    if not parallel:
        notes["synthfaces_img_s"] = "skipped in --quick"
        return out, notes
    workers = os.cpu_count() or 1
    total = max(n, 1000 * workers)
    many = sf.generate_factors(total, 54_321)
    out["synthfaces_img_s"] = total / median_seconds(lambda: sf.render_parallel(many), runs)
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

    t = median_seconds(step, runs, steps)
    params = sum(p.numel() for p in model.parameters())
    return {"vae_train_img_s": batch / t, "_params": params}

