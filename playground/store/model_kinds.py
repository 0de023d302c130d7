"""The model kinds: which config dataclass and model class rebuild a saved model.

Each model family registers a *kind* (the ``"kind"`` key of config.json) with its config
dataclass and model class; `register_kind` adds one, `_BUILTIN_KINDS` lists the ones that are
imported on first use. `config_to_dict` / `config_from_dict` turn a config into the dict that
config.json holds and back.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn


@dataclass(frozen=True)
class ModelKind:
    """How to rebuild one family of models from its config.json."""

    kind: str  # value of "kind" in config.json, e.g. "vae"
    config_cls: type  # the @dataclass of the architecture
    build: Callable[[Any], nn.Module]  # config → untrained model (weights are loaded after)


_REGISTRY: dict[str, ModelKind] = {}
# kind → (module, config class, model class), imported on first use. Later model families add
# a line here (or call `register_kind` from their own module).
_BUILTIN_KINDS: dict[str, tuple[str, str, str]] = {
    "vae": ("playground.models.vae", "VAEConfig", "BetaVAE"),
    "autoencoder": ("playground.models.autoencoder", "AutoencoderConfig", "KLAutoencoder"),
    "judge": ("playground.models.judge", "JudgeConfig", "Judge"),
    "unet": ("playground.models.unet", "UNetConfig", "LatentUNet"),
    "clip": ("playground.models.clip", "CLIPConfig", "TextImageCLIP"),
}


def register_kind(kind: str, config_cls: type, build: Callable[[Any], nn.Module]) -> ModelKind:
    """Register a model family so `load_model` can rebuild it.

    Args:
        kind: the ``"kind"`` stored in config.json.
        config_cls: a dataclass; its fields are what config.json holds besides ``kind``.
        build: callable config → untrained nn.Module (often the model class itself).
    """
    if not dataclasses.is_dataclass(config_cls):
        raise ValueError(f"{config_cls!r} is not a dataclass")
    entry = ModelKind(kind, config_cls, build)
    _REGISTRY[kind] = entry
    return entry


def get_kind(kind: str) -> ModelKind:
    """The registered `ModelKind` for `kind` (importing a built-in family on first use)."""
    if kind not in _REGISTRY and kind in _BUILTIN_KINDS:
        module, config_name, model_name = _BUILTIN_KINDS[kind]
        mod = importlib.import_module(module)
        register_kind(kind, getattr(mod, config_name), getattr(mod, model_name))
    if kind not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(_BUILTIN_KINDS))
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {', '.join(known)}")
    return _REGISTRY[kind]


def kind_of(config: Any) -> str:
    """The kind of a config object: its ``kind`` class attribute or its registered class."""
    kind = getattr(type(config), "kind", None)
    if isinstance(kind, str):
        return kind
    for entry in _REGISTRY.values():
        if type(config) is entry.config_cls:
            return entry.kind
    raise ValueError(f"{type(config).__name__} has no `kind`; give the config class a "
                     "`kind: ClassVar[str]` or register it with register_kind")


def config_to_dict(config: Any) -> dict[str, Any]:
    """``{"kind": ..., **fields}`` for config.json."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"expected a dataclass config instance, got {type(config).__name__}")
    return {"kind": kind_of(config), **dataclasses.asdict(config)}


def config_from_dict(data: dict[str, Any]) -> Any:
    """Rebuild the config dataclass from a config.json dict (lists become tuples where typed so)."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError("config.json has no \"kind\" (which model family it is)")
    entry = get_kind(data["kind"])
    fields = {f.name: f for f in dataclasses.fields(entry.config_cls) if f.init}
    values = {k: v for k, v in data.items() if k != "kind"}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"config.json for kind {data['kind']!r} has unknown keys {unknown}; "
                         f"expected some of {sorted(fields)}")
    for name, value in values.items():
        if isinstance(value, list) and "tuple" in str(fields[name].type):
            values[name] = _to_tuple(value)
    try:
        return entry.config_cls(**values)
    except TypeError as e:
        raise ValueError(f"config.json does not fit {entry.config_cls.__name__}: {e}") from None


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list) else value
