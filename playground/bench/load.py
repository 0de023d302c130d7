"""Load test: many concurrent `gradio_client` sessions on every tab of the app.

    python -m playground.bench.load --users 20 --seconds 60 [--json] [--quick] [--heavy]

Starts the app in a child process with the settings `python app.py` uses (`app.queue_kwargs`,
`app.launch_kwargs`; its own Gradio cache folder), then:

1. warm-up: one session calls every endpoint once (models load, caches fill); an endpoint that
   fails here is reported with its error and left out of the batches;
2. two identical batches: `--users` sessions (threads, one `gradio_client.Client` each), each
   replaying the same seeded sequence of calls for `--seconds`; the server's RSS is read from
   /proc after the warm-up and after each batch (growth between the batches is the leak test);
3. busy check: more simultaneous calls than the queue holds (``max_size``) on a slow endpoint
   → how many were told "busy" (503, "Queue is full") and how fast, and that every accepted
   call still finished and the app answers afterwards.

The mix: every named endpoint with the values its widgets start with (what a student's first
click sends), seeds drawn at random, traversal sliders moved at random, an uploaded picture for
upload endpoints; calls that share session state run in order (encode → slider moves → grid).
Left out: endpoints that start, resume or cancel training runs or cancel other events, and
(unless --heavy) the long ones (DDPM 1000 steps, guidance sweeps). --quick shrinks expensive
defaults (a PCA map of 200 points, 10 diffusion steps) for the test suite's tiny models.

Report (``--json``): ``requests``, ``errors``, ``busy``, per-endpoint ``{count, errors, busy,
p50_ms, p95_ms, max_ms}`` per batch, ``rss_mb`` (after warm-up, after each batch),
``rss_growth_mb`` (last batch − first batch), ``rss_growth_per_batch_mb`` (a leak grows the
same every batch; an allocator's high-water mark settles), ``cache_mb`` (the server's Gradio
cache folder),
``warmup`` (errors and skipped endpoints with reasons), ``busy_check`` and ``targets``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# endpoint → why it is not part of the mix
EXCLUDED = {
    "/train_start": "starts a training run (one at a time, writes runs/)",
    "/train_resume": "resumes a training run",
    "/train_cancel": "cancels a training run",
    "/train_status": "needs the name of an existing run",
    "/train_pick": "needs the name of an existing run",
    "/denoise_stop": "cancels other events",
    "/prompt_random_seed": "client-side dice (no work on the server)",
}
HEAVY = {
    "/denoise_ddpm": "DDPM 1000 steps (~20 s on 2 cores): --heavy",
    "/denoise_run": "DDPM and DDIM together: --heavy",
    "/prompt_sweep": "four guidance scales per call: --heavy",
}
# calls that share a session's state run in this order, as a user would make them
SEQUENCES = [("/traverse_encode", "/traverse_decode", "/traverse_decode", "/traverse_grid")]
# the map's seed is part of what is cached: students keep it, so it is not varied
KEEP_SEED = {"/latent_map", "/latent_map_cached", "/latent_map_point"}
# --quick: smaller versions of expensive defaults (tiny models in the test suite)
QUICK = {
    "/latent_map": {"method": "pca", "n_points": 200},
    "/latent_map_cached": {"method": "pca", "n_points": 200},
    "/latent_map_point": {"n_points": 200},
    "/synthfaces_grid": {"count": 8},
    "/prompt_generate": {"steps": 10, "n_faces": 1},
    "/prompt_sweep": {"steps": 10, "n_faces": 1},
    "/denoise_ddim": {"steps": 10, "n_faces": 1},
    "/denoise_ddpm": {"n_faces": 1},
    "/denoise_run": {"steps": 10, "n_faces": 1},
    "/denoise_forward": {"t": 10},
    "/denoise_forward_upload": {"t": 10},
}
BUSY_ENDPOINTS = ("/compare_betas", "/morph", "/synthfaces_grid")  # the first that works
TARGETS = {"errors": 0, "rss_growth_mb": 100, "busy_answer_s": 2.0}
SLIDER_RANGE = 3.0


def _log(message: str) -> None:
    print(f"[loadtest] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the server
_SERVER = """
import json, sys
import app
opts = json.loads(sys.argv[1])
app.limit_malloc_arenas()  # as app.main() does
demo = app.build_app()
queue = app.queue_kwargs()
if opts.get("max_size"):
    queue["max_size"] = opts["max_size"]
