"""Short β-VAE training runs started from the app: one at a time, in a background thread.

    jobs = TrainJobs()
    name = jobs.start(TrainRequest(name="my-vae", beta=4, minutes=3))   # returns at once
    for snap in jobs.follow(name):      # a RunSnapshot whenever the log / checkpoint changes
        print(snap.state, snap.records[-1:])
    jobs.cancel(name)                   # graceful: stops after this step, with a checkpoint
    jobs.resume(name, minutes=2)        # continues from the checkpoint for 2 more minutes

The training itself is `playground.training.trainers.vae.train_vae` (the same code as
``python -m playground.train vae``), so a run folder ``runs/<name>/`` written here is an ordinary
run: `playground.load(name)` and the other tabs' model lists (after ↻) open it. This module adds
what a shared app needs around it:

- a `Policy` for this machine: the device (CUDA when ``torch.cuda.is_available()``, else the
  CPU, chosen explicitly and shown to the user), a cap on the minutes (10 on a CPU), and on a
  public Hugging Face Space without a GPU a tighter cap (``PLAYGROUND_TRAINING=off``: none);
- request checks with clear ``ValueError``s (names via `checkpoints.is_valid_name`; never a
  name of a shipped model in trained/, nor a folder the command-line trainers use);
- one run at a time (a second `start` while one trains is refused; the app's queue makes
  callers wait instead), and a marker file ``app_run.json`` so Resume only touches runs that
  were started here, never a command-line run;
- `sample_cells`: faces, their reconstructions and decoded random z from the latest checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from playground.pipelines.inputs import check_seed, in_range, number
from playground.store import checkpoints

APP_MARKER = "app_run.json"  # written into every run folder this module creates
TRAIN_STATE_JSON = "train_state.json"  # = playground.training.TRAIN_STATE_JSON (no torch import)
LOG_FILE = "log.jsonl"

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
# Names the command-line trainers write to by default (runs/<name>): the app never uses them.
RESERVED_NAMES = frozenset({"vae", "autoencoder", "judge", "clip", "ldm", "unet"})


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


def check_name(name: Any) -> str:
    """A valid run name, or ValueError saying what is allowed."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("run name is empty: type one, e.g. my-vae-beta4")
    name = name.strip()
    if len(name) > 64 or not checkpoints.is_valid_name(name):
        raise ValueError(f"invalid run name {name!r}: use up to 64 letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit (no '..', no '/')")
    return name


def free_name(beta: float) -> str:
    """``my-vae-beta<β>`` or the first ``my-vae-beta<β>-<k>`` that no folder uses yet."""
    base = f"my-vae-beta{beta:g}".replace("+", "")
    k = 1
    while True:
        name = base if k == 1 else f"{base}-{k}"
        if not (checkpoints.runs_dir() / name).exists() and not (
                checkpoints.trained_dir() / name).exists():
            return name
        k += 1


# =========================================================================== run folders
def run_folder(name: str) -> Path:
    return checkpoints.runs_dir() / check_name(name)


def is_app_run(folder: Path) -> bool:
    return (folder / APP_MARKER).is_file()


def app_runs() -> list[str]:
    """Names of the runs started from the app, newest first."""
    root = checkpoints.runs_dir()
    if not root.is_dir():
        return []
    found = [f for f in root.iterdir() if f.is_dir() and checkpoints.is_valid_name(f.name)
             and is_app_run(f)]
    found.sort(key=lambda f: (f / APP_MARKER).stat().st_mtime, reverse=True)
    return [f.name for f in found]


def _read_json(path: Path) -> dict | None:
    try:
        data = checkpoints.read_json(path)
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


# =========================================================================== jobs
@dataclass
class Job:
    """One training session of one run, in a thread."""

    name: str
    folder: Path
    config: Any  # the VAETrainConfig handed to train_vae
    resume: bool
    device_label: str  # where it trains, for people (Policy.device_label)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: str = ""  # the exception message when the session failed
    done: bool = False
    started: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        return not self.done

    @property
    def state(self) -> str:
        if not self.done:
            return "stopping" if self.stop_event.is_set() else "training"
        if self.error:
            return "failed"
        return "stopped" if self.stop_event.is_set() else "finished"


