"""Save and load trained models: ``<folder>/{config.json, model.safetensors, metrics.json}``.

Where models live:
    trained/   models shipped with the repo (``$PLAYGROUND_TRAINED`` overrides)
    runs/      your own training runs      (``$PLAYGROUND_RUNS`` overrides)
A bare name such as ``"vae-beta4"`` is looked up in trained/ first, then runs/. Names must
match ``^[A-Za-z0-9][A-Za-z0-9._-]*$`` so a user-chosen name can never escape those folders.

The files are written atomically and read without unpickling (`playground.store.files`); the
``"kind"`` in config.json says which model family rebuilds them (`playground.store.model_kinds`).
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from playground.store.files import atomic_write_json, read_json, read_safetensors, save_safetensors
from playground.store.model_kinds import config_from_dict, config_to_dict, get_kind, kind_of

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_LENGTH = 100  # characters; longer names are refused (file systems stop at 255 bytes)


class ModelNotFoundError(FileNotFoundError, ValueError):
    """No model of that name (a FileNotFoundError, and a ValueError so the UI shows it)."""


# --------------------------------------------------------------------------- folders
def repo_root() -> Path:
    """The repository root: the folder that holds the ``playground`` package."""
    return Path(__file__).resolve().parents[2]


def trained_dir() -> Path:
    """Folder of shipped models (``$PLAYGROUND_TRAINED`` or ``<repo>/trained``)."""
    return Path(os.environ.get("PLAYGROUND_TRAINED") or repo_root() / "trained")


def runs_dir() -> Path:
    """Folder of training runs (``$PLAYGROUND_RUNS`` or ``<repo>/runs``)."""
    return Path(os.environ.get("PLAYGROUND_RUNS") or repo_root() / "runs")


def is_valid_name(name: object) -> bool:
    """True for a safe bare model name (letters, digits, ``.``, ``_``, ``-``; no ``..``; at
    most `MAX_NAME_LENGTH` characters)."""
    return (isinstance(name, str) and len(name) <= MAX_NAME_LENGTH
            and bool(NAME_PATTERN.match(name)) and ".." not in name)


# --------------------------------------------------------------------------- save / load
def save_model(out_dir: str | os.PathLike, model: nn.Module, config: Any = None,
               metrics: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` and (if given) ``metrics.json`` to `out_dir`.

    Args:
        out_dir: model folder (created if needed).
        model: the module (unwrap DistributedDataParallel first: pass ``ddp.module``).
        config: its config dataclass (default: ``model.config``).
        metrics: JSON-able dict; when None an existing metrics.json is left as it is.
        dtype: store floating-point weights in this dtype (e.g. ``torch.float16`` to halve the
            size of a shipped model); they are loaded back as float32.
    Returns:
        the folder.

    A model with a ``compact_state_dict()`` is saved through it (e.g. the CLIP keeps only the
    embedding rows of its known tokens); `load_model` then calls its ``expand_state_dict``.
    """
    out_dir = Path(out_dir)
    config = config if config is not None else getattr(model, "config", None)
    if config is None:
        raise ValueError("save_model needs the model's config (pass config=...)")
    config_dict = config_to_dict(config)
    tensors = {}
    compact = getattr(model, "compact_state_dict", None)  # a model may store some weights sparsely
    for name, t in (compact() if callable(compact) else model.state_dict()).items():
        t = t.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t
    save_safetensors(out_dir / WEIGHTS_FILE, tensors, metadata={"kind": config_dict["kind"]})
    atomic_write_json(out_dir / CONFIG_FILE, config_dict)
    if metrics is not None:
        atomic_write_json(out_dir / METRICS_FILE, metrics)
    return out_dir


def resolve_model_dir(name_or_path: str | os.PathLike, *, allow_paths: bool = True) -> Path:
    """Find a model folder from a bare name (trained/ then runs/) or an explicit folder path.

    Args:
        name_or_path: ``"vae-beta4"`` style name, or a path to an existing folder holding
            config.json (a ``pathlib.Path``, or a string with a ``/``).
        allow_paths: False for user input (e.g. from the UI): only bare names are accepted.
    Raises:
        ValueError: an unsafe or malformed name, or a path that is not a model folder.
        ModelNotFoundError: a valid name that is in neither folder.
    """
    if isinstance(name_or_path, str) and is_valid_name(name_or_path):
        for root in (trained_dir(), runs_dir()):
            candidate = root / name_or_path
            if (candidate / CONFIG_FILE).is_file():
                real, real_root = candidate.resolve(), root.resolve()
                if not real.is_relative_to(real_root):  # e.g. a symlink pointing elsewhere
                    raise ValueError(f"model {name_or_path!r} resolves outside {root}")
                return real
        available = ", ".join(m["name"] for m in list_models()) or "none"
        raise ModelNotFoundError(f"no model named {name_or_path!r} in {trained_dir()} or "
                                 f"{runs_dir()} (available: {available})")
    if not allow_paths or not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(f"invalid model name {name_or_path!r}: use letters, digits, '.', '_' "
                         "and '-' only, starting with a letter or digit (no '..', no '/')")
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ValueError(f"{str(name_or_path)!r} is neither a model name (letters, digits, "
                         "'.', '_', '-') nor an existing model folder")
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(f"{path} is not a model folder (it has no {CONFIG_FILE})")
    return path.resolve()