demo.queue(**queue).launch(**app.launch_kwargs(queue["max_size"], prevent_thread_lock=True,
                                               server_name="127.0.0.1", quiet=True))
print("URL", demo.local_url, json.dumps(queue), flush=True)
sys.stdin.read()  # serve until the parent closes stdin
demo.close()
"""


class Server:
    """The app in a child process (its RSS can be read); a fresh Gradio cache folder."""

    def __init__(self, max_size: int | None = None):
        from playground.store.checkpoints import repo_root

        self.cache = tempfile.mkdtemp(prefix="loadtest-gradio-")
        env = {**os.environ, "GRADIO_TEMP_DIR": self.cache, "GRADIO_ANALYTICS_ENABLED": "False"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, json.dumps({"max_size": max_size})],
            cwd=repo_root(), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if line.startswith("URL "):
                _, url, queue = line.split(" ", 2)
                self.url, self.queue = url.rstrip("/"), json.loads(queue)
                break
        else:
            raise RuntimeError(f"the app did not start (exit code {self.proc.wait(60)})")

    def rss_mb(self) -> float:
        """Resident memory of the server process (VmRSS), MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc")

    def cache_mb(self) -> float:
        return sum(p.stat().st_size for p in Path(self.cache).rglob("*") if p.is_file()) / 2**20

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(30)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()
        import shutil

        shutil.rmtree(self.cache, ignore_errors=True)


# ------------------------------------------------------------------------------ the mix
def _picture(folder: str) -> str:
    """A 96×72 PNG to upload (any size: the app crops and resizes it)."""
    from PIL import Image

    path = Path(folder) / "upload.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(path)
    return str(path)


class Plan:
    """Which endpoints are called, and with what arguments."""

    def __init__(self, api: dict, quick: bool, heavy: bool, picture: str,
                 diffusion_model: str | None):
        self.api, self.quick, self.picture = api, quick, picture
        self.diffusion_model = diffusion_model
        self.skipped: dict[str, str] = {}
        endpoints = []
        for name, info in api["named_endpoints"].items():
            reason = EXCLUDED.get(name) or (None if heavy else HEAVY.get(name))
            if reason is None:
                reason = self._missing(info)
            if reason:
                self.skipped[name] = reason
            else:
                endpoints.append(name)
        self.groups: list[tuple[str, ...]] = []
        for seq in SEQUENCES:
            if all(e in endpoints for e in seq):
                self.groups.append(seq)
        in_sequence = {e for g in self.groups for e in g}
        self.groups += [(e,) for e in endpoints if e not in in_sequence]

    def _missing(self, info: dict) -> str | None:
        for p in info["parameters"]:
            if p.get("parameter_has_default") or p["python_type"]["type"] in ("filepath", "str"):
                continue  # no file: the picture; no text: "" (an empty text box)
            if p["parameter_name"] == "model_name" and self.diffusion_model:
                continue
            if p["parameter_name"] == "current":
                continue
            if p["parameter_name"] == "model_name":
                return "no diffusion model to call it with"
            return f"no value for its parameter {p['parameter_name']!r}"
        return None

    def endpoints(self) -> list[str]:
        return [e for g in self.groups for e in g]

    def args(self, name: str, rng: np.random.Generator, raw: bool = False) -> dict:
        """Keyword arguments for one call (`raw`: for the REST API, no file to upload)."""
        from gradio_client import handle_file

        quick = QUICK.get(name, {}) if self.quick else {}
        kwargs = {}
        for p in self.api["named_endpoints"][name]["parameters"]:
            key, kind = p["parameter_name"], p["python_type"]["type"]
            if key in quick:
                value = quick[key]
            elif kind == "filepath":
                value = None if raw else handle_file(self.picture)
            elif key == "model_name" and not p.get("parameter_has_default"):
                value = self.diffusion_model
            elif "seed" in key and kind == "int" and name not in KEEP_SEED:
                value = int(rng.integers(0, 100_000))
            elif re.fullmatch(r"param_\d+", key) and name in ("/traverse_decode", "/traverse_grid"):
                value = round(float(rng.uniform(-SLIDER_RANGE, SLIDER_RANGE)), 2)
            elif p.get("parameter_has_default"):
                value = p["parameter_default"]
            else:
                value = "" if kind == "str" else None
            kwargs[key] = value
        return kwargs


