"""Timing helpers of the speed benchmark: median seconds of a call, two calls timed
alternately (handler against its core calls), the overhead ratio they give, the progress log,
and what the machine was (cores, load, threads, CPU, GPU) when the numbers were taken."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path


def median_seconds(fn: Callable[[], object], runs: int, inner: int = 1) -> float:
    """Median seconds of one call of `fn` over `runs` × `inner` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(runs * inner):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def log(message: str) -> None:
    """One progress line on stderr (stdout is for the report)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    """What the machine is and how busy it is at the start: reported with every benchmark."""
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


def paired_seconds(handler: Callable[[], object], bare: Callable[[], object], runs: int,
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


def record_overhead(values: dict, notes: dict, key: str, handler_s: float,
                    bare_s: float) -> None:
    """Store a UI-overhead row: handler seconds over core seconds, both shown in its note (to
    0.01 ms: a decode takes ~0.3 ms, where 0.1 ms steps would misstate the ratio by ~15 %)."""
    values[key] = handler_s / bare_s
    notes[key] = f"handler {handler_s * 1000:.2f} ms / core {bare_s * 1000:.2f} ms"
