"""What a Train-tab run may be: the user's request, the settings the app fixes for every run,
this machine's `Policy` (device and caps), and the checks of a request against it.

- a `Policy` for this machine: the device (CUDA when ``torch.cuda.is_available()``, else the
  CPU, chosen explicitly and shown to the user), a cap on the minutes (10 on a CPU), and on a
  public Hugging Face Space without a GPU a tighter cap (``PLAYGROUND_TRAINING=off``: none);
- request checks with clear ``ValueError``s (the run name via `run_folders.check_name`).

`SETTINGS` and `training_policy` are looked up here at call time (``train_settings.SETTINGS``),
so a test that replaces them here changes every run, status and sample grid.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from playground.app.run_folders import check_name
from playground.pipelines.inputs import check_seed, in_range, number

CPU_MAX_MINUTES = 10.0  # a CPU run is a demo: at ~100 faces/s, ~60k faces (one pass of the data)
GPU_MAX_MINUTES = 30.0  # a GPU trains ~50x faster; 30 min approaches the shipped models
SPACE_MAX_MINUTES = 2.0  # a public CPU Space is shared by every visitor: keep runs short
SPACE_MAX_TRAIN_SIZE = 5_000  # faces rendered on the fly (the 60k split would take ~1 min to build)
SPACE_MAX_RUNS = 10  # app runs kept on a Space's small disk (~50 MB each with the optimizer state)
MAX_TRAIN_SIZE = 60_000  # the whole SynthFaces train split
MIN_TRAIN_SIZE = 16  # at least a couple of batches
MIN_MINUTES = 0.05  # 3 s: enough for a few steps
MAX_BETA = 100.0  # far past where every latent dimension collapses to the prior
BATCH_RANGE = (4, 512)  # faces per optimizer step


# =========================================================================== settings
@dataclass
class TrainRequest:
    """What a user asks for (the Train tab's widgets)."""

    name: str = ""  # run folder name under runs/ ("" = a free name like my-vae-beta4)
    beta: float = 4.0  # KL weight β: 1 = plain VAE, larger = fewer, cleaner latent dimensions
    minutes: float = 3.0  # training-time budget (data setup and checkpoints not counted)
    train_size: int = 2_000  # first N faces of the SynthFaces train split
    batch_size: int = 64  # faces per optimizer step
    seed: int = 0  # initial weights, data order and ε noise


@dataclass
class JobSettings:
    """What the app fixes for every run (tests swap in a tiny model and a step limit)."""

    latent_dim: int = 128  # as the shipped vae-beta* models, so a run compares with them
    channels: tuple[int, ...] = (32, 64, 128, 256)  # as the shipped models (~3 M parameters)
    lr: float = 1e-3  # Adam, as the command-line default
    eval_size: int = 256  # validation faces for the per-epoch val loss and metrics.json
    log_every: int = 5  # a point on the loss curve every 5 steps (~3 s on a CPU)
    checkpoint_minutes: float = 1.0  # also checkpoint (and refresh the sample grid) every minute
    # torch threads of a CPU run: all cores but one, which stays free for the app's requests
    cpu_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1))
    max_steps: int | None = None  # optimizer steps per session (tests), None = only the minutes
    samples: int = 8  # faces per row of the sample grid
    sample_seed: int = 0  # the same random z after every epoch: watch them turn into faces
    poll_seconds: float = 1.0  # how often `follow` looks at the run folder
    wait_seconds: float = 120.0  # how long `start` waits for a stopping run to write its checkpoint


SETTINGS = JobSettings()  # the app's settings (a test may replace it)


@dataclass(frozen=True)
class Policy:
    """What training is allowed on this machine."""

    enabled: bool  # False: the Train tab explains why and starts nothing
    device: str  # "cuda" or "cpu", decided here from torch.cuda.is_available()
    device_label: str  # for people: "cuda (NVIDIA H100 …)", "cpu (1 training thread of 2 cores)"
    max_minutes: float  # cap on a session's minutes
    max_train_size: int  # cap on the training faces
    max_runs: int | None  # cap on app runs kept (None = no cap)
    note: str  # Markdown: why training is capped or disabled ("" when it is neither)


def training_policy(env: dict[str, str] | None = None, cuda: bool | None = None,
                    settings: JobSettings | None = None) -> Policy:
    """The policy for this process (`env` and `cuda` override ``os.environ`` and
    ``torch.cuda.is_available()``, for tests)."""
    env = os.environ if env is None else env
    settings = settings or SETTINGS
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "GPU"
        device, label, minutes = "cuda", f"cuda ({name})", GPU_MAX_MINUTES
    else:
        cores = os.cpu_count() or 1
        device, minutes = "cpu", CPU_MAX_MINUTES
        label = (f"cpu ({settings.cpu_threads} training thread{'s' * (settings.cpu_threads > 1)}"
                 f" of {cores} core{'s' * (cores > 1)})")
    if str(env.get("PLAYGROUND_TRAINING", "")).lower() in ("off", "0", "no", "false"):
        return Policy(False, device, label, minutes, MAX_TRAIN_SIZE, None,
                      "Training is switched off on this server (`PLAYGROUND_TRAINING=off`). "
                      "Run the app on your own machine to train: `python app.py`.")
    if env.get("SPACE_ID") and not cuda:
        return Policy(True, device, label, SPACE_MAX_MINUTES, SPACE_MAX_TRAIN_SIZE,
                      SPACE_MAX_RUNS,
                      f"This is a public Hugging Face Space without a GPU, shared by every "
                      f"visitor, so runs are capped at **{SPACE_MAX_MINUTES:g} minutes** and "
                      f"{SPACE_MAX_TRAIN_SIZE} faces ({SPACE_MAX_RUNS} runs kept). For longer "
                      "runs, clone the repo and run `python app.py` (or duplicate the Space "
                      "onto GPU hardware).")
    return Policy(True, device, label, minutes, MAX_TRAIN_SIZE, None, "")


# =========================================================================== checks
def check_minutes(minutes: Any, policy: Policy) -> float:
    """A session's minutes as a float in [MIN_MINUTES, policy.max_minutes]."""
    minutes = number(minutes, "minutes")
    if not MIN_MINUTES <= minutes <= policy.max_minutes:
        raise ValueError(f"minutes must be between {MIN_MINUTES:g} and {policy.max_minutes:g} "
                         f"on this machine ({policy.device}), got {minutes:g}")
    return minutes


def check_request(request: TrainRequest, policy: Policy) -> TrainRequest:
    """A checked copy of `request` (numbers as int/float); ValueError naming the bad field."""
    beta = in_range(request.beta, "β", 0.0, MAX_BETA)
    minutes = check_minutes(request.minutes, policy)
    train_size = in_range(request.train_size, "train size", MIN_TRAIN_SIZE,
                          policy.max_train_size, whole=True, unit=" faces")
    batch_size = in_range(request.batch_size, "batch size", *BATCH_RANGE, whole=True)
    if batch_size > train_size:
        raise ValueError(f"batch size ({batch_size}) must not exceed the train size "
                         f"({train_size} faces)")
    seed = check_seed(request.seed)
    name = "" if request.name is None else str(request.name).strip()
    if name:
        check_name(name)
    return TrainRequest(name, beta, minutes, train_size, batch_size, seed)

