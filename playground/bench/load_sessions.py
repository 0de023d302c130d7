"""The load test's users: concurrent `gradio_client` sessions replaying the plan, with the
latencies and outcomes per endpoint; the warm-up session; and the busy check (more calls at
once than the queue holds)."""
from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from playground.app.priority import lower_this_thread
from playground.bench.load_plan import Plan

BUSY_ENDPOINTS = ("/compare_betas", "/morph", "/synthfaces_grid")  # the first that works


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


def timed_call(client, plan: Plan, name: str, rng, tally: Tally | None) -> str | None:
    """One call of endpoint `name` with the plan's arguments → its error, None if it worked."""
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


def new_client(url: str):
    """A `gradio_client` session on the server at `url` (result files are not downloaded)."""
    import gradio_client

    return gradio_client.Client(url, verbose=False, download_files=False)


def _session(url: str, plan: Plan, user: int, users: int, seconds: float, seed: int,
             tally: Tally, nice: int = 0) -> int:
    """One user: the plan's groups from a user-specific start (users spread evenly over the
    list), seeded, until time is up; its thread (and the client's threads) at `nice`."""
    if nice:
        lower_this_thread(nice)
    client = new_client(url)
    rng = np.random.default_rng([seed, user])
    start = user * len(plan.groups) // users
    groups = plan.groups[start:] + plan.groups[:start]
    calls, deadline, i = 0, time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        for name in groups[i % len(groups)]:
            timed_call(client, plan, name, rng, tally)
            calls += 1
        i += 1
    return calls


def run_batch(url: str, plan: Plan, users: int, seconds: float, seed: int,
              nice: int = 0) -> dict:
    """`users` sessions at once for `seconds` (their threads at `nice`) → requests, errors, busy
    answers, per endpoint."""
    tally = Tally()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        calls = sum(pool.map(lambda u: _session(url, plan, u, users, seconds, seed, tally, nice),
                             range(users)))
    wall = time.perf_counter() - t0
    rows = tally.summary()
    return {"requests": calls, "errors": sum(r["errors"] for r in rows.values()),
            "busy": sum(r["busy"] for r in rows.values()), "wall_s": round(wall, 1),
            "requests_per_s": round(calls / wall, 2), "endpoints": rows}


def warm_up(url: str, plan: Plan, seed: int) -> dict:
    """Every group once, in one session; failing endpoints leave the plan."""
    client = new_client(url)
    rng = np.random.default_rng([seed, 10**6])
    failed = {}
    for group in list(plan.groups):
        for name in group:
            error = timed_call(client, plan, name, rng, None)
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
    new_client(url).predict(**plan.args(endpoint, rng), api_name=endpoint)
    return {"endpoint": endpoint, "max_size": max_size, "sent": n, "busy": len(busy),
            "busy_message": busy[0][2][:200] if busy else None,
            "busy_answer_s": round(max(dt for _, dt, _ in busy), 3) if busy else None,
            "accepted": len(finished), "accepted_finished": sum(finished),
            "other_status": sorted({s for s, _, _ in results if s not in (200, 503)}),
            "drained_s": round(drained, 1), "next_call_s": round(time.perf_counter() - t1, 2)}
