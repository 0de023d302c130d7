"""`inference()`: the context every pipeline and tab wraps its torch work in (no grad, one thread).

Speed: all torch work of the pipelines runs on one thread (the β-VAE in chunks of 64 images).
On the 2-core machine with other work running (training), one thread is several times faster
than two for these small models: a 1-face decode takes ~2 ms against ~8 ms, 8 faces ~13 ms
against ~60 ms, 512 encodes ~0.5 s against ~1.1 s (OpenMP threads wait for a busy core). Under
OpenMP the thread count belongs to the calling thread, so other threads (other app requests, a
training thread) are unaffected, and it is restored on exit.
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def inference():
    """inference_mode on one torch thread (the caller's thread count is restored afterwards):
    on the 2-core machine with training running, one thread is faster for these small models.
    Wrap every chunk of work, not a whole generator (a UI may resume it on another thread)."""
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
