"""Load test: many concurrent `gradio_client` sessions on every tab of the app.

    python -m playground.bench.load --users 20 --seconds 60 [--json] [--quick] [--heavy]

Starts the app in a child process with the settings `python app.py` uses (`app.queue_kwargs`,
`app.launch_kwargs`; its own Gradio cache folder), then:

1. warm-up: one session calls every endpoint once (models load, caches fill); an endpoint that
   fails here is reported with its error and left out of the batches;
2. two identical batches: `--users` sessions (threads, one `gradio_client.Client` each), each
   replaying the same seeded sequence of calls for `--seconds`; the RSS of the server and its
   heavy-work processes is read from /proc after the warm-up and after each batch (growth
   between the batches is the leak test);
   beside each batch, the slider probe (`playground.bench.load_probe`): one more student, in a
   process of its own, moving a Traverse slider every 0.25 s — what a slider move costs while
   the batch runs, without the load generator's own contention in the number;
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
p50_ms, p95_ms, max_ms}`` and ``slider_probe`` per batch, ``rss_mb`` (after warm-up, after each
batch), ``rss_growth_mb`` (last batch − first batch), ``rss_growth_per_batch_mb`` (a leak grows
the same every batch; an allocator's high-water mark settles), ``cache_mb`` (the server's Gradio
cache folder), ``warmup`` (errors and skipped endpoints with reasons), ``busy_check`` and
``targets``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

from playground.bench.load_plan import Plan, upload_picture
from playground.bench.load_probe import TARGET_P95_MS, Probe
from playground.bench.load_server import Server
from playground.bench.load_sessions import busy_check, new_client, run_batch, warm_up

TARGETS = {"errors": 0, "rss_growth_mb": 100, "busy_answer_s": 2.0,
           "slider_probe_p95_ms": TARGET_P95_MS}


def _log(message: str) -> None:
    """One progress line on stderr (stdout is for the report)."""
    print(f"[loadtest] {message}", file=sys.stderr, flush=True)


def run(users: int = 20, seconds: float = 60, batches: int = 2, quick: bool = False,
        heavy: bool = False, max_size: int | None = None, busy: bool = True,
        seed: int = 0, clients_nice: int = 0) -> dict:
    """Start the app, warm up, run the batches and the busy check → the report."""
    started = time.perf_counter()
    phases = {}
    server = Server(max_size)
    phases["server_start_s"] = round(time.perf_counter() - started, 1)
    workdir = tempfile.mkdtemp(prefix="loadtest-")
    try:
        client = new_client(server.url)
        api = client.view_api(return_format="dict", print_info=False)
        diffusion = None
        if "/prompt_models" in api["named_endpoints"]:
            update = client.predict(None, api_name="/prompt_models")
            choices = [c[0] if isinstance(c, (list, tuple)) else c
                       for c in (update or {}).get("choices", [])]
            diffusion = choices[0] if choices else None
        plan = Plan(api, quick, heavy, upload_picture(workdir), diffusion)
        rss = {"start": round(server.rss_mb(), 1)}
        _log(f"{server.url}: {len(plan.endpoints())} endpoints in the mix; warming up")
        t0 = time.perf_counter()
        failed = warm_up(server.url, plan, seed)
        phases["warmup_s"] = round(time.perf_counter() - t0, 1)
        rss["after_warmup"] = round(server.rss_mb(), 1)
        cache = {"after_warmup": round(server.cache_mb(), 2)}
        results = []
        for b in range(batches):
            _log(f"batch {b + 1}/{batches}: {users} users × {seconds:g} s (+ the slider probe)")
            probe = Probe(server.url, seconds, seed).start()
            results.append(run_batch(server.url, plan, users, seconds, seed, clients_nice))
            results[-1]["slider_probe"] = probe.result()
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
               "busy_answer_s": None, "slider_probe_p95_ms": None}
    last_probe = results[-1].get("slider_probe", {}) if results else {}
    if "met" in last_probe:
        targets["slider_probe_p95_ms"] = last_probe["met"]
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
        "clients_nice": clients_nice,
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
        probe = batch.get("slider_probe", {})
        if "p95_ms" in probe:
            lines.append(f"  slider probe (own process, a move every 0.25 s): {probe['n']} moves, "
                         f"{probe['errors']} errors, p50 {probe['p50_ms']:.0f} ms, "
                         f"p95 {probe['p95_ms']:.0f} ms (target ≤ {probe['target_p95_ms']})")
        elif probe:
            lines.append(f"  slider probe: {probe.get('note')}")
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
    parser.add_argument("--clients-nice", type=int, default=0,
                        help="nice value of the simulated users' threads: a class's browsers "
                             "run on their own machines, not on the server's cores (the slider "
                             "probe stays at normal priority)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.users < 1 or args.seconds <= 0 or args.batches < 1:
        parser.error("--users, --seconds and --batches must be positive")
    with contextlib.redirect_stdout(sys.stderr):
        report = run(args.users, args.seconds, args.batches, args.quick, args.heavy,
                     args.max_size, args.busy, args.seed, args.clients_nice)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else _table(report))
    ok = [v for v in report["targets"].values() if v is not None]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
