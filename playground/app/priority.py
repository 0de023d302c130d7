"""Heavy handlers (diffusion runs, inversions, guidance sweeps) run at a lower CPU priority than
light ones (slider moves, encodes, maps), so a slider never waits for the CPU behind them.

On a 2-core server with two diffusion runs going, every thread gets an equal share of the CPU:
a slider move's few milliseconds of work stretch to hundreds. Linux keeps a nice value per
thread, so `background(handler)` runs the handler's work in a small pool of threads at
`HEAVY_NICE` (the OpenMP threads torch starts from them inherit it): the scheduler then gives
light events ~90 % of a contended core. Nothing changes on an idle machine, and where the
priority cannot be lowered (not Linux) the work still runs, at normal priority.

The handler's context (Gradio's progress bar, request and event) goes with each step.

Where `playground.app.heavy_workers` has started (the served app), a module-level handler runs
in one of its worker processes instead, at the same nice value: there it holds no GIL the
server needs either.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from playground.app import heavy_workers

# the nice value of heavy work (0 = normal; 19 = only when nothing else runs);
# PLAYGROUND_HEAVY_NICE=0 turns it off (the load test's A/B)
HEAVY_NICE = int(os.environ.get("PLAYGROUND_HEAVY_NICE", "10"))
HEAVY_WORKERS = 2  # = the "diffusion" concurrency limit: one thread per running heavy event

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_DONE = object()  # what `next` returns when a generator is exhausted


def lower_this_thread(nice: int = HEAVY_NICE) -> bool:
    """Give the calling OS thread the nice value `nice` → whether it took effect."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # Linux: per thread
        return True
    except OSError:
        return False


def thread_nice() -> int | None:
    """The calling thread's nice value (None where it cannot be read)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except (AttributeError, OSError):
        return None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(HEAVY_WORKERS, thread_name_prefix="heavy",
                                       initializer=lower_this_thread)
        return _pool


def _run(fn, *args, **kwargs):
    """fn(*args, **kwargs) on a low-priority thread, in a copy of the caller's context."""
    return _executor().submit(contextvars.copy_context().run, fn, *args, **kwargs).result()


def start_workers(mode: str | None = None) -> str:
    """Where heavy handlers will run: `mode` "process" starts `HEAVY_WORKERS` worker processes
    at `HEAVY_NICE` (loading the default diffusion model), "thread" keeps them on this process's
    low-priority threads. Default: ``$PLAYGROUND_HEAVY_WORK`` or "process". → the mode."""
    mode = mode or heavy_workers.mode_from_env()
    if mode == "process":
        heavy_workers.start(HEAVY_WORKERS, nice=max(HEAVY_NICE, 0),
                            warm_up=("playground.pipelines.diffusion_models", "preload"))
    return mode


def _in_worker(handler) -> bool:
    return heavy_workers.running() and heavy_workers.resolve(handler) is not None


def background(handler):
    """The handler, its work done at low priority: a streaming (generator) handler yields the
    same frames, each computed on a low-priority thread (or worker process); a plain one
    returns the same value."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args, **kwargs):
            if _in_worker(handler):
                yield from heavy_workers.stream(handler, *args, **kwargs)
                return
            frames = handler(*args, **kwargs)  # creating a generator runs none of its body
            try:
                while (frame := _run(next, frames, _DONE)) is not _DONE:
                    yield frame
            finally:
                frames.close()  # Stop: the handler's own cleanup runs

        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        if _in_worker(handler):
            return heavy_workers.call(handler, *args, **kwargs)
        return _run(handler, *args, **kwargs)

    return call