def load_config(name_or_path: str | os.PathLike, *, allow_paths: bool = True) -> Any:
    """The config dataclass of a saved model (weights are not read)."""
    folder = resolve_model_dir(name_or_path, allow_paths=allow_paths)
    return config_from_dict(read_json(folder / CONFIG_FILE))


def load_metrics(name_or_path: str | os.PathLike, *, allow_paths: bool = True) -> dict:
    """metrics.json of a saved model ({} if it has none yet, e.g. a run still training)."""
    folder = resolve_model_dir(name_or_path, allow_paths=allow_paths)
    path = folder / METRICS_FILE
    return read_json(path) if path.is_file() else {}


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", *,
               allow_paths: bool = True) -> nn.Module:
    """Rebuild a saved model in eval mode on `device` (float32 weights).

    Args:
        name_or_path: see `resolve_model_dir`.
        device: where to put it (default CPU).
        allow_paths: False to accept only bare names (for names typed or picked in the UI).
    Returns:
        the model, with ``model.checkpoint_dir`` set to its folder.
    """
    folder = resolve_model_dir(name_or_path, allow_paths=allow_paths)
    config = config_from_dict(read_json(folder / CONFIG_FILE))
    entry = get_kind(kind_of(config))
    model = entry.build(config)
    tensors, _ = read_safetensors(folder / WEIGHTS_FILE)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        if hasattr(model, "expand_state_dict"):  # the inverse of its compact_state_dict
            state = model.expand_state_dict(state)
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"weights in {folder / WEIGHTS_FILE} do not fit the {entry.kind} "
                         f"model described by its config.json:\n{e}") from None
    model.checkpoint_dir = folder
    return model.to(device).eval()


def model_problem(folder: str | os.PathLike) -> str | None:
    """Why the model folder cannot be loaded, from a cheap look at its files; None if it looks
    whole. Checks that config.json is JSON with a ``kind`` and that model.safetensors exists
    and is exactly as long as its header says (a copy that stopped early is caught without
    reading the weights). Used to mark broken models unavailable instead of failing later."""
    folder = Path(folder)
    try:
        config = read_json(folder / CONFIG_FILE)
    except (FileNotFoundError, ValueError, OSError) as e:
        return f"unreadable {CONFIG_FILE} ({e})".replace(str(folder) + os.sep, "")
    if not isinstance(config, dict) or not isinstance(config.get("kind"), str):
        return f"{CONFIG_FILE} has no \"kind\""
    weights = folder / WEIGHTS_FILE
    try:
        size = weights.stat().st_size
        with open(weights, "rb") as f:
            head = f.read(8)
            (header_len,) = struct.unpack("<Q", head)
            if 8 + header_len > size:
                return f"{WEIGHTS_FILE} is truncated (its header is cut)"
            header = json.loads(f.read(header_len))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except FileNotFoundError:
        return f"no {WEIGHTS_FILE}"
    except (OSError, struct.error, ValueError, TypeError, KeyError, IndexError,
            AttributeError) as e:
        return f"{WEIGHTS_FILE} is not a safetensors file ({type(e).__name__})"
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        return f"{WEIGHTS_FILE} is truncated ({size:,} of {expected:,} bytes)"
    if size > expected:
        return f"{WEIGHTS_FILE} has {size - expected:,} unexpected trailing bytes"
    return None


def list_models(kind: str | None = None) -> list[dict[str, str]]:
    """Models that `load_model` can open by name, trained/ first, then runs/.

    A run that has not written its first checkpoint yet, a folder with an invalid name, or a
    run shadowed by a trained model of the same name is not listed.

    Returns:
        ``[{"name", "kind", "source" ("trained" | "runs"), "path"}]``, sorted by name per source.
    """
    found: list[dict[str, str]] = []
    seen: set[str] = set()
    for source, root in (("trained", trained_dir()), ("runs", runs_dir())):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            name = folder.name
            if name in seen or not is_valid_name(name) or not folder.is_dir():
                continue
            if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
                continue
            try:
                model_kind = read_json(folder / CONFIG_FILE).get("kind")
            except (ValueError, OSError, AttributeError):
                continue
            if not isinstance(model_kind, str) or (kind is not None and model_kind != kind):
                continue
            seen.add(name)
            found.append({"name": name, "kind": model_kind, "source": source, "path": str(folder)})
    return found
