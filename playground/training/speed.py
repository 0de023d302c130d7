"""Speed options chosen on the machine that trains: bf16 autocast and the channels_last layout.

Machines differ. On a CPU with avx512_bf16 (or AMX) bf16 autocast makes a conv training step
about 1.8× faster; on an AVX2-only CPU the same step is about 14× slower, because bf16 is
emulated there. channels_last helped the β-VAE by about 20 % on one AVX2 machine and is neutral
elsewhere. So no recipe names these options: ``auto`` (every trainer's default) times a few
real training steps of each candidate at the start of a run and keeps the fastest, and the run
logs what it chose and why.

Candidates that the hardware rules out are not timed: bf16 on a CPU without avx512_bf16 / AMX
flags, or on a GPU that does not support bf16.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import torch

AMP_CHOICES = ("auto", "none", "bf16")  # autocast: auto = timed, none = fp32, bf16 = bfloat16
LAYOUT_CHOICES = ("auto", "contiguous", "channels_last")  # memory format of 4-D activations
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags that make bf16 matmuls/convs native
SLOW_FACTOR = 3.0  # a candidate whose first step is this much slower than the best is dropped


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_native(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 runs natively on `device`, with the reason in words."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, "the GPU supports bf16" if ok else "this GPU has no bf16"
    found = [f for f in BF16_CPU_FLAGS if f in cpu_flags()]
    if found:
        return True, f"the CPU has {', '.join(found)}"
    return False, "the CPU has no avx512_bf16/amx_bf16 (bf16 would be emulated, ~14x slower)"


def machine_summary(device: torch.device | str = "cpu") -> dict:
    """What decides the speed options: CPU capability and flags, threads, GPU name."""
    device = torch.device(device)
    native, why = bf16_native(device)
    summary = {
        "device": str(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": native,
        "bf16_reason": why,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    return summary


@dataclass
class SpeedChoice:
    """The options a run trains with, and the timings that chose them."""

    amp: str  # "none" or "bf16"
    channels_last: bool  # convert the model and each batch to channels_last
    seconds: dict[str, float] = field(default_factory=dict)  # candidate → median s per step
    skipped: dict[str, str] = field(default_factory=dict)  # candidate → why it was not timed

    @property
    def label(self) -> str:
        return option_label(self.amp, self.channels_last)

    def describe(self) -> str:
        """One line for the log: the choice, each timing, each skipped candidate."""
        if not self.seconds:
            return f"speed options: {self.label} (as asked)"
        best = min(self.seconds.values())
        timed = ", ".join(f"{k} {v * 1000:.0f} ms ({v / best:.2f}x)"
                          for k, v in sorted(self.seconds.items(), key=lambda kv: kv[1]))
        skipped = "".join(f"; {k} not timed: {why}" for k, why in self.skipped.items())
        return f"speed options: {self.label} chosen by timing a training step: {timed}{skipped}"


def option_label(amp: str, channels_last: bool) -> str:
    return f"{'bf16' if amp == 'bf16' else 'fp32'}+{'channels_last' if channels_last else 'contiguous'}"


def candidates(amp: str, layout: str, device: torch.device
               ) -> tuple[list[tuple[str, bool]], dict[str, str]]:
    """The (amp, channels_last) pairs worth timing for the asked `amp` / `layout`, and the
    ones left out with the reason."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if layout not in LAYOUT_CHOICES:
        raise ValueError(f"layout must be one of {', '.join(LAYOUT_CHOICES)}, got {layout!r}")
    amps = ["none", "bf16"] if amp == "auto" else [amp]
    skipped: dict[str, str] = {}
    if amp == "auto":
        native, why = bf16_native(device)
        if not native:
            amps = ["none"]
            skipped["bf16"] = why
    layouts = [False, True] if layout == "auto" else [layout == "channels_last"]
    return [(a, cl) for a in amps for cl in layouts], skipped


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def choose(run_step: Callable[[str, bool], None], amp: str, layout: str, device: torch.device,
           repeats: int = 2, agree: Callable[[float], float] = lambda s: s) -> SpeedChoice:
    """Time ``run_step(amp, channels_last)`` (one forward + backward, no optimizer step) for
    each candidate and return the fastest.

    Each candidate gets one warm-up step (untimed: it builds the kernels) and `repeats` timed
    ones (median). A candidate whose first timed step is more than `SLOW_FACTOR` × the best
    median so far is dropped without more repeats (bf16 on the wrong CPU costs seconds per
    step). `agree` turns a local time into the one
    every process uses (rank 0's, under DDP), so all ranks take the same branches.
    """
    pairs, skipped = candidates(amp, layout, device)
    if len(pairs) == 1:
        return SpeedChoice(*pairs[0], skipped=skipped)
    seconds: dict[str, float] = {}

    def timed(a: str, cl: bool) -> float:
        _synchronize(device)
        t0 = time.perf_counter()
        run_step(a, cl)
        _synchronize(device)
        return agree(time.perf_counter() - t0)

    best = float("inf")
    for a, cl in pairs:
        timed(a, cl)  # warm-up: the first step of a mode creates its kernels (oneDNN JIT)
        first = timed(a, cl)
        if first > SLOW_FACTOR * best:
            seconds[option_label(a, cl)] = first
            continue
        median = statistics.median([first] + [timed(a, cl) for _ in range(repeats - 1)])
        seconds[option_label(a, cl)] = median
        best = min(best, median)
    a, cl = min(pairs, key=lambda p: seconds[option_label(*p)])
    return SpeedChoice(a, cl, seconds, skipped)
