"""Sampling speed: the U-Net compiled by `torch.compile` with Inductor's freezing, one graph per
input shape, built in the background while the eager U-Net answers.

Why: a 50-step DDIM run of 4 faces is 50 U-Net calls of ~27 ms on one CPU thread, and most of
that is oneDNN convolutions re-reading weights laid out for training. Freezing folds the
weights into the graph as constants and pre-packs them for oneDNN: on this project's CPU
(AVX-512, one thread, batch 4) a call takes 18 ms instead of 27 (1.5×, the same result to
1e-5); `torch.compile` without freezing gained 1.06×, and dynamic shapes 1.2×.

The price is compile time: 20–60 s of CPU for each (batch, token length) the U-Net sees. So
`FastUNet` never makes a caller wait for it:

- the first call with a new shape runs the eager U-Net and queues that shape for compiling on
  one background thread (one shape at a time; at most `CompileConfig.max_graphs`);
- once compiled, the graph is timed against the eager U-Net (alternately, the same inputs)
  and kept only if it is at least `min_speedup` faster — on another CPU it may not be;
- any failure (no C++ compiler, an unsupported op) keeps that shape eager and says why.

Contexts are padded with masked tokens to a multiple of `token_bucket`, so prompts of similar
length share one graph; masked tokens change no output.

`mode` comes from ``$PLAYGROUND_UNET_COMPILE``: "off" (the default for scripts and tests),
"background" (the served app sets it, so its worker processes compile), or "wait" (compile
before answering: benchmarks). `fast(unet)` is what a pipeline calls.
"""
from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from playground.pipelines.inference import inference

MODES = ("off", "background", "wait")
ENV = "PLAYGROUND_UNET_COMPILE"


@dataclass
class CompileConfig:
    mode: str = "off"  # "off" | "background" | "wait" (see the module docstring)
    token_bucket: int = 8  # contexts padded to a multiple of this many tokens: fewer graphs
    min_speedup: float = 1.05  # a compiled graph must beat eager by this much to be used
    timing_calls: int = 5  # alternate eager / compiled calls timed before choosing
    max_graphs: int = 8  # = torch._dynamo's recompile limit per code object


def mode_from_env() -> str:
    mode = os.environ.get(ENV, "off").strip().lower() or "off"
    if mode not in MODES:
        raise ValueError(f"{ENV} must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def pad_tokens(context: torch.Tensor, mask: torch.Tensor, bucket: int):
    """(context (B, L, D), mask (B, L)) → zero-padded, masked-out to L rounded up to a multiple
    of `bucket` tokens. The U-Net's cross-attention ignores masked tokens."""
    length = context.shape[1]
    target = -(-length // bucket) * bucket
    if target == length:
        return context, mask
    pad = target - length
    context = torch.cat([context, context.new_zeros(context.shape[0], pad, context.shape[2])], 1)
    mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], 1)
    return context, mask


def _inductor_frozen(unet: nn.Module, inputs: tuple):
    """`unet` compiled by Inductor for the shapes of `inputs`, with frozen (constant-folded,
    pre-packed) weights; compiles on the call made here.

    Freezing is set on Inductor's config around that call: passed in `options` it did not
    reach the graph (1.25× instead of 1.48× on the same CPU)."""
    compiled = torch.compile(unet, dynamic=False)
    with torch._inductor.config.patch(freezing=True):
        compiled(*inputs)
    return compiled


