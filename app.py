"""VAE & Diffusion Playground: assembles the tabs and launches the app.

    python app.py            # http://127.0.0.1:7860
"""
from __future__ import annotations

import os

import gradio as gr

from playground.app import data_tab, denoise, morph, priority, prompt, traverse
from playground.app import latent_map as latent_map_tab
from playground.app import train as train_tab
from playground.pipelines import compiled_unet

TITLE = "VAE & Diffusion Playground"
CACHE_CLEANUP = (3600, 7200)  # hourly, delete result files older than 2 h (~50 kB per call)


def build_app() -> gr.Blocks:
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(f"# {TITLE}\nSee how variational autoencoders and diffusion models work "
                    "on 64×64 faces, and check every claim with a number.")
        traverse.build(demo)
        morph.build(demo)
        denoise.build(demo)
        prompt.build(demo)
        latent_map_tab.build(demo)
        train_tab.build(demo)
        data_tab.build()
    return demo


QUEUE_SIZE = 64  # waiting events at most (a class of 30, two each); more are told "busy"
MAX_FILE_SIZE = "5mb"  # larger uploads are refused (413) before any handler runs
SESSION_CAPACITY = 256  # browser sessions kept in memory (~0.5 MB each; Gradio keeps 10,000)
MALLOC_ARENAS = 2  # glibc malloc arenas for the server process (see limit_malloc_arenas)


def queue_kwargs() -> dict:
    """`Blocks.queue` settings of the served app (tests and benchmarks use the same)."""
    return {"default_concurrency_limit": 2, "max_size": QUEUE_SIZE}


def launch_kwargs(queue_size: int = QUEUE_SIZE, **overrides) -> dict:
    """`Blocks.launch` settings of the served app; `overrides` add or replace keys (tests:
    ``prevent_thread_lock=True``, a free port). No /monitoring dashboard (by default Gradio
    serves its event summary to anyone); cross-site writes refused (playground.app.guard); at
    most `queue_size` queue joins admitted at once (playground.app.join_limit: the events'
    validators would otherwise let a burst past the queue's max_size)."""
    from starlette.middleware import Middleware

    from playground.app.guard import CrossOriginWriteGuard
    from playground.app.join_limit import JoinLimiter

    middleware = [Middleware(CrossOriginWriteGuard),
                  Middleware(JoinLimiter, max_in_flight=queue_size)]
    # page scripts: a click on the latent map picks a face; the schedule plot follows a run
    return {"head": latent_map_tab.head_script() + denoise.head_script(),
            "max_file_size": MAX_FILE_SIZE, "enable_monitoring": False,
            "state_session_capacity": SESSION_CAPACITY,
            "app_kwargs": {"middleware": middleware}, **overrides}


def preload() -> list[str]:
    """Load every shipped model into the caches the tabs use (the β-VAEs, the latent-diffusion
    pipeline, the judge), so no visitor waits for a first load. A missing or broken model is
    skipped (its tab says so when used). Returns the names of what was loaded."""
    from playground.pipelines import diffusion_models
    from playground.pipelines import vae as ops

    loaded = []
    for name in ops.list_vae_models():
        try:
            ops.get_model(name)
            loaded.append(name)
        except (ValueError, OSError, RuntimeError):
            continue
    return loaded + diffusion_models.preload()


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas, as ``MALLOC_ARENA_MAX`` would. Every worker thread otherwise
    gets an arena that keeps its own high-water mark: 20 concurrent users on every tab left the
    server at 2.0 GB RSS after four load batches, 1.36 GB with two arenas, at the same speed.
    Returns False (and does nothing) off glibc, or when ``MALLOC_ARENA_MAX`` is set already."""
    import ctypes
    import os
    import sys

    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, int(arenas)))  # -8 = M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def main() -> None:
    limit_malloc_arenas()
    demo = build_app()
    loaded = preload()
    print(f"models loaded: {', '.join(loaded) or 'none'}", flush=True)
    # diffusion runs compile the U-Net per input shape in the background (workers inherit it)
    os.environ.setdefault(compiled_unet.ENV, "background")
    where = {"process": "worker processes", "thread": "low-priority threads"}
    print(f"diffusion runs compute in {where[priority.start_workers()]}", flush=True)
    demo.queue(**queue_kwargs()).launch(**launch_kwargs())


if __name__ == "__main__":
    main()
