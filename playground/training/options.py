"""Options every trainer config shares, their checks and command line, and the learning-rate
schedule and autocast they select."""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from playground.store.files import read_json
from playground.training import speed
from playground.training.runs import TRAIN_STATE_JSON
from playground.training.warm_start import init_architecture


@dataclass
class StartAndSpeed:
    """Options every trainer config inherits: how a run starts and how fast it steps."""

    init: str | None = None  # warm start: weights of a saved model (name or folder) of the same architecture
    warmup_steps: int = 200  # after --init: linear lr warm-up over this many steps (fresh Adam moments)
    amp: str = "auto"  # bf16 autocast: "auto" (timed at the start of the run), "none" (fp32) or "bf16"
    layout: str = "auto"  # activations "channels_last" or "contiguous"; "auto" = timed at the start
    compile: bool = False  # torch.compile the model (minutes of compiling first; see the training bench)
    probe_minutes: float = 5.0  # log the model's quality probe (playground.evaluation.quality) this often; 0 = never
    # the kind of model the trainer builds, and the fields a warm start takes from the model it
    # loads unless given (its architecture: `warm_start.init_architecture`)
    MODEL_KIND: ClassVar[str | None] = None
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ()


# Generic over a trainer's config dataclass (fields such as seed, batch_size, lr, out, ...).
AMP_MODES = speed.AMP_CHOICES
LR_SCHEDULES = ("cosine", "constant")
OPTIONAL_COUNTS = ("epochs", "max_steps", "train_size", "eval_size", "test_size", "threads")


def check_run_options(cfg, *, counts: tuple[str, ...] = ("batch_size", "log_every"),
                      choices: dict[str, tuple] | None = None) -> None:
    """Validate the options every trainer config shares (ValueError with the option's name).

    `counts` must be ≥ 1; the optional counts (`OPTIONAL_COUNTS`) ≥ 1 when set; minutes > 0
    when set; lr > 0; weight_decay ≥ 0, lr_min_ratio in [0, 1], amp and lr_schedule among
    their modes where the config has them; each of `choices` (field → allowed values) too.
    """
    for name in counts:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in OPTIONAL_COUNTS:
        value = getattr(cfg, name, None)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if cfg.minutes is not None and cfg.minutes <= 0:
        raise ValueError(f"minutes must be > 0, got {cfg.minutes}")
    if cfg.lr <= 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if getattr(cfg, "weight_decay", 0.0) < 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    if hasattr(cfg, "lr_min_ratio") and not 0 <= cfg.lr_min_ratio <= 1:
        raise ValueError(f"lr_min_ratio must be in [0, 1], got {cfg.lr_min_ratio}")
    if getattr(cfg, "warmup_steps", 1) < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {cfg.warmup_steps}")
    allowed_by_name = {"amp": AMP_MODES, "layout": speed.LAYOUT_CHOICES,
                       "lr_schedule": LR_SCHEDULES, **(choices or {})}
    for name, allowed in allowed_by_name.items():
        if hasattr(cfg, name) and getattr(cfg, name) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, "
                             f"got {getattr(cfg, name)!r}")



def check_resume_args(cfg, saved: dict[str, Any], fixed: tuple[str, ...]) -> None:
    """Refuse to resume when a setting in `fixed` differs from the checkpoint's."""
    current = dataclasses.asdict(cfg)
    diffs = []
    for key in fixed:
        if key not in saved:
            continue
        old = tuple(saved[key]) if isinstance(saved[key], list) else saved[key]
        if old != current[key]:
            diffs.append(f"{key}: checkpoint {old!r}, now {current[key]!r}")
    if diffs:
        raise ValueError("cannot resume with different settings (" + "; ".join(diffs) +
                         "); leave them out to keep the checkpoint's values, or use a new --out")