# ------------------------------------------------------------------------------ sessions
class Tally:
    """Latencies and outcomes per endpoint (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {}
        self.errors: dict[str, list[str]] = {}
        self.busy: dict[str, int] = {}

    def add(self, name: str, seconds: float, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.times.setdefault(name, []).append(seconds)
            elif "queue is full" in error.lower():
                self.busy[name] = self.busy.get(name, 0) + 1
            else:
                self.errors.setdefault(name, []).append(error)

    def summary(self) -> dict:
        rows = {}
        for name in sorted(set(self.times) | set(self.errors) | set(self.busy)):
            t = sorted(self.times.get(name, []))
            rows[name] = {
                "count": len(t) + len(self.errors.get(name, [])) + self.busy.get(name, 0),
                "errors": len(self.errors.get(name, [])), "busy": self.busy.get(name, 0),
                "p50_ms": round(1000 * statistics.median(t), 1) if t else None,
                "p95_ms": round(1000 * float(np.percentile(t, 95)), 1) if t else None,
                "max_ms": round(1000 * t[-1], 1) if t else None}
            if name in self.errors:
                rows[name]["first_error"] = self.errors[name][0][:300]
        return rows


def _call(client, plan: Plan, name: str, rng, tally: Tally | None) -> str | None:
    kwargs = plan.args(name, rng)
    t0 = time.perf_counter()
    error = None
    try:
        client.predict(**kwargs, api_name=name)
    except Exception as err:  # an AppError (gr.Error) or a transport failure: both count
        error = f"{type(err).__name__}: {err}"
    if tally is not None:
        tally.add(name, time.perf_counter() - t0, error)
    return error


def _client(url: str):
    import gradio_client

    return gradio_client.Client(url, verbose=False, download_files=False)


def _session(url: str, plan: Plan, user: int, users: int, seconds: float, seed: int,
             tally: Tally) -> int:
    """One user: the plan's groups from a user-specific start (users spread evenly over the
    list), seeded, until time is up."""
    client = _client(url)
    rng = np.random.default_rng([seed, user])
    start = user * len(plan.groups) // users
    groups = plan.groups[start:] + plan.groups[:start]
    calls, deadline, i = 0, time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        for name in groups[i % len(groups)]:
            _call(client, plan, name, rng, tally)
            calls += 1
        i += 1
    return calls


def run_batch(url: str, plan: Plan, users: int, seconds: float, seed: int) -> dict:
    tally = Tally()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        calls = sum(pool.map(lambda u: _session(url, plan, u, users, seconds, seed, tally),
                             range(users)))
    wall = time.perf_counter() - t0
    rows = tally.summary()
    return {"requests": calls, "errors": sum(r["errors"] for r in rows.values()),
            "busy": sum(r["busy"] for r in rows.values()), "wall_s": round(wall, 1),
            "requests_per_s": round(calls / wall, 2), "endpoints": rows}


def warm_up(url: str, plan: Plan, seed: int) -> dict:
    """Every group once, in one session; failing endpoints leave the plan."""
    client = _client(url)
    rng = np.random.default_rng([seed, 10**6])
    failed = {}
    for group in list(plan.groups):
        for name in group:
            error = _call(client, plan, name, rng, None)
            if error:
                failed[name] = error[:300]
    if failed:
        plan.groups = [g for g in plan.groups if not any(e in failed for e in g)]
    return failed


# ------------------------------------------------------------------------------ busy check
def busy_check(url: str, plan: Plan, max_size: int, seed: int) -> dict:
    """Flood a slow endpoint with more simultaneous calls than the queue holds (asyncio: all
    requests in flight at once, as from many browsers), then collect every accepted result."""
    import asyncio

    import httpx

    endpoint = next((e for e in BUSY_ENDPOINTS if e in plan.endpoints()), None)
    if endpoint is None:
        return {"note": f"none of {BUSY_ENDPOINTS} is available"}
    rng = np.random.default_rng(seed)
    params = plan.api["named_endpoints"][endpoint]["parameters"]
    n = 2 * max_size + 32
    bodies = []
    for _ in range(n):
        kwargs = plan.args(endpoint, rng, raw=True)
        bodies.append({"data": [kwargs[p["parameter_name"]] for p in params]})

    async def flood() -> tuple[list, list[bool], float]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
            async def post(body):
                t0 = time.perf_counter()
                r = await http.post(f"/gradio_api/call{endpoint}", json=body)
                return r.status_code, time.perf_counter() - t0, r.text

            t0 = time.perf_counter()
            results = await asyncio.gather(*(post(b) for b in bodies))

            async def finish(event_id: str) -> bool:
                r = await http.get(f"/gradio_api/call{endpoint}/{event_id}")
                return "event: complete" in r.text

            accepted = [json.loads(text)["event_id"] for s, _, text in results if s == 200]
            finished = await asyncio.gather(*(finish(e) for e in accepted))
            return results, finished, time.perf_counter() - t0

    results, finished, drained = asyncio.run(flood())
    busy = [(s, dt, text) for s, dt, text in results if s == 503]
    t1 = time.perf_counter()
    _client(url).predict(**plan.args(endpoint, rng), api_name=endpoint)
    return {"endpoint": endpoint, "max_size": max_size, "sent": n, "busy": len(busy),
            "busy_message": busy[0][2][:200] if busy else None,
            "busy_answer_s": round(max(dt for _, dt, _ in busy), 3) if busy else None,
            "accepted": len(finished), "accepted_finished": sum(finished),
            "other_status": sorted({s for s, _, _ in results if s not in (200, 503)}),
            "drained_s": round(drained, 1), "next_call_s": round(time.perf_counter() - t1, 2)}


# ------------------------------------------------------------------------------ the run
def run(users: int = 20, seconds: float = 60, batches: int = 2, quick: bool = False,
        heavy: bool = False, max_size: int | None = None, busy: bool = True,
        seed: int = 0) -> dict:
    """Start the app, warm up, run the batches and the busy check → the report."""
    started = time.perf_counter()
    phases = {}
    server = Server(max_size)
    phases["server_start_s"] = round(time.perf_counter() - started, 1)
    workdir = tempfile.mkdtemp(prefix="loadtest-")
    try:
        client = _client(server.url)
        api = client.view_api(return_format="dict", print_info=False)
        diffusion = None
        if "/prompt_models" in api["named_endpoints"]:
            update = client.predict(None, api_name="/prompt_models")
            choices = [c[0] if isinstance(c, (list, tuple)) else c
                       for c in (update or {}).get("choices", [])]
            diffusion = choices[0] if choices else None
        plan = Plan(api, quick, heavy, _picture(workdir), diffusion)
        rss = {"start": round(server.rss_mb(), 1)}
        _log(f"{server.url}: {len(plan.endpoints())} endpoints in the mix; warming up")
        t0 = time.perf_counter()
        failed = warm_up(server.url, plan, seed)
        phases["warmup_s"] = round(time.perf_counter() - t0, 1)
        rss["after_warmup"] = round(server.rss_mb(), 1)
        cache = {"after_warmup": round(server.cache_mb(), 2)}
        results = []
        for b in range(batches):
            _log(f"batch {b + 1}/{batches}: {users} users × {seconds:g} s")
            results.append(run_batch(server.url, plan, users, seconds, seed))
            rss[f"after_batch{b + 1}"] = round(server.rss_mb(), 1)
            cache[f"after_batch{b + 1}"] = round(server.cache_mb(), 2)
        busy_result = None
        if busy:
            _log("busy check")
            t0 = time.perf_counter()
            busy_result = busy_check(server.url, plan, server.queue["max_size"], seed)
            phases["busy_check_s"] = round(time.perf_counter() - t0, 1)
            rss["after_busy_check"] = round(server.rss_mb(), 1)
    finally:
        server.close()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    growth = (rss[f"after_batch{batches}"] - rss["after_batch1"]) if batches >= 2 else None
    errors = sum(r["errors"] for r in results)
    requests = sum(r["requests"] for r in results)
    cache_growth = (cache[f"after_batch{batches}"] - cache["after_warmup"])
    targets = {"errors": errors <= TARGETS["errors"],
               "rss_growth_mb": None if growth is None else growth < TARGETS["rss_growth_mb"],
               "busy_answer_s": None}
    if busy_result and busy_result.get("busy"):
        targets["busy_answer_s"] = busy_result["busy_answer_s"] <= TARGETS["busy_answer_s"]
    return {
        "users": users, "seconds": seconds, "batches": results, "requests": requests,
        "errors": errors, "busy": sum(r["busy"] for r in results),
        "rss_mb": rss, "rss_growth_mb": None if growth is None else round(growth, 1),
        "rss_growth_per_batch_mb": [round(rss[f"after_batch{b + 1}"] - rss[
            f"after_batch{b}" if b else "after_warmup"], 1) for b in range(batches)],
        "cache_mb": cache, "cache_kb_per_request": round(1024 * cache_growth / requests, 1)
        if requests else None,
        "queue": server.queue, "endpoints": plan.endpoints(),
        "warmup": {"failed": failed, "skipped": plan.skipped},
        "busy_check": busy_result, "targets": targets, "target_values": TARGETS,
        "quick": quick, "heavy": heavy, "diffusion_model": diffusion,
        "machine": {"cores": os.cpu_count(), "load_avg": [round(v, 2) for v in os.getloadavg()]},
        "phases": phases, "seconds_total": round(time.perf_counter() - started, 1)}


def _table(report: dict) -> str:
    lines = [f"{report['users']} users × {report['seconds']:g} s × {len(report['batches'])} "
             f"batches: {report['requests']} requests, {report['errors']} errors, "
             f"{report['busy']} busy; server RSS {report['rss_mb']} MB, growth between "
             f"batches {report['rss_growth_mb']} MB; Gradio cache {report['cache_mb']} MB"]
    for b, batch in enumerate(report["batches"], 1):
        lines.append(f"batch {b}: {batch['requests']} requests in {batch['wall_s']} s "
                     f"({batch['requests_per_s']}/s)")
        lines.append(f"  {'endpoint':26s} {'n':>5s} {'err':>4s} {'busy':>4s} {'p50 ms':>8s} "
                     f"{'p95 ms':>8s}")
        for name, row in batch["endpoints"].items():
            lines.append(f"  {name:26s} {row['count']:5d} {row['errors']:4d} {row['busy']:4d} "
                         f"{row['p50_ms'] or 0:8.0f} {row['p95_ms'] or 0:8.0f}")
    for name, why in {**report["warmup"]["skipped"], **report["warmup"]["failed"]}.items():
        lines.append(f"not in the mix: {name}: {why}")
    if report["busy_check"]:
        lines.append(f"busy check: {json.dumps(report['busy_check'], ensure_ascii=False)}")
    lines.append(f"targets: {report['targets']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20, help="concurrent sessions")
    parser.add_argument("--seconds", type=float, default=60, help="length of each batch")
    parser.add_argument("--batches", type=int, default=2, help="identical batches (RSS growth "
                        "is measured between the first and the last)")
    parser.add_argument("--quick", action="store_true", help="small settings (tiny models)")
    parser.add_argument("--heavy", action="store_true", help="include DDPM 1000 and sweeps")
    parser.add_argument("--max-size", type=int, help="override the queue's max_size (to try "
                        "the busy answer with a small queue)")
    parser.add_argument("--no-busy", dest="busy", action="store_false",
                        help="skip the busy check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.users < 1 or args.seconds <= 0 or args.batches < 1:
        parser.error("--users, --seconds and --batches must be positive")
    with contextlib.redirect_stdout(sys.stderr):
        report = run(args.users, args.seconds, args.batches, args.quick, args.heavy,
                     args.max_size, args.busy, args.seed)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else _table(report))
    ok = [v for v in report["targets"].values() if v is not None]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
