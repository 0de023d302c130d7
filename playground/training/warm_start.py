"""Training that continues across runs: warm starts from a saved model and the cumulative
counters (steps, images, CPU- and GPU-hours) that follow a model from run to run."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from playground.store.checkpoints import CONFIG_FILE, load_model, resolve_model_dir
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


def init_architecture(config_cls: type, init: str, given: dict[str, Any]) -> dict[str, Any]:
    """The architecture the saved model `init` was built with, for a run that warm-starts
    from it: each of ``config_cls.ARCHITECTURE`` (trainer config fields that share their name
    with the model's config.json) that `given` leaves out. Then ``--init autoencoder`` alone
    rebuilds the shipped autoencoder, its latent channels and extra decoder blocks included;
    an option given wins (``--decoder-extra-blocks 2`` grows a deeper decoder from it). A
    model of another kind contributes nothing (`warm_start` then says why it does not fit)."""
    fields = getattr(config_cls, "ARCHITECTURE", ())
    saved = read_json(resolve_model_dir(init) / CONFIG_FILE) if fields else {}
    if saved.get("kind") != getattr(config_cls, "MODEL_KIND", None):
        return {}
    return {name: tuple(value) if isinstance(value, list) else value
            for name in fields if name not in given and (value := saved.get(name)) is not None}


def widened(ours: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor | None:
    """`theirs` (out, n) as a weight of shape `ours` (out, n + m): its n input columns first,
    zeros for the m new inputs, so the layer computes what it did on the old inputs and
    ignores the new ones until training teaches it to read them. None if it does not fit."""
    if (ours.dim() != 2 or theirs.dim() != 2 or ours.shape[0] != theirs.shape[0]
            or ours.shape[1] <= theirs.shape[1]):
        return None
    out = torch.zeros_like(ours)
    out[:, :theirs.shape[1]] = theirs.to(ours.dtype)
    return out


def warm_start(model: nn.Module, init: str, verbose: bool = True) -> dict[str, float]:
    """Load the weights of the saved model `init` (a name in trained/ or runs/, or a folder)
    into `model`, which must have the same architecture, except that the weights the model
    lists in ``widenable_inputs`` (name suffixes) may take more inputs (`widened`), and weights
    under its ``new_at_warm_start`` prefixes may be missing from `init` (they keep the values
    the model was built with, which must make them a no-op). Returns
    the cumulative training counters of `init`, which the new run adds to its own."""
    from playground.store.checkpoints import METRICS_FILE

    folder = resolve_model_dir(init)
    source = load_model(folder)
    ours, theirs = model.state_dict(), source.state_dict()
    suffixes = tuple(getattr(model, "widenable_inputs", ()))
    fresh = tuple(getattr(model, "new_at_warm_start", ()))
    loaded, widened_names = {}, []
    # modules the model adds to an older architecture, built to start as a no-op: kept as built
    added = sorted(name for name in ours.keys() - theirs.keys() if fresh and name.startswith(fresh))
    loaded.update({name: ours[name] for name in added})
    for name in ours.keys() & theirs.keys():
        if ours[name].shape == theirs[name].shape:
            loaded[name] = theirs[name].to(ours[name].dtype)
        elif name.endswith(suffixes) and suffixes:
            wide = widened(ours[name], theirs[name])
            if wide is not None:
                loaded[name] = wide
                widened_names.append(name)
    mismatched = sorted((ours.keys() | theirs.keys()) - loaded.keys())
    if mismatched:
        raise ValueError(f"--init {init}: its weights do not fit this model's architecture "
                         f"({len(mismatched)} tensors differ, e.g. {mismatched[0]}); train with "
                         f"the architecture in {folder / 'config.json'}, or start from scratch")
    model.load_state_dict(loaded)
    if added and verbose:
        print(f"{len(added)} weights are new to {folder.name} and start as a no-op, e.g. "
              f"{added[0]}", flush=True)
    if widened_names and verbose:
        print(f"{len(widened_names)} weights take new inputs (zero columns: the model starts "
              f"out as {folder.name}), e.g. {sorted(widened_names)[0]}", flush=True)
    metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else {}
    prior = cumulative_of_model(metrics)
    if verbose:
        print(f"warm start from {folder} ({prior.get('steps', 0):,} steps, "
              f"{prior.get('cpu_hours', 0):.2f} CPU-hours, "
              f"{prior.get('gpu_hours', 0):.2f} GPU-hours so far)", flush=True)
    return prior
