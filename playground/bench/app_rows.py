"""The app rows of the speed benchmark: a slider move and a trivial event through
gradio_client against the app in this process, and the app's start-up in a fresh process
(build, launch, load every model, first answer)."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

from playground.bench.timing import median_seconds


def _launch_app_here():
    """The app as `python app.py` serves it, in this process, on a free local port."""
    import app

    demo = app.build_app()
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True))
    return demo


def bench_client(name: str, runs: int, inner: int) -> dict:
    """Slider decode through gradio_client against an app in this process."""
    import gradio_client

    from playground.app import traverse

    demo = _launch_app_here()
    try:
        client = gradio_client.Client(demo.local_url, verbose=False)
        client.predict(name, "random", 0, 0, None, api_name="/traverse_encode")
        values = [0.5] * traverse.N_SLIDERS
        t = median_seconds(lambda: client.predict(*values, api_name="/traverse_decode"),
                           runs, inner)
        trivial = median_seconds(lambda: client.predict(name, api_name="/traverse_models"),
                                 runs, inner)
    finally:
        demo.close()
    return {"traverse_decode_client_ms": t * 1000, "gradio_roundtrip_ms": trivial * 1000}


_APP_IN_CHILD = """
import sys
import app
from playground.app import priority
demo = app.build_app()
demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
    prevent_thread_lock=True, server_name="127.0.0.1", quiet=True))
app.preload()  # every β-VAE, the diffusion pipeline and the judge, as `python app.py` does
priority.start_workers()  # the heavy-work processes, as `python app.py` does
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
        child = subprocess.Popen([sys.executable, "-c", _APP_IN_CHILD], cwd=repo_root(),
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