def config_from_args(config_cls, args: argparse.Namespace):
    """Options given on the command line, over the checkpoint's args when resuming, or over
    the architecture of the model a fresh run warm-starts from (`init_architecture`)."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    given = {k: v for k, v in vars(args).items() if k in known}
    cfg = config_cls(**given)
    state_file = cfg.out_dir() / TRAIN_STATE_JSON
    if getattr(args, "resume", False) and state_file.is_file():
        # a checkpoint from before a field existed trained as its LEGACY_ARGS value says
        saved = {**getattr(config_cls, "LEGACY_ARGS", {}),
                 **read_json(state_file).get("args", {})}
        saved = {k: v for k, v in saved.items() if k in known}
        cfg = config_cls(**{**saved, **given, "out": str(cfg.out_dir())})
    elif cfg.init:
        adopted = init_architecture(config_cls, cfg.init, given)
        changed = {k: v for k, v in adopted.items() if getattr(cfg, k) != v}
        if changed:
            print(f"built as {cfg.init} is: " +
                  ", ".join(f"{k}={_shown(v)}" for k, v in changed.items()), flush=True)
            cfg = config_cls(**{**given, **adopted})
    return cfg


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def json_args(cfg) -> dict[str, Any]:
    """The config as JSON-able args (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_common_arguments(p: argparse.ArgumentParser, d, out_help: str, *,
                         eval_help: str = "the per-epoch validation", test_size: bool = True) -> None:
    """Options every trainer shares: budget, batch, optimiser, device, data sizes, logging
    (`d` is the config with the defaults to show). Without `test_size` there is no
    --test-size (the β-VAE measures on the validation split)."""
    S = argparse.SUPPRESS
    p.add_argument("--data-root", dest="data_root", default=S,
                   help="CelebA: the folder that contains celeba/ (required); SynthFaces: its cache folder")
    p.add_argument("--epochs", type=int, default=S,
                   help="total epochs (default 10 unless --minutes or --max-steps is given)")
    p.add_argument("--minutes", type=float, default=S,
                   help="training-time budget in minutes, summed over resumed sessions")
    p.add_argument("--max-steps", dest="max_steps", type=int, default=S,
                   help="stop after this many optimizer steps in total")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=S,
                   help=f"global batch size, split over DDP processes (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=S, help=f"Adam learning rate (default {d.lr:g})")
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES, default=S,
                   help=f"cosine decay over the budget, or constant (default {d.lr_schedule})")
    p.add_argument("--amp", choices=AMP_MODES, default=S,
                   help="bf16 autocast; auto times both on a few steps: bf16 is ~1.8x faster "
                        f"on CPUs with avx512_bf16 and ~14x slower on AVX2-only ones (default {d.amp})")
    p.add_argument("--layout", choices=speed.LAYOUT_CHOICES, default=S,
                   help=f"memory format of activations; auto times both (default {d.layout})")
    p.add_argument("--compile", action="store_true", default=S,
                   help="torch.compile the model (slow first steps; measure with the training bench)")
    p.add_argument("--probe-minutes", dest="probe_minutes", type=float, default=S,
                   help=f"log the quality probe this often, 0 = never (default {d.probe_minutes:g})")
    p.add_argument("--init", default=S,
                   help="warm start from a saved model's weights (e.g. trained/vae-beta4), with "
                        "a fresh optimizer, built with its architecture unless options say "
                        "otherwise; its steps and CPU-hours carry over into metrics.json")
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int, default=S,
                   help=f"lr warm-up steps after --init (default {d.warmup_steps})")
    p.add_argument("--device", default=S,
                   help="cpu, cuda, cuda:N, or auto = CUDA if available (default cpu)")
    p.add_argument("--seed", type=int, default=S, help=f"random seed (default {d.seed})")
    p.add_argument("--train-size", dest="train_size", type=int, default=S,
                   help="use only the first N training images")
    p.add_argument("--eval-size", dest="eval_size", type=int, default=S,
                   help=f"validation images for {eval_help} (default {d.eval_size})")
    if test_size:
        p.add_argument("--test-size", dest="test_size", type=int, default=S,
                       help="test images for metrics.json (default: the whole test split)")
    p.add_argument("--checkpoint-minutes", dest="checkpoint_minutes", type=float, default=S,
                   help=f"checkpoint at least this often (default {d.checkpoint_minutes:g})")
    p.add_argument("--log-every", dest="log_every", type=int, default=S,
                   help=f"train-loss line in log.jsonl every N steps (default {d.log_every})")
    p.add_argument("--num-workers", dest="num_workers", type=int, default=S,
                   help=f"DataLoader workers for file-based data (default {d.num_workers})")
    p.add_argument("--threads", type=int, default=S,
                   help="CPU threads (default: all cores; 1 keeps a busy machine responsive)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=S,
                   help="no progress bar")
    p.add_argument("--out", default=S, help=out_help)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")


def cosine_lr(base: float, progress: float, min_ratio: float) -> float:
    """Cosine decay from `base` (progress 0) to ``min_ratio · base`` (progress ≥ 1)."""
    p = min(max(progress, 0.0), 1.0)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def budget_progress(cfg, global_step: int, spe: int, elapsed: float, epochs: int | None) -> float:
    """How far along the run is, 0…1: the largest fraction of any limit it has (steps, epochs,
    minutes), so the schedule ends when the first limit is reached."""
    fractions = [0.0]
    if cfg.max_steps is not None:
        fractions.append(global_step / cfg.max_steps)
    if epochs is not None:
        fractions.append(global_step / (epochs * spe))
    if cfg.minutes is not None:
        fractions.append(elapsed / (cfg.minutes * 60))
    return max(fractions)


def autocast(device: torch.device, amp: str):
    """bf16 autocast context (a no-op for amp="none")."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")