def _lower_priority(nice: int = 10) -> None:
    """Compiling is background work: the compile thread (and the C++ compilers it starts)
    runs at nice `nice`, so the requests being answered keep the CPU."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # Linux: per thread
    except (AttributeError, OSError):
        pass


class FastUNet:
    """Calls like the U-Net, ``(x_t (B, C, H, W), t (B,), context (B, L, D), mask (B, L)) ->
    eps``, through a compiled graph where one is ready and faster, else the eager U-Net.

    `compile_fn(unet, inputs)` builds the compiled callable for the shapes of `inputs` (Inductor
    with freezing by default; tests pass their own). `decisions` maps each shape seen to
    "queued", "compiled (1.48x faster, …)", "eager (…)" or "failed: …"."""

    def __init__(self, unet: nn.Module, config: CompileConfig | None = None, compile_fn=None):
        self.unet = unet
        self.config = config or CompileConfig(mode=mode_from_env())
        self._compile_fn = compile_fn or _inductor_frozen
        self._ready: dict[tuple, object] = {}  # shape key → compiled callable to use
        self.decisions: dict[tuple, str] = {}
        self._lock = threading.Lock()
        self._pending: dict[tuple, Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="unet-compile",
                                        initializer=_lower_priority)

    def _key(self, x_t, context, mask) -> tuple | None:
        """What a compiled graph is specialised on; None = eager. Only calls under
        `inference()` (inference mode: what every sampler of the app runs in) are compiled:
        a graph is specialised on the grad mode too, and a call in another mode would
        recompile it in the caller's thread."""
        if not torch.is_inference_mode_enabled() or context is None or mask is None:
            return None
        return (tuple(x_t.shape), x_t.dtype, x_t.device.type, tuple(context.shape),
                context.dtype)

    def __call__(self, x_t, t, context=None, mask=None):
        if self.config.mode == "off":
            return self.unet(x_t, t, context, mask)
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            t = torch.full((x_t.shape[0],), int(t), device=x_t.device)
        self.unet._check(x_t, t, context, mask)  # the graph checks no shapes itself
        if context is not None and mask is not None:
            context, mask = pad_tokens(context, mask, self.config.token_bucket)
        key = self._key(x_t, context, mask)
        if key is None:
            return self.unet(x_t, t, context, mask)
        compiled = self._ready.get(key)
        if compiled is None:
            future = self._queue(key, x_t, t, context, mask)
            if self.config.mode == "wait" and future is not None:
                future.result()
                compiled = self._ready.get(key)
        if compiled is None:
            return self.unet(x_t, t, context, mask)
        return compiled(x_t.contiguous(), t.contiguous(), context.contiguous(), mask)

    def _queue(self, key, x_t, t, context, mask) -> Future | None:
        with self._lock:
            if key in self.decisions and key not in self._pending:
                return None  # decided (eager or failed)
            if key in self._pending:
                return self._pending[key]
            if len(self.decisions) >= self.config.max_graphs:
                self.decisions[key] = f"eager (already {self.config.max_graphs} graphs)"
                return None
            self.decisions[key] = "queued"
            inputs = tuple(v.detach().clone().contiguous() for v in (x_t, t, context)) + (
                mask.clone(),)
            future = self._pool.submit(self._build, key, inputs)
            self._pending[key] = future
            return future

    def _build(self, key, inputs) -> None:
        """Compile for `key`, time it against eager, and keep the faster (background thread)."""
        started = time.perf_counter()
        try:
            with inference():  # the callers' mode and thread count
                compiled = self._compile_fn(self.unet, inputs)
                compile_s = time.perf_counter() - started
                eager_s, compiled_s = [], []
                for _ in range(self.config.timing_calls):
                    for fn, times in ((self.unet, eager_s), (compiled, compiled_s)):
                        t0 = time.perf_counter()
                        fn(*inputs)
                        times.append(time.perf_counter() - t0)
            speedup = statistics.median(eager_s) / statistics.median(compiled_s)
            if speedup >= self.config.min_speedup:
                self._ready[key] = compiled
                decision = f"compiled ({speedup:.2f}x faster, {compile_s:.0f} s to compile)"
            else:
                decision = f"eager (compiled only {speedup:.2f}x)"
        except Exception as err:  # noqa: BLE001 - any compiler failure leaves the eager U-Net
            decision = f"failed: {type(err).__name__}: {str(err)[:200]}"
        with self._lock:
            self.decisions[key] = decision
            self._pending.pop(key, None)
        print(f"U-Net for input {key[0]}: {decision}", file=sys.stderr, flush=True)  # server log

    def wait(self, timeout: float | None = None) -> None:
        """Block until every queued compile has finished (tests, benchmarks)."""
        for future in list(self._pending.values()):
            future.result(timeout)


_fast_lock = threading.Lock()


def fast(unet: nn.Module):
    """The callable a pipeline samples with: `unet` itself when compiling is off, else its
    `FastUNet` (kept on the module, so it lives and goes with it)."""
    mode = mode_from_env()
    if mode == "off":
        return unet
    with _fast_lock:
        wrapper = unet.__dict__.get("_fast_unet")
        if wrapper is None or wrapper.config.mode != mode:
            wrapper = FastUNet(unet, CompileConfig(mode=mode))
            unet.__dict__["_fast_unet"] = wrapper  # not a submodule, parameter or buffer
        return wrapper