@dataclass
class RunSnapshot:
    """What a run looks like now (from its folder, and from the job if this process runs it)."""

    name: str
    state: str  # training | stopping | stopped | finished | failed | interrupted | new
    error: str  # the failure message (state "failed")
    records: list[dict]  # log.jsonl lines: {"type": "train" | "val", "step", "loss", "kl", ...}
    train_state: dict | None  # train_state.json: epoch, global_step, elapsed_seconds, args
    metrics: dict | None  # metrics.json (written when a session ends)
    request: dict | None  # what app_run.json recorded (the first request, and its sessions)
    weights: tuple[int, int] | None  # (mtime_ns, size) of model.safetensors: changes per checkpoint
    budget_minutes: float | None  # the run's total budget (summed over sessions)
    device: str  # where the latest session trains / trained

    @property
    def active(self) -> bool:
        return self.state in ("training", "stopping")

    @property
    def resumable(self) -> bool:
        return not self.active and self.train_state is not None and self.request is not None

    @property
    def elapsed_seconds(self) -> float:
        return float((self.train_state or {}).get("elapsed_seconds", 0.0))

    @property
    def step(self) -> int:
        return int((self.train_state or {}).get("global_step", 0))

    def key(self) -> tuple:
        """Changes whenever something worth showing changed."""
        return (self.state, len(self.records), self.weights, self.step,
                self.metrics is not None)


