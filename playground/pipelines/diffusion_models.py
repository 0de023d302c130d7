"""Which diffusion models the app can open, and the loaded ones it keeps (no UI here): the
U-Net pipelines (`get_pipeline`, cached and reloaded when any of their weights files changes)
and the attribute judge that scores their faces (`get_judge`).

    list_pipelines()                   # ["ldm", ...]: trained/ first, then runs/
    pipe = get_pipeline("ldm")         # the same object until a weights file changes
    judge = get_judge()                # None when trained/judge does not exist
"""
from __future__ import annotations

from torch import nn

from playground.pipelines import compiled_unet
from playground.pipelines.diffusion_inputs import EXAMPLE_PROMPT
from playground.pipelines.inference import inference
from playground.pipelines.latent_diffusion import (
    DEFAULT_PIPELINE,
    LatentDiffusion,
    component_dirs,
    load_pipeline,
)
from playground.store import checkpoints
from playground.store.model_cache import StampedCache, weights_stamp

JUDGE_MODEL = "judge"  # the shipped judge's name (trained/judge)
CACHE_SIZE = 2  # pipelines kept loaded
# the U-Net inputs of the tabs' first settings, compiled at start when compiling is on:
# (faces, guidance w, prompt): Denoise (4 faces, w = 1, unconditional), Prompt (4 faces, w = 7.5)
FIRST_RUNS = ((4, 1.0, ""), (4, 7.5, EXAMPLE_PROMPT))

_pipelines = StampedCache(CACHE_SIZE)  # U-Net name → LatentDiffusion (reloaded on new weights)
_judges = StampedCache(2)  # judge name → Judge


def get_pipeline(name: str | None = DEFAULT_PIPELINE) -> LatentDiffusion:
    """The pipeline of U-Net `name` (a bare name, as typed in the UI), from a small cache that
    reloads it when any of its three weights files changes (a run writing a checkpoint).

    Raises:
        ValueError: no name, an unsafe or unknown name (with `no_pipeline_hint` when there is
            no diffusion model at all), or a missing component.
    """
    if not name:
        raise ValueError(no_pipeline_hint() if not list_pipelines() else
                         f"no diffusion model chosen: pick one of {', '.join(list_pipelines())}")
    if not isinstance(name, str) or not checkpoints.is_valid_name(name):
        raise ValueError(f"invalid model name {name!r}: use a name from the list "
                         f"({', '.join(list_pipelines()) or 'none available'})")
    if not list_pipelines() and name == DEFAULT_PIPELINE:
        raise ValueError(no_pipeline_hint())
    dirs = component_dirs(name, allow_paths=False)
    stamp = tuple(weights_stamp(dirs[k]) for k in sorted(dirs))
    return _pipelines.get(name, stamp, lambda: load_pipeline(name, allow_paths=False))


def preload() -> list[str]:
    """Load the default pipeline and the judge into the caches (a broken or missing one is
    skipped: its tab says so when used) → the names loaded."""
    loaded = []
    for name in list_pipelines()[:1]:  # the default one; others load on demand
        try:
            pipe = get_pipeline(name)
            loaded.append(name)
        except (ValueError, OSError, RuntimeError):
            continue
        if compiled_unet.mode_from_env() != "off":
            queue_first_compiles(pipe)
    if get_judge() is not None:
        loaded.append(JUDGE_MODEL)
    return loaded


def queue_first_compiles(pipe: LatentDiffusion) -> None:
    """One sampling step at each of `FIRST_RUNS` (eager, milliseconds), so that their U-Net
    shapes compile in the background before a student asks (`compiled_unet`)."""
    with inference():
        for faces, guidance, prompt in FIRST_RUNS:
            pipe.sample([prompt] * faces, guidance=guidance, steps=1, seed=0)


def clear_cache() -> None:
    """Forget every loaded pipeline and judge (tests; after deleting a run)."""
    _pipelines.clear()
    _judges.clear()


def list_pipelines() -> list[str]:
    """Names of the diffusion U-Nets `get_pipeline` can open (trained/ first, then runs/)."""
    return [m["name"] for m in checkpoints.list_models(kind="unet")]


def default_pipeline(names: list[str]) -> str | None:
    """"ldm" when it exists, else the first name, else None."""
    if DEFAULT_PIPELINE in names:
        return DEFAULT_PIPELINE
    return names[0] if names else None


def no_pipeline_hint() -> str:
    """What to say while there is no diffusion model: where the app looked, how to train one."""
    return (f"the latent diffusion model is not trained yet: no U-Net in "
            f"{checkpoints.trained_dir()} or {checkpoints.runs_dir()}. It appears as "
            f"trained/{DEFAULT_PIPELINE} when shipped; train one with `python -m playground.train "
            "ldm --minutes 60` (it needs the autoencoder and the CLIP first)")


def get_judge(name: str = JUDGE_MODEL) -> nn.Module | None:
    """The judge (cached, reloaded when its weights change), or None when it does not exist."""
    try:
        folder = checkpoints.resolve_model_dir(name, allow_paths=False)
        stamp = weights_stamp(folder)
    except ValueError:  # ModelNotFoundError is one
        return None

    def load():
        judge = checkpoints.load_model(folder)
        if not hasattr(judge, "predict_attributes"):
            raise ValueError(f"model {name!r} is not a judge")
        return judge.requires_grad_(False)

    return _judges.get(name, stamp, load)
