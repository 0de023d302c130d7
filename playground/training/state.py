"""Checkpoints with exact resume: model, optimizer and JSON state in one safetensors file
(never pickle; optimizer tensors under flat keys)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from playground.store.files import atomic_write_json, read_safetensors, save_safetensors
from playground.training.runs import TRAIN_STATE_JSON, TRAIN_STATE_TENSORS

STATE_FORMAT = 1  # bump when the train_state layout changes


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into flat-named tensors and a JSON-able rest.

    Tensors are named ``optimizer.state.<param index>.<name>`` (e.g. ``exp_avg``) and
    ``optimizer.param_groups.<group>.<key>``; everything else goes into the returned dict.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"state": {}, "param_groups": []}
    for pid, pstate in sd["state"].items():
        rest = {}
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{pid}.{key}"] = value
            else:
                rest[key] = value
        meta["state"][str(pid)] = rest
    for gi, group in enumerate(sd["param_groups"]):
        rest = {}
        for key, value in group.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.param_groups.{gi}.{key}"] = value
            else:
                rest[key] = list(value) if isinstance(value, tuple) else value
        meta["param_groups"].append(rest)
    return tensors, meta


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        meta: dict) -> None:
    """Inverse of `optimizer_to_flat`: load the saved state into `optimizer`."""
    state: dict[int, dict[str, Any]] = {int(pid): dict(rest) for pid, rest in meta["state"].items()}
    groups = [dict(g) for g in meta["param_groups"]]
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"saved optimizer has {len(groups)} parameter groups, "
                         f"this one {len(optimizer.param_groups)}")
    for name, value in tensors.items():
        parts = name.split(".")
        if parts[:2] == ["optimizer", "state"] and len(parts) == 4:
            state.setdefault(int(parts[2]), {})[parts[3]] = value
        elif parts[:2] == ["optimizer", "param_groups"] and len(parts) == 4:
            groups[int(parts[2])][parts[3]] = value
        else:
            raise ValueError(f"unexpected optimizer tensor {name!r} in the train state")
    for group, current in zip(groups, optimizer.param_groups):
        for key, value in group.items():  # JSON turned tuples (Adam's betas) into lists
            if isinstance(current.get(key), tuple) and isinstance(value, list):
                group[key] = tuple(value)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_train_state(folder: str | os.PathLike, model: nn.Module,
                     optimizer: torch.optim.Optimizer, state: dict[str, Any],
                     extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write everything needed to resume: ``train_state.safetensors`` then ``train_state.json``.

    The safetensors file holds the model (``model.*``) and optimizer (``optimizer.*``) tensors
    and, in its metadata, the JSON `state` (epoch, step, elapsed, args ...) plus the
    optimizer's non-tensor parts, so that one atomic file is one consistent checkpoint.
    `extra` tensors (e.g. EMA weights) are stored as ``extra.<name>`` (see `load_train_extra`).
    train_state.json repeats the JSON part for people and UIs.
    """
    folder = Path(folder)
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(opt_tensors)
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    full = {"format": STATE_FORMAT, **state, "optimizer": opt_meta}
    text = json.dumps(full, allow_nan=False)
    save_safetensors(folder / TRAIN_STATE_TENSORS, tensors, metadata={"train_state": text})
    atomic_write_json(folder / TRAIN_STATE_JSON, full)


def load_train_state(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor],
                                                         dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by `save_train_state`.

    Returns:
        (model state dict, optimizer tensors, JSON state) — apply the optimizer part with
        `optimizer_from_flat(optimizer, tensors, state["optimizer"])`.
    """
    path = Path(folder) / TRAIN_STATE_TENSORS
    tensors, metadata = read_safetensors(path)
    if "train_state" not in metadata:
        raise ValueError(f"{path} has no train_state metadata: not a training checkpoint")
    try:
        state = json.loads(metadata["train_state"])
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt train_state metadata in {path}: {e}") from None
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} has train-state format {state.get('format')}, "
                         f"this version reads format {STATE_FORMAT}")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    return model_state, opt_tensors, state


def load_train_extra(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The `extra` tensors of a checkpoint written by `save_train_state` (names without the
    ``extra.`` prefix; {} if it has none)."""
    tensors, _ = read_safetensors(Path(folder) / TRAIN_STATE_TENSORS)
    return {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
