"""Short β-VAE training runs started from the app: one at a time, each in a background thread.

    jobs = TrainJobs()
    name = jobs.start(TrainRequest(name="my-vae", beta=4, minutes=3))   # returns at once
    for snap in jobs.follow(name):      # a RunSnapshot whenever the log / checkpoint changes
        print(snap.state, snap.records[-1:])
    jobs.cancel(name)                   # graceful: stops after this step, with a checkpoint
    jobs.resume(name, minutes=2)        # continues from the checkpoint for 2 more minutes

The training itself is `playground.training.trainers.vae.train_vae` (the same code as
``python -m playground.train vae``), so a run folder ``runs/<name>/`` written here is an ordinary
run: `playground.load(name)` and the other tabs' model lists (after ↻) open it. This module
starts, stops and tracks the threads: one run at a time (a second `start` while one trains is
refused; the app's queue makes callers wait instead).

Around it: what a request may be and this machine's policy, `playground.app.train_settings`;
run names and folders (the ``app_run.json`` marker that keeps Resume off command-line runs),
`playground.app.run_folders`; what a run looks like now (snapshot, curves, sample grid),
`playground.app.run_status`.
"""
from __future__ import annotations

import atexit
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from playground.app import train_settings
from playground.app.run_folders import (
    APP_MARKER,
    TRAIN_STATE_JSON,
    check_name,
    free_name,
    is_app_run,
    make_run_folder,
    read_json_or_none,
    require_run,
    run_folder,
)
from playground.app.run_status import RunSnapshot, read_snapshot
from playground.app.train_settings import (
    JobSettings,
    Policy,
    TrainRequest,
    check_minutes,
    check_request,
)
from playground.store import files


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


class TrainJobs:
    """The app's training runs: at most one trains at a time (see the module docstring)."""

    def __init__(self, settings: JobSettings | None = None):
        self._settings = settings
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._jobs: dict[str, Job] = {}  # the latest session of every run this process ran
        self._stops_at_exit = False  # `_stop_at_exit` registered with atexit (at the first run)

    @property
    def settings(self) -> JobSettings:
        return self._settings or train_settings.SETTINGS

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
        policy = policy or train_settings.training_policy(settings=self.settings)
        if not policy.enabled:
            raise ValueError(policy.note)
        request = check_request(request, policy)
        self._wait_for_stopping()
        with self._lock:
            self._refuse_if_busy()
            name = request.name or free_name(request.beta)
            folder = make_run_folder(name, policy.max_runs)
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
        policy = policy or train_settings.training_policy(settings=self.settings)
        if not policy.enabled:
            raise ValueError(policy.note)
        folder = run_folder(name)
        name = folder.name
        minutes = check_minutes(minutes, policy)
        require_run(folder)
        if not is_app_run(folder):
            raise ValueError(f"run {name!r} was not started in the Train tab, so the app leaves "
                             "it alone; continue it on the command line with `python -m "
                             f"playground.train vae --out {folder} --resume`")
        job = self.current()
        if job is not None and not job.stop_event.is_set():
            self._refuse_if_busy()  # e.g. this very run, still training
        state = read_json_or_none(folder / TRAIN_STATE_JSON)
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
            marker = read_json_or_none(folder / APP_MARKER) or {"sessions": []}
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

    def _stop_at_exit(self, timeout: float = 60.0) -> None:
        """On the way out of the process (atexit): ask the run in progress to stop after its step
        and wait for its checkpoint. Left alone, its daemon thread would still be inside torch
        while the interpreter tears down, which aborts the process (C++ ``terminate``) and loses
        the steps since the last checkpoint."""
        job = self.current()
        if job is not None:
            job.stop_event.set()
            self.wait(timeout)

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
        require_run(folder)
        return read_snapshot(folder, self._jobs.get(folder.name))

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
        files.atomic_write_json(folder / APP_MARKER, marker)
        job = Job(name, folder, cfg, resume, policy.device_label)
        job.thread = threading.Thread(target=self._train, args=(job,), daemon=True,
                                      name=f"train-{name}")
        self._current = job
        self._jobs[name] = job
        if not self._stops_at_exit:
            atexit.register(self._stop_at_exit)
            self._stops_at_exit = True
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


JOBS = TrainJobs()  # the app's one manager
