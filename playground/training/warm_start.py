"""Training that continues across runs: warm starts from a saved model and the cumulative
counters (steps, images, CPU- and GPU-hours) that follow a model from run to run."""
from __future__ import annotations

from typing import Any

from torch import nn

from playground.store.checkpoints import load_model, resolve_model_dir
from playground.store.files import read_json

CUMULATIVE_KEYS = ("steps", "images", "cpu_hours", "gpu_hours", "stretches")


def cumulative_of_run(metrics: dict[str, Any]) -> dict[str, float]:
    """What one run folder's training cost: steps, images and core-hours (CPU threads ×
    processes × seconds) or GPU-hours. Runs from before threads were recorded ran one thread
    per process (as every shipped recipe did)."""
    steps = int(metrics.get("steps", 0))
    world = int(metrics.get("world_size", 1))
    seconds = float(metrics.get("train_seconds", 0.0))
    on_gpu = str(metrics.get("device", "cpu")).startswith("cuda")
    cores = 1 if on_gpu else int(metrics.get("threads", 1))
    hours = seconds * world * cores / 3600
    return {"steps": steps, "images": steps * int(metrics.get("batch_size", 0)),
            "cpu_hours": 0.0 if on_gpu else hours, "gpu_hours": hours if on_gpu else 0.0,
            "stretches": 1}


def cumulative_of_model(metrics: dict[str, Any]) -> dict[str, float]:
    """A saved model's cumulative training (its ``cumulative`` entry, else its own run's)."""
    if isinstance(metrics.get("cumulative"), dict):
        return {k: metrics["cumulative"].get(k, 0) for k in CUMULATIVE_KEYS}
    return cumulative_of_run(metrics) if metrics.get("steps") else {}


def add_cumulative(prior: dict[str, float], run: dict[str, float]) -> dict[str, float]:
    """Counters of a warm-started chain: what came before plus this run."""
    return {k: round(prior.get(k, 0) + run.get(k, 0), 6) for k in CUMULATIVE_KEYS}


def warm_start(model: nn.Module, init: str, verbose: bool = True) -> dict[str, float]:
    """Load the weights of the saved model `init` (a name in trained/ or runs/, or a folder)
    into `model`, which must have the same architecture. Returns the cumulative training
    counters of `init`, which the new run adds to its own."""
    from playground.store.checkpoints import METRICS_FILE

    folder = resolve_model_dir(init)
    source = load_model(folder)
    ours, theirs = model.state_dict(), source.state_dict()
    mismatched = sorted(k for k in ours.keys() | theirs.keys()
                        if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape)
    if mismatched:
        raise ValueError(f"--init {init}: its weights do not fit this model's architecture "
                         f"({len(mismatched)} tensors differ, e.g. {mismatched[0]}); train with "
                         f"the architecture in {folder / 'config.json'}, or start from scratch")
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in theirs.items()})
    metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else {}
    prior = cumulative_of_model(metrics)
    if verbose:
        print(f"warm start from {folder} ({prior.get('steps', 0):,} steps, "
              f"{prior.get('cpu_hours', 0):.2f} CPU-hours, "
              f"{prior.get('gpu_hours', 0):.2f} GPU-hours so far)", flush=True)
    return prior
