"""What a Train-tab run looks like now, read from its folder: its `RunSnapshot` (state, log,
checkpoint), its loss curves, and the sample grid of its latest checkpoint.

A run this process trains also has a live job (`playground.app.jobs.Job`), whose state wins over
what the folder says; a run nobody trains (e.g. after a restart) gets its state from the files.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from playground.app import train_settings
from playground.app.run_folders import (
    APP_MARKER,
    TRAIN_STATE_JSON,
    file_stamp,
    read_json_or_none,
    run_folder,
)
from playground.store import checkpoints


# =========================================================================== snapshots
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


def read_snapshot(folder: Path, job: Any = None) -> RunSnapshot:
    """The run in `folder` (an existing `run_folder`) now; `job` is the `Job` of its latest
    session when this process ran one (its live state and budget win over the files)."""
    from playground.training import read_log  # here: importing playground.training pulls in torch

    train_state = read_json_or_none(folder / TRAIN_STATE_JSON)
    metrics = read_json_or_none(folder / checkpoints.METRICS_FILE)
    marker = read_json_or_none(folder / APP_MARKER)
    args = (train_state or {}).get("args", {})
    budget = args.get("minutes")
    sessions = (marker or {}).get("sessions") or [{}]
    device = sessions[-1].get("device") or args.get("device", "")
    if job is not None:
        state, error = job.state, job.error
        budget, device = job.config.minutes, job.device_label
    else:
        state, error = state_on_disk(train_state, metrics), ""
    return RunSnapshot(folder.name, state, error, read_log(folder), train_state, metrics, marker,
                       file_stamp(folder / checkpoints.WEIGHTS_FILE), budget, device)


def state_on_disk(train_state: dict | None, metrics: dict | None) -> str:
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


# =========================================================================== curves, samples
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


# run folder → ((weights stamp, samples, sample seed), cells): one grid per checkpoint
_samples_cache: dict[str, tuple[tuple, np.ndarray]] = {}
_samples_lock = threading.Lock()


def sample_cells(name: str, settings: train_settings.JobSettings | None = None
                 ) -> np.ndarray | None:
    """From the run's latest checkpoint: validation faces, their reconstructions and decoded
    random z → uint8 (3, S, 64, 64, 3) (S = settings.samples); None before the first checkpoint.

    Rows: the first S SynthFaces validation faces (never trained on), dec(μ(x)) of each, and
    dec(z) for S fixed draws z ~ N(0, I) (the same z after every epoch). Cached per checkpoint.
    """
    from playground.pipelines import vae as ops

    settings = settings or train_settings.SETTINGS
    folder = run_folder(name)
    stamp = file_stamp(folder / checkpoints.WEIGHTS_FILE)
    config = read_json_or_none(folder / checkpoints.CONFIG_FILE)
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

