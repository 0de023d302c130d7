"""Checks of the numbers people type, written once for the core, the trainers and the UI.

Each returns the clean value or raises ValueError with a message that names the field, what it
must be and what it got — the message the app shows next to the field.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_SEED = 2**31 - 1  # seeds people type: what numpy, torch and the samplers all accept


def number(value: Any, name: str) -> float:
    """`value` (3, 3.5, "3.5", a numpy scalar) as a finite float; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return out


def whole_number(value: Any, name: str) -> int:
    """`value` (3, 3.0, "3") as an int — exact for large ints, which a float would round;
    ValueError naming `name` for anything else (1.5, NaN, None, True, "abc")."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(out) or not out.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(out)


def in_range(value: Any, name: str, low: float, high: float, whole: bool = False,
             unit: str = "") -> float | int:
    """`value` as a number (an int with `whole`) in [low, high], else ValueError saying the
    range (e.g. "seed must be between 0 and 2147483647, got -5")."""
    out = whole_number(value, name) if whole else number(value, name)
    if not low <= out <= high:
        raise ValueError(f"{name} must be between {shown(low)} and {shown(high)}{unit}, "
                         f"got {shown(out)}")
    return out


def shown(x: float) -> str:
    """A bound or value as a message shows it: 2147483647 as itself (not 2.14748e+09), 0.05 as
    0.05."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed people typed: a whole number in [0, MAX_SEED]."""
    return in_range(seed, name, 0, MAX_SEED, whole=True)