class TrainJobs:
    """The app's training runs: at most one trains at a time (see the module docstring)."""

    def __init__(self, settings: JobSettings | None = None):
        self._settings = settings
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._jobs: dict[str, Job] = {}  # the latest session of every run this process ran

    @property
    def settings(self) -> JobSettings:
        return self._settings or SETTINGS

    # ------------------------------------------------------------------ control
    def current(self) -> Job | None:
        """The job training or stopping now (None when idle)."""
        job = self._current
        return job if job is not None and job.alive else None

    def start(self, request: TrainRequest, policy: Policy | None = None) -> str:
        """Start a new run (returns its name at once; the run trains in a thread).

        Raises ValueError: training disabled, bad numbers or name, a name in use, another run
        still training, or too many runs kept.
        """
        policy = policy or training_policy(settings=self.settings)
        if not policy.enabled:
            raise ValueError(policy.note)
        request = check_request(request, policy)
        self._wait_for_stopping()
        with self._lock:
            self._refuse_if_busy()
            name = request.name or free_name(request.beta)
            folder = self._new_folder(name, policy)
            request = dataclasses.replace(request, name=name)
            settings = self.settings
            cfg = self._config(
                dict(beta=request.beta, minutes=request.minutes, train_size=request.train_size,
                     batch_size=request.batch_size, seed=request.seed, lr=settings.lr,
                     latent_dim=settings.latent_dim, channels=tuple(settings.channels)),
                folder, policy, max_steps=settings.max_steps)
            marker = {"created_by": "playground app, Train tab", "created": time.time(),
                      "request": dataclasses.asdict(request), "sessions": []}
            return self._launch(name, folder, cfg, marker, policy, request.minutes, resume=False)

    def resume(self, name: str, minutes: Any, policy: Policy | None = None) -> str:
        """Continue a stopped (or finished) app run from its checkpoint for `minutes` more.

        Raises ValueError: unknown name, a run not started in the app, no checkpoint yet,
        the run (or another) still training, bad minutes.
        """
        policy = policy or training_policy(settings=self.settings)
        if not policy.enabled:
            raise ValueError(policy.note)
        folder = run_folder(name)
        name = folder.name
        minutes = check_minutes(minutes, policy)
        if not folder.is_dir():
            raise ValueError(f"there is no run named {name!r} in {checkpoints.runs_dir()}; "
                             f"runs started here: {', '.join(app_runs()) or 'none yet'}")
        if not is_app_run(folder):
            raise ValueError(f"run {name!r} was not started in the Train tab, so the app leaves "
                             "it alone; continue it on the command line with `python -m "
                             f"playground.train vae --out {folder} --resume`")
        job = self.current()
        if job is not None and not job.stop_event.is_set():
            self._refuse_if_busy()  # e.g. this very run, still training
        state = _read_json(folder / TRAIN_STATE_JSON)
        if state is None or "args" not in state:
            raise ValueError(f"run {name!r} has no checkpoint yet (it stopped before its first "
                             "one): start a new run instead")
        self._wait_for_stopping()
        with self._lock:
            self._refuse_if_busy()
            from playground.training.trainers.vae import VAETrainConfig

            known = {f.name for f in dataclasses.fields(VAETrainConfig)}
            args = {k: v for k, v in state["args"].items() if k in known}
            kept = {k: args[k] for k in ("beta", "train_size", "batch_size", "seed", "lr",
                                          "latent_dim", "channels", "dataset") if k in args}
            elapsed = float(state.get("elapsed_seconds", 0.0))
            step = int(state.get("global_step", 0))
            max_steps = None if self.settings.max_steps is None else step + self.settings.max_steps
            cfg = self._config(kept, folder, policy, minutes=elapsed / 60 + minutes,
                               max_steps=max_steps)
            marker = _read_json(folder / APP_MARKER) or {"sessions": []}
            return self._launch(name, folder, cfg, marker, policy, minutes, resume=True)

    def cancel(self, name: str) -> str:
        """Ask the run `name` to stop after its current step (it then writes a checkpoint).

        Returns its state ("stopping"). Raises ValueError if `name` is not training now.
        """
        name = check_name(name)
        job = self.current()
        if job is None or job.name != name:
            busy = f" (training now: {job.name})" if job is not None else " (nothing is training)"
            raise ValueError(f"run {name!r} is not training, so there is nothing to cancel{busy}")
        job.stop_event.set()
        return job.state

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current job to end; True if none is left running."""
        job = self._current
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return self.current() is None

    # ------------------------------------------------------------------ reading
    def snapshot(self, name: str) -> RunSnapshot:
        """The run `name` now (ValueError for an invalid name or a run that does not exist)."""
        folder = run_folder(name)
        name = folder.name
        job = self._jobs.get(name)
        if not folder.is_dir():
            raise ValueError(f"there is no run named {name!r} in {checkpoints.runs_dir()}; "
                             f"runs started here: {', '.join(app_runs()) or 'none yet'}")
        from playground.training import read_log

        train_state = _read_json(folder / TRAIN_STATE_JSON)
        metrics = _read_json(folder / checkpoints.METRICS_FILE)
        marker = _read_json(folder / APP_MARKER)
        args = (train_state or {}).get("args", {})
        budget = args.get("minutes")
        sessions = (marker or {}).get("sessions") or [{}]
        device = sessions[-1].get("device") or args.get("device", "")
        if job is not None:
            state, error = job.state, job.error
            budget, device = job.config.minutes, job.device_label
        else:
            state, error = _state_on_disk(train_state, metrics), ""
        return RunSnapshot(name, state, error, read_log(folder), train_state, metrics, marker,
                           _stamp(folder / checkpoints.WEIGHTS_FILE), budget, device)

    def follow(self, name: str, poll_seconds: float | None = None) -> Iterator[RunSnapshot]:
        """Snapshots of `name`: one now, then one whenever it changes, until it stops training.

        Closing the iterator early (a viewer who left) asks a training run to stop, with a
        checkpoint, so that it never trains unwatched and the queue slot is not held by nobody.
        """
        poll = self.settings.poll_seconds if poll_seconds is None else poll_seconds
        snap = self.snapshot(name)
        last = snap.key()
        finished = False
        try:
            yield snap
            while snap.active:
                time.sleep(poll)
                snap = self.snapshot(name)
                if snap.key() != last:
                    last = snap.key()
                    yield snap
            finished = True
        finally:
            job = self.current()
            if not finished and job is not None and job.name == name:
                job.stop_event.set()

    # ------------------------------------------------------------------ internals
    def _refuse_if_busy(self) -> None:
        job = self.current()
        if job is not None:
            raise ValueError(f"run {job.name!r} is {job.state} now and only one run trains at a "
                             "time: wait for it (or cancel it), then try again")

    def _wait_for_stopping(self) -> None:
        """A run asked to stop needs a moment for its checkpoint: wait for it, not refuse."""
        job = self.current()
        if job is not None and job.stop_event.is_set() and job.thread is not None:
            job.thread.join(self.settings.wait_seconds)

    def _new_folder(self, name: str, policy: Policy) -> Path:
        check_name(name)
        if name in RESERVED_NAMES:
            raise ValueError(f"run name {name!r} is reserved for the command-line trainers: "
                             "choose another")
        if (checkpoints.trained_dir() / name).exists():
            raise ValueError(f"{name!r} is the name of a shipped model in trained/: choose "
                             "another name (runs never overwrite trained/)")
        folder = checkpoints.runs_dir() / name
        if folder.exists():
            empty_app_run = (is_app_run(folder) and not (folder / TRAIN_STATE_JSON).exists()
                             and not (folder / checkpoints.WEIGHTS_FILE).exists())
            if not empty_app_run:
                hint = "press Resume to continue it, or " if is_app_run(folder) else ""
                raise ValueError(f"a run named {name!r} exists already: {hint}choose another "
                                 "name")
            (folder / LOG_FILE).unlink(missing_ok=True)  # a start that failed before any step
        if policy.max_runs is not None and len(app_runs()) >= policy.max_runs:
            raise ValueError(f"this server keeps at most {policy.max_runs} runs and has them "
                             "all: resume one of them instead")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _config(self, kept: dict, folder: Path, policy: Policy, *, max_steps: int | None,
                minutes: float | None = None):
        from playground.training.trainers.vae import VAETrainConfig

        settings = self.settings
        values = dict(kept)
        if minutes is not None:
            values["minutes"] = minutes
        values.update(dataset="synthfaces", epochs=None, max_steps=max_steps,
                      device=policy.device, out=str(folder), progress=False,
                      eval_size=settings.eval_size, log_every=settings.log_every,
                      checkpoint_minutes=settings.checkpoint_minutes,
                      threads=settings.cpu_threads if policy.device == "cpu" else None)
        return VAETrainConfig(**values)

    def _launch(self, name, folder, cfg, marker, policy, minutes, *, resume: bool) -> str:
        marker.setdefault("sessions", []).append(
            {"started": time.time(), "device": policy.device_label, "minutes": minutes,
             "resume": resume})
        checkpoints.atomic_write_json(folder / APP_MARKER, marker)
        job = Job(name, folder, cfg, resume, policy.device_label)
        job.thread = threading.Thread(target=self._train, args=(job,), daemon=True,
                                      name=f"train-{name}")
        self._current = job
        self._jobs[name] = job
        job.thread.start()
        return name

    @staticmethod
    def _train(job: Job) -> None:
        from playground.training.trainers.vae import train_vae

        try:
            train_vae(job.config, resume=job.resume, stop_event=job.stop_event)
        except Exception as err:  # shown in the tab; the last checkpoint is still there
            job.error = f"{type(err).__name__}: {err}"
        finally:
            job.done = True


def _state_on_disk(train_state: dict | None, metrics: dict | None) -> str:
    """The state of a run no thread of this process is training (e.g. after a restart)."""
    if train_state is None:
        return "new"  # created, but stopped before its first checkpoint
    if metrics is None:
        return "interrupted"  # the process ended mid-session: resume from the last checkpoint
    args = train_state.get("args", {})
    budget = args.get("minutes")
    if budget is not None and float(train_state.get("elapsed_seconds", 0)) >= budget * 60:
        return "finished"
    max_steps = args.get("max_steps")
    if max_steps is not None and int(train_state.get("global_step", 0)) >= max_steps:
        return "finished"
    return "stopped"


# =========================================================================== pictures
_samples_cache: dict[str, tuple[tuple, np.ndarray]] = {}
_samples_lock = threading.Lock()


def sample_cells(name: str, settings: JobSettings | None = None) -> np.ndarray | None:
    """From the run's latest checkpoint: validation faces, their reconstructions and decoded
    random z → uint8 (3, S, 64, 64, 3) (S = settings.samples); None before the first checkpoint.

    Rows: the first S SynthFaces validation faces (never trained on), dec(μ(x)) of each, and
    dec(z) for S fixed draws z ~ N(0, I) (the same z after every epoch). Cached per checkpoint.
    """
    from playground.pipelines import vae as ops

    settings = settings or SETTINGS
    folder = run_folder(name)
    stamp = _stamp(folder / checkpoints.WEIGHTS_FILE)
    config = _read_json(folder / checkpoints.CONFIG_FILE)
    if stamp is None or config is None or config.get("kind") != "vae":
        return None  # no checkpoint yet, or not a β-VAE (e.g. a command-line autoencoder run)
    key = (stamp, settings.samples, settings.sample_seed)
    with _samples_lock:
        hit = _samples_cache.get(str(folder))
        if hit is not None and hit[0] == key:
            return hit[1]
    model = checkpoints.load_model(folder)  # CPU: the trainer keeps the GPU
    faces = ops.reference_images(max(2, settings.samples))[:settings.samples]
    cells = np.stack([faces, ops.reconstruct(model, faces),
                      ops.sample(model, settings.samples, settings.sample_seed)])
    with _samples_lock:
        _samples_cache[str(folder)] = (key, cells)
    return cells


def curve_series(records: list[dict]) -> dict[str, dict[str, list[float]]]:
    """log.jsonl records → {"train": {"step": [...], "loss": [...], "recon": [...], "kl": [...]},
    "val": {...}} (per image, nats), in step order."""
    series: dict[str, dict[str, list[float]]] = {
        kind: {"step": [], "epoch": [], "loss": [], "recon": [], "kl": []}
        for kind in ("train", "val")}
    for record in sorted(records, key=lambda r: (r.get("step", 0), r.get("type") == "val")):
        kind = record.get("type")
        if kind not in series or not all(k in record for k in ("loss", "recon", "kl")):
            continue
        for key in series[kind]:
            series[kind][key].append(float(record.get(key, 0.0)))
    return series


JOBS = TrainJobs()  # the app's one manager
