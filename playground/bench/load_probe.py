"""The load test's slider probe: one student dragging a Traverse slider while the others load
the server, timed from a process of its own.

    python -m playground.bench.load_probe URL SECONDS    # → JSON on stdout

The load test's users are threads of one Python process on the same machine as the server, so
their latencies also contain their own contention (20 clients sharing one GIL). A student's
browser runs on the student's machine: this probe is one `gradio_client` session in its own
process that encodes a face once and then moves a slider every `INTERVAL_S`, so its latencies
are what the server gives a slider move while the batch runs (the loopback network adds
well under a millisecond). `gradio_client` joins the queue's SSE protocol even for a
``queue=False`` event (the browser sends one plain request), so the probe is one more queue
joiner and its times are an upper bound on the browser's.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

import numpy as np

INTERVAL_S = 0.25  # a slider move every quarter second: a student dragging, not a flood
TARGET_P95_MS = 300  # the bound for a slider decode under a 20-user load


READY = "ready"  # the child's first line: its face is encoded, the timed moves start


def probe(url: str, seconds: float, seed: int = 0, ready=lambda: None) -> dict:
    """Encode a face, call `ready()`, then move a slider every INTERVAL_S for `seconds` →
    n, errors, p50/p95/max (ms) and whether p95 meets TARGET_P95_MS."""
    from playground.bench.load_plan import Plan, upload_picture
    from playground.bench.load_sessions import Tally, new_client, timed_call

    client = new_client(url)
    api = client.view_api(return_format="dict", print_info=False)
    if "/traverse_decode" not in api["named_endpoints"]:
        return {"note": "no /traverse_decode endpoint (no β-VAE?)"}
    rng = np.random.default_rng([seed, 7])
    with tempfile.TemporaryDirectory(prefix="slider-probe-") as folder:  # the encode's upload
        plan = Plan(api, quick=True, heavy=False, picture=upload_picture(folder),
                    diffusion_model=None)
        client.predict(**plan.args("/traverse_encode", rng), api_name="/traverse_encode")
    ready()
    tally = Tally()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        timed_call(client, plan, "/traverse_decode", rng, tally)
        time.sleep(max(0.0, INTERVAL_S - (time.perf_counter() - t0)))
    row = tally.summary().get("/traverse_decode", {"count": 0, "errors": 0, "p95_ms": None})
    if row["p95_ms"] is None:
        return {"n": 0, "errors": row["errors"], "note": "no slider move answered"}
    return {"n": row["count"] - row["errors"] - row["busy"], "errors": row["errors"],
            "p50_ms": row["p50_ms"], "p95_ms": row["p95_ms"], "max_ms": row["max_ms"],
            "target_p95_ms": TARGET_P95_MS, "met": row["p95_ms"] <= TARGET_P95_MS}


class Probe:
    """The probe as a child process started beside a batch: `start()`, then `result()`."""

    def __init__(self, url: str, seconds: float, seed: int = 0):
        self.args = [sys.executable, "-m", "playground.bench.load_probe", url, f"{seconds:g}",
                     "--seed", str(seed)]
        self.process: subprocess.Popen | None = None
        self.early = ""  # stdout read while waiting for READY (a child that ended early)

    def start(self) -> Probe:
        """Start the child and wait until it has encoded its face (its set-up — imports, the
        API description, one queued encode — is not part of the batch it times)."""
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a pipe could fill while unread
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True)
        for line in self.process.stdout:  # until READY, or the end of a child that stopped early
            if line.strip() == READY:
                break
            self.early += line
        return self

    def result(self, timeout: float = 120) -> dict:
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return {"note": "the probe did not finish"}
        if self.process.returncode != 0:
            self.stderr.seek(0)
            last = self.stderr.read().strip().splitlines()[-1:] or ["?"]
            return {"note": f"the probe failed: {last[0]}"}
        return json.loads(self.early + out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = probe(args.url, args.seconds, args.seed, ready=lambda: print(READY, flush=True))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
