"""Training machinery shared by every trainer (β-VAE now; autoencoder, CLIP, judge, LDM later).

- devices and DDP: `resolve_device`, `setup_distributed` (torchrun sets RANK / WORLD_SIZE)
- data: `open_dataset`, `image_source` (a fast path that indexes one uint8 tensor, or a
  DataLoader with workers for datasets that read files), `epoch_batches` (a seeded
  permutation per epoch, so a resumed run sees the same batches in the same order)
- the run folder: `RunFolder` (log.jsonl lines for live loss curves, checkpoints)
- checkpoints with exact resume: `save_train_state` / `load_train_state` (safetensors + JSON,
  never pickle; optimizer tensors under flat keys)
- time: `Stopwatch` (training time summed over resumed sessions), `Every` (periodic saves)
- config helpers generic over a trainer's config dataclass: `config_from_args`,
  `check_resume_args`, `json_args`, `add_common_arguments`, `open_on_all_ranks`; the
  learning-rate schedule `cosine_lr` / `budget_progress` and bf16 `autocast`
- the loop: `run_trainer` (threads, DDP, graceful stop) and `TrainLoop` (run setup / resume,
  the step loop with logging, checkpoints, time budget and stop requests, final save); each
  trainer gives it its model, its step (forward + loss) and its metrics

A run folder holds:
    config.json, model.safetensors     the model so far (`playground.load(<folder>)` opens it)
    train_state.safetensors            model + optimizer tensors, with the JSON state below
                                       embedded in its metadata (one file = one consistent state)
    train_state.json                   the same JSON state, readable: epoch, step, elapsed, args
    log.jsonl                          one JSON object per line: {"type": "train" | "val", ...}
    metrics.json                       written at the end
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from playground import speed
from playground.checkpoints import (atomic_write_bytes, atomic_write_json, load_model, read_json,
                                    read_safetensors, resolve_model_dir, save_model,
                                    save_safetensors)

TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"
LOG_FILE = "log.jsonl"
STATE_FORMAT = 1  # bump when the train_state layout changes
WARM_STEPS = 1  # steps of a session left out of its img/s (first allocations, compilation)


# =========================================================================== devices & DDP
def resolve_device(name: str | torch.device = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA if available, else CPU)."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here "
                         "(use --device cpu or --device auto)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}: use cpu, cuda, cuda:N or auto")
    return device


@dataclass
class DistInfo:
    """This process's place in a (possibly single-process) data-parallel job."""

    rank: int = 0  # global process index
    world_size: int = 1  # number of processes
    local_rank: int = 0  # index on this machine (picks the GPU)
    owns_group: bool = False  # we created the process group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes logs and checkpoints."""
        return self.rank == 0


def setup_distributed(device_name: str = "cpu") -> tuple[DistInfo, torch.device]:
    """Join the DDP job described by torchrun's env vars (RANK, WORLD_SIZE, LOCAL_RANK).

    Without them (a plain ``python -m ...``) this is a single process. The backend is NCCL on
    CUDA (one GPU per process, by LOCAL_RANK) and gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world <= 1:
        return DistInfo(), device
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world)
        owns = True
    return DistInfo(rank, world, local_rank, owns), device


def teardown_distributed(info: DistInfo) -> None:
    """Destroy the process group if `setup_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision (e.g. "time is up") for every rank, so all stop at the same step."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_float(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's number (e.g. a measured time) for every rank."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all ranks (in place; identity in a single process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# =========================================================================== data
def open_dataset(name: str, split: str, n: int | None = None, root: str | None = None):
    """A face dataset by name: ``"synthfaces"`` (generated, cached) or ``"celeba"`` (your copy).

    `root` is SynthFaces' cache folder (optional) or the CelebA folder (required).

    Both return items ``{"image": float32 (3, 64, 64) in [0, 1], "attributes": ..., "index"}``.
    """
    if name == "synthfaces":
        try:
            from playground.data.synthfaces import SynthFacesDataset
        except ImportError as e:
            raise RuntimeError("the SynthFaces dataset is not available in this checkout "
                               f"(playground.data.synthfaces.SynthFacesDataset): {e}") from None
        return SynthFacesDataset(split=split, n=n, root=root)
    if name == "celeba":
        try:
            from playground.data.celeba import CelebADataset
        except ImportError as e:
            raise RuntimeError("CelebA support (playground.data.celeba.CelebADataset) is not "
                               f"available in this checkout: {e}") from None
        if root is None:
            raise ValueError("CelebA needs --data-root: the folder that contains celeba/ "
                             "(see playground/data/celeba.py for the layout)")
        return CelebADataset(root, split=split, n=n)
    raise ValueError(f"unknown dataset {name!r}: use synthfaces or celeba")


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from a few integers (splitmix64 steps), e.g. (seed, epoch, step)."""
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for v in values:
        x = (x ^ (int(v) & mask)) & mask
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        x ^= x >> 31
    return x & ((1 << 63) - 1)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one pass: full batches only (a batch never exceeds the data)."""
    if n < 1:
        raise ValueError("the training set is empty")
    return n // min(batch_size, n)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The global batches of one epoch: a permutation of range(n) seeded by (seed, epoch).

    The leftover ``n % batch_size`` images are skipped this epoch (a different set each epoch).
    Returns:
        list of int64 index tensors of length min(batch_size, n).
    """
    g = torch.Generator().manual_seed(mix_seed(seed, epoch))
    perm = torch.randperm(n, generator=g)
    b = min(batch_size, n)
    return [perm[i * b:(i + 1) * b] for i in range(steps_per_epoch(n, batch_size))]


def shard(indices: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (all ranks' slices make up the batch)."""
    if not info.enabled:
        return indices
    return torch.tensor_split(indices, info.world_size)[info.rank]


class TensorImages:
    """All images in one uint8 tensor (N, 3, H, W); batches are gathered by index (fast path)."""

    def __init__(self, images_nhwc: np.ndarray | torch.Tensor, device: torch.device):
        images = torch.as_tensor(np.asarray(images_nhwc))
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.images = images.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8
        if device.type == "cuda":  # a few hundred MB at most: keep it on the GPU
            self.images = self.images.to(device)
        self.device = device

    def __len__(self) -> int:
        return self.images.shape[0]

    def iterate(self, index_batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Yield float batches (B, C, H, W) in [0, 1] on the device."""
        for idx in index_batches:
            batch = self.images[idx.to(self.images.device)]
            yield batch.to(self.device, non_blocking=True).float().div_(255)


class DatasetImages:
    """Batches from a map-style Dataset through a DataLoader with worker processes."""

    def __init__(self, dataset, device: torch.device, num_workers: int = 2):
        self.dataset, self.device, self.num_workers = dataset, device, num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def iterate(self, index_batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        from torch.utils.data import DataLoader

        sampler = [idx.tolist() for idx in index_batches]
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        for batch in loader:
            images = batch["image"] if isinstance(batch, dict) else batch
            if isinstance(images, (list, tuple)):
                images = images[0]
            yield images.to(self.device, non_blocking=True).float()


def image_source(dataset, device: torch.device, num_workers: int = 2):
    """`TensorImages` when the dataset exposes ``.images`` as uint8 (N, H, W, 3), else a loader."""
    images = getattr(dataset, "images", None)
    if (images is not None and getattr(images, "dtype", None) in (np.uint8, torch.uint8)
            and len(images) == len(dataset) and getattr(images, "ndim", 0) == 4):
        return TensorImages(images, device)
    return DatasetImages(dataset, device, num_workers)


# =========================================================================== run folder
class RunFolder:
    """The output folder of one run; only the main process writes to it."""

    def __init__(self, path: str | os.PathLike, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main
        if is_main:
            self.path.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def has_checkpoint(self) -> bool:
        return (self.path / TRAIN_STATE_TENSORS).is_file()

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to log.jsonl (flushed, so a UI tailing the file sees it now)."""
        if not self.is_main:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
            f.flush()

    def truncate_log(self, last_step: int) -> None:
        """Drop log lines after `last_step` (written after the checkpoint a run resumes from),
        and any torn last line, so a resumed run's curve has no duplicates."""
        if not self.is_main or not self.log_path.is_file():
            return
        kept = [r for r in read_log(self.path) if int(r.get("step", 0)) <= last_step]
        text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept)
        atomic_write_bytes(self.log_path, text.encode("utf-8"))

    def remove_stale_temp_files(self) -> None:
        """Delete ``.<name>.*.tmp`` files left by a process killed in the middle of a save."""
        if self.is_main:
            for tmp in self.path.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``<run_dir>/log.jsonl`` (a torn or corrupt line is skipped)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


# =========================================================================== train state
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


# =========================================================================== warm starts
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


def warm_start(model: nn.Module, init: str, verbose: bool = True) -> dict[str, float]:
    """Load the weights of the saved model `init` (a name in trained/ or runs/, or a folder)
    into `model`, which must have the same architecture. Returns the cumulative training
    counters of `init`, which the new run adds to its own."""
    from playground.checkpoints import METRICS_FILE

    folder = resolve_model_dir(init)
    source = load_model(folder)
    ours, theirs = model.state_dict(), source.state_dict()
    mismatched = sorted(k for k in ours.keys() | theirs.keys()
                        if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape)
    if mismatched:
        raise ValueError(f"--init {init}: its weights do not fit this model's architecture "
                         f"({len(mismatched)} tensors differ, e.g. {mismatched[0]}); train with "
                         f"the architecture in {folder / 'config.json'}, or start from scratch")
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in theirs.items()})
    metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else {}
    prior = cumulative_of_model(metrics)
    if verbose:
        print(f"warm start from {folder} ({prior.get('steps', 0):,} steps, "
              f"{prior.get('cpu_hours', 0):.2f} CPU-hours, "
              f"{prior.get('gpu_hours', 0):.2f} GPU-hours so far)", flush=True)
    return prior


# =========================================================================== time
class Stopwatch:
    """Training seconds, counting the time of earlier (resumed) sessions too."""

    def __init__(self, already: float = 0.0):
        self.already = float(already)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.already + time.perf_counter() - self.start


class Every:
    """True every `seconds` of wall time (e.g. periodic checkpoints); None/≤0 = never."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.last = time.perf_counter()

    def due(self) -> bool:
        return bool(self.seconds) and self.seconds > 0 and time.perf_counter() - self.last >= self.seconds

    def reset(self) -> None:
        self.last = time.perf_counter()


class GracefulStop:
    """Stop at the next step boundary on request, with a checkpoint instead of lost work.

    Inside ``with GracefulStop() as stop:``, the first SIGINT (Ctrl-C) or SIGTERM (a UI's
    cancel) sets ``stop.requested``; a second one acts as usual (aborts). `event` (a
    ``threading.Event``) is a second way to ask, for a run started in a thread. Signal
    handlers are only installed from the main thread, and restored on exit.
    """

    def __init__(self, event: Any = None):
        self.event = event
        self._requested = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self._requested or (self.event is not None and self.event.is_set())

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self._requested = True
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        print("\nstopping after this step with a checkpoint (signal again to abort)", flush=True)


def progress_bar(total: int, initial: int = 0, desc: str = "", enabled: bool = True):
    """A tqdm bar over the steps of one epoch (disabled on non-main ranks)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled,
                dynamic_ncols=True, mininterval=0.5, unit="step")


# =========================================================================== config helpers
@dataclass
class StartAndSpeed:
    """Options every trainer config inherits: how a run starts and how fast it steps."""

    init: str | None = None  # warm start: weights of a saved model (name or folder) of the same architecture
    warmup_steps: int = 200  # after --init: linear lr warm-up over this many steps (fresh Adam moments)
    amp: str = "auto"  # bf16 autocast: "auto" (timed at the start of the run), "none" (fp32) or "bf16"
    layout: str = "auto"  # activations "channels_last" or "contiguous"; "auto" = timed at the start
    compile: bool = False  # torch.compile the model (minutes of compiling first; see the training bench)
    probe_minutes: float = 5.0  # log the model's quality probe (playground.quality) this often; 0 = never


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


def open_on_all_ranks(info: DistInfo, name: str, split: str, n: int | None, root: str | None):
    """Open a dataset on rank 0 first (it may build a cache), then on the other ranks."""
    dataset = open_dataset(name, split, n, root) if info.is_main else None
    barrier(info)
    return dataset if info.is_main else open_dataset(name, split, n, root)


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
    """Options given on the command line, over the checkpoint's args when resuming."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    given = {k: v for k, v in vars(args).items() if k in known}
    cfg = config_cls(**given)
    if getattr(args, "resume", False):
        state_file = cfg.out_dir() / TRAIN_STATE_JSON
        if state_file.is_file():
            saved = dict(read_json(state_file).get("args", {}))
            saved = {k: v for k, v in saved.items() if k in known}
            cfg = config_cls(**{**saved, **given, "out": str(cfg.out_dir())})
    return cfg


def json_args(cfg) -> dict[str, Any]:
    """The config as JSON-able args (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_common_arguments(p: argparse.ArgumentParser, d, out_help: str, *,
                         eval_help: str = "the per-epoch validation",
                         schedule_and_amp: bool = True, test_size: bool = True) -> None:
    """Options every trainer shares: budget, batch, optimiser, device, data sizes, logging
    (`d` is the config with the defaults to show). Without `schedule_and_amp` there is no
    --lr-schedule / --amp, without `test_size` no --test-size (the β-VAE has neither)."""
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
    if schedule_and_amp:
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
                        "a fresh optimizer; its steps and CPU-hours carry over into metrics.json")
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


# =========================================================================== schedule & amp
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


# =========================================================================== the training loop
def run_trainer(cfg, stop_event, train: Callable[[DistInfo, torch.device, GracefulStop], Any]):
    """Set threads, join DDP, catch SIGINT/SIGTERM, call ``train(info, device, stop)``, leave DDP."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    info, device = setup_distributed(cfg.device)
    try:
        with GracefulStop(stop_event) as stop:
            return train(info, device, stop)
    finally:
        teardown_distributed(info)


class TrainLoop:
    """What every trainer shares, around its own model, step and metrics.

    Use in this order: ``TrainLoop(...)`` (checks the run folder), `open_data` (optional),
    `set_data` (batch size,
    steps per epoch, epoch budget), `setup_model` (seeded model + optimizer, resume, DDP),
    `run` (the epochs: seeded batches, cosine lr if ``cfg.lr_schedule == "cosine"``,
    optimizer steps, log.jsonl, periodic / mid-epoch / per-epoch checkpoints, time budget,
    graceful stop) and `finish` (metrics.json on rank 0). The config needs the fields
    seed, batch_size, lr, epochs, minutes, max_steps, train_size, checkpoint_minutes,
    log_every, progress and ``out_dir()``.
    """

    def __init__(self, cfg, info: DistInfo, device: torch.device, stop: GracefulStop,
                 resume: bool, rng_scheme: str = "order and noise seeded by (seed, epoch, step)"):
        self.cfg, self.info, self.device, self.stop, self.resume = cfg, info, device, stop, resume
        self.rng_scheme = rng_scheme
        self.out = RunFolder(cfg.out_dir(), is_main=info.is_main)
        self.has_checkpoint = self.out.has_checkpoint()
        barrier(info)  # every rank has looked before rank 0 writes anything
        if self.has_checkpoint and not resume:
            raise ValueError(f"{self.out.path} already holds a checkpoint: pass --resume to "
                             "continue it, or choose another --out")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.before_save_model: Callable[[], None] | None = None  # e.g. measure a scale factor
        # Optional hooks (e.g. EMA weights): called after every optimizer step; extra tensors
        # to keep in the train state (read back into `resumed_extra` by `setup_model`); the
        # module that model.safetensors holds (default: the trained model itself).
        self.after_step: Callable[[], None] | None = None
        self.extra_state: Callable[[], dict[str, torch.Tensor]] | None = None
        self.model_to_save: Callable[[], nn.Module] | None = None
        self.resumed_extra: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- data
    def open_data(self, train_set, val_set, dataset: str):
        """The given train / val sets, or else `dataset`'s splits (first ``cfg.train_size`` /
        ``cfg.eval_size`` images), with their image sources on the device.
        Returns (train_set, val_set, train_source, val_source)."""
        cfg, info = self.cfg, self.info
        if train_set is None:
            train_set = open_on_all_ranks(info, dataset, "train", cfg.train_size, cfg.data_root)
        if val_set is None:
            val_set = open_on_all_ranks(info, dataset, "val", cfg.eval_size, cfg.data_root)
        return (train_set, val_set, image_source(train_set, self.device, cfg.num_workers),
                image_source(val_set, self.device, cfg.num_workers))

    def set_data(self, n: int, default_epochs: int) -> None:
        """`n` training images; `default_epochs` when no epochs / minutes / max_steps is set."""
        cfg = self.cfg
        if cfg.train_size is not None and n > cfg.train_size:
            raise ValueError(f"the training set has {n} images, more than train_size={cfg.train_size}")
        self.n = n
        self.spe = steps_per_epoch(n, cfg.batch_size)
        self.batch = min(cfg.batch_size, n)
        if self.batch < self.info.world_size:
            raise ValueError(f"batch of {self.batch} images cannot be split over "
                             f"{self.info.world_size} processes")
        self.epochs = cfg.epochs if cfg.epochs is not None else (
            None if cfg.minutes is not None or cfg.max_steps is not None else default_epochs)

    # ---------------------------------------------------------------- model, optimizer, state
    def setup_model(self, build: Callable[[], tuple[nn.Module, torch.optim.Optimizer]],
                    fixed_on_resume: tuple[str, ...]) -> tuple[nn.Module, nn.Module]:
        """``build()`` (after ``torch.manual_seed(cfg.seed)``) gives (model, optimizer); on
        resume their state comes from the checkpoint. Returns (model, net): `net` is the DDP
        wrapper to call in training steps (the model itself in a single process)."""
        cfg, info, out = self.cfg, self.info, self.out
        torch.manual_seed(cfg.seed)
        self.model, self.optimizer = build()
        self.epoch, self.start_step, self.global_step, elapsed = 0, 0, 0, 0.0
        self.prior: dict[str, float] = {}  # cumulative counters of the models this run began from
        self.saved_speed: dict[str, Any] | None = None
        if self.resume and self.has_checkpoint:
            model_state, opt_tensors, state = load_train_state(out.path)
            check_resume_args(cfg, state.get("args", {}), fixed_on_resume)
            self.model.load_state_dict(model_state)
            optimizer_from_flat(self.optimizer, opt_tensors, state["optimizer"])
            self.resumed_extra = load_train_extra(out.path)
            self.epoch, self.start_step = state["epoch"], state["step_in_epoch"]
            self.global_step, elapsed = state["global_step"], state["elapsed_seconds"]
            self.prior = dict(state.get("prior", {}))
            self.saved_speed = state.get("speed")
            if state.get("steps_per_epoch") not in (None, self.spe):
                raise ValueError(f"the checkpoint has {state['steps_per_epoch']} steps per epoch, "
                                 f"this data {self.spe}: was the dataset changed?")
            out.truncate_log(self.global_step)
            out.remove_stale_temp_files()
            if info.is_main:
                print(f"resuming {out.path} at epoch {self.epoch + 1}, step {self.global_step}")
        else:
            if self.resume and info.is_main:
                print(f"nothing to resume in {out.path}: starting a new run")
            if getattr(cfg, "init", None):
                self.prior = warm_start(self.model, cfg.init, verbose=info.is_main)
        barrier(info)  # all ranks have read the checkpoint before it is overwritten
        # `net` is what training steps call: the model, wrapped for DDP once `run` has chosen
        # the speed options (the layout must be set before DDP registers the parameters).
        self.net = self.model
        self.amp, self.channels_last, self.speed_note = "none", False, ""
        self.stopwatch = Stopwatch(elapsed)
        self.saver = Every(cfg.checkpoint_minutes * 60 if cfg.checkpoint_minutes else None)
        self.args_json = json_args(cfg)
        self.step_times: list[float] = []  # seconds of each optimizer step of this session
        return self.model

    def choose_speed(self, source, step: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Settle bf16 autocast (``self.amp``) and channels_last for this run, then wrap DDP.

        ``auto`` options are timed on real forward + backward passes of `step` on the first
        batch (`playground.speed.choose`; rank 0's times decide for every rank). A resumed run
        keeps the options it was checkpointed with when the machine is the same kind, so
        that it replays the same arithmetic. The RNG state is restored after the probe.
        """
        cfg, info, model = self.cfg, self.info, self.model
        amp, layout = getattr(cfg, "amp", "none"), getattr(cfg, "layout", "contiguous")
        machine = speed.machine_summary(self.device)
        key = {k: machine[k] for k in ("device", "cpu_capability", "bf16_native")}
        saved = self.saved_speed
        if saved is not None and saved.get("machine") == key and saved.get("asked") == [amp, layout]:
            choice = speed.SpeedChoice(saved["amp"], saved["channels_last"])
            note = f"speed options: {choice.label} (kept from the checkpoint, same machine kind)"
        else:
            idx = shard(epoch_batches(self.n, cfg.batch_size, cfg.seed, 0)[0], info)
            x = next(iter(source.iterate([idx])))
            rng = torch.random.get_rng_state()

            def run_step(amp_mode: str, channels_last: bool) -> None:
                self._set_speed(amp_mode, channels_last)
                model.train()
                loss, _ = step(self._layout(x), idx, 0, 0)
                loss.backward()
                model.zero_grad(set_to_none=True)

            choice = speed.choose(run_step, amp, layout, self.device,
                                  agree=lambda s: broadcast_float(s, info, self.device))
            torch.random.set_rng_state(rng)
            note = choice.describe()
        self._set_speed(choice.amp, choice.channels_last)
        self.speed_state = {"amp": choice.amp, "channels_last": choice.channels_last,
                            "asked": [amp, layout], "machine": key}
        self.speed_note = note
        if info.is_main:
            print(f"{note} [{machine['cpu_capability']}, {machine['bf16_reason']}]", flush=True)
            self.out.log({"type": "speed", "step": self.global_step, "amp": choice.amp,
                          "channels_last": choice.channels_last, "seconds": choice.seconds,
                          "skipped": choice.skipped, **machine})
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device = self.device
            self.net = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if getattr(cfg, "compile", False):
            self.net = torch.compile(self.net)

    def _set_speed(self, amp: str, channels_last: bool) -> None:
        self.amp, self.channels_last = amp, channels_last
        self.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the chosen memory format (4-D tensors only)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def checkpoint(self, epoch: int, step_in_epoch: int) -> None:
        """Train state + a loadable model (rank 0 writes; the other ranks return)."""
        if not self.info.is_main:
            return
        state = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": self.global_step,
                 "steps_per_epoch": self.spe, "elapsed_seconds": self.stopwatch.elapsed(),
                 "rng": {"seed": self.cfg.seed, "scheme": self.rng_scheme},
                 "world_size": self.info.world_size, "device": str(self.device),
                 "prior": self.prior, "speed": getattr(self, "speed_state", None),
                 "args": self.args_json}
        extra = self.extra_state() if self.extra_state is not None else None
        save_train_state(self.out.path, self.model, self.optimizer, state, extra)
        if self.before_save_model is not None:
            self.before_save_model()
        save_model(self.out.path, self.saved_model())
        self.saver.reset()

    def saved_model(self) -> nn.Module:
        """What model.safetensors holds: ``model_to_save()`` if set, else the trained model."""
        return self.model_to_save() if self.model_to_save is not None else self.model

    def should_stop(self) -> bool:
        """Same answer on every rank: step limit, or rank 0's time budget / stop request."""
        cfg = self.cfg
        if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
            return True
        out_of_time = cfg.minutes is not None and self.stopwatch.elapsed() >= cfg.minutes * 60
        return broadcast_flag(out_of_time or self.stop.requested, self.info, self.device)

    def elapsed(self) -> float:
        return self.stopwatch.elapsed()

    # ---------------------------------------------------------------- loop
    def cumulative(self) -> dict[str, float]:
        """Steps, images and CPU- or GPU-hours so far, counting the models this run began from."""
        return add_cumulative(self.prior, cumulative_of_run({
            "steps": self.global_step, "batch_size": self.batch, "world_size": self.info.world_size,
            "train_seconds": self.stopwatch.elapsed(), "device": str(self.device),
            "threads": torch.get_num_threads()}))

    def log_probe(self, probe: Callable[[], dict[str, Any]] | None) -> None:
        """One "probe" line in log.jsonl: `probe()`'s quality numbers with the cumulative
        counters, the points of the learning curves (rank 0 only)."""
        if probe is None or not self.info.is_main:
            return
        was_training = self.model.training
        scores = {k: v for k, v in probe().items() if isinstance(v, (int, float))}
        self.model.train(was_training)
        self.out.log({"type": "probe", "step": self.global_step, "elapsed": self.elapsed(),
                      **self.cumulative(), **scores})

    def run(self, source, step: Callable[..., tuple[torch.Tensor, torch.Tensor]],
            names: tuple[str, ...], *, validate: Callable[[int], None],
            postfix: Callable[[dict[str, float], float], dict[str, str]], log_lr: bool,
            probe: Callable[[], dict[str, Any]] | None = None) -> None:
        """Train until a limit or a stop request.

        ``step(x, idx, epoch, step_in_epoch)`` runs the forward pass on this rank's batch `x`
        (float images; `idx` its dataset indices) and returns ``(loss, stats)``: the loss to
        backpropagate and a 1-D tensor of detached values, averaged over `log_every` steps into
        a "train" line of log.jsonl under `names` (with ``lr`` when `log_lr`). `postfix` turns
        those means and img/s into the progress bar's postfix. ``validate(epoch)`` runs on
        every rank after each full epoch (before its checkpoint). ``probe()`` (optional) gives
        the model's quality numbers on a fixed held-out batch: logged at the start, every
        ``cfg.probe_minutes`` and at the end.
        """
        cfg, info, out, optimizer = self.cfg, self.info, self.out, self.optimizer
        spe, batch, epochs = self.spe, self.batch, self.epochs
        self.choose_speed(source, step)
        cosine = getattr(cfg, "lr_schedule", "constant") == "cosine"
        # a warm start begins with fresh Adam moments: ramp the lr up so they settle first
        warmup = cfg.warmup_steps if getattr(cfg, "init", None) else 0
        probe_minutes = getattr(cfg, "probe_minutes", 0)
        probe = probe if probe_minutes > 0 else None  # 0 turns the probes off (benchmarks)
        probe_timer = Every(probe_minutes * 60)
        if self.global_step == 0:  # where a new (or warm-started) run begins
            self.log_probe(probe)
        window = torch.zeros(len(names), device=self.device)  # running sums of the stats
        window_steps, window_start = 0, time.perf_counter()
        stopped = self.should_stop()
        while not stopped and (epochs is None or self.epoch < epochs):
            epoch, start_step = self.epoch, self.start_step
            batches = [shard(b, info) for b in epoch_batches(self.n, cfg.batch_size, cfg.seed, epoch)]
            desc = f"epoch {epoch + 1}" + (f"/{epochs}" if epochs else "")
            bar = progress_bar(spe, start_step, desc, enabled=info.is_main and cfg.progress)
            done = start_step
            images = source.iterate(batches[start_step:])
            for step_in_epoch, x in enumerate(images, start=start_step):
                t0 = time.perf_counter()
                if cosine or warmup:
                    lr = cfg.lr
                    if cosine:
                        progress = budget_progress(cfg, self.global_step, spe,
                                                   self.stopwatch.elapsed(), epochs)
                        lr = cosine_lr(cfg.lr, progress, cfg.lr_min_ratio)
                    lr *= min(1.0, (self.global_step + 1) / warmup) if warmup else 1.0
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                self.model.train()
                loss, stats = step(self._layout(x), batches[step_in_epoch], epoch, step_in_epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if self.after_step is not None:
                    self.after_step()
                self.global_step += 1
                done = step_in_epoch + 1
                window += stats
                window_steps += 1
                self.step_times.append(time.perf_counter() - t0)
                bar.update(1)
                if self.global_step % cfg.log_every == 0:
                    means = dict(zip(names, (window / window_steps).tolist()))
                    img_s = window_steps * batch / (time.perf_counter() - window_start)
                    record = {"type": "train", "step": self.global_step,
                              "epoch": self.global_step / spe, **means, "img_per_s": img_s}
                    if log_lr:
                        record["lr"] = optimizer.param_groups[0]["lr"]
                    record["elapsed"] = self.stopwatch.elapsed()
                    out.log(record)
                    bar.set_postfix(**postfix(means, img_s))
                    window.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                if probe_timer.due():
                    self.log_probe(probe)
                    probe_timer.reset()
                stopped = self.should_stop()
                if stopped:
                    break
                if self.saver.due() and done < spe:
                    self.checkpoint(epoch, done)
            bar.close()
            if done < spe:  # stopped mid-epoch
                self.checkpoint(epoch, done)
                break
            self.epoch, self.start_step = epoch + 1, 0
            validate(self.epoch)
            # Decide before saving, so a run that stops here records elapsed >= its budget
            # (else a resume with the same budget would find a little time left).
            stopped = stopped or self.should_stop()
            self.checkpoint(self.epoch, 0)
        if self.step_times:
            self.log_probe(probe)

    # ---------------------------------------------------------------- final metrics
    def run_metrics(self) -> dict[str, Any]:
        """The metrics.json entries about the run itself (time, device, budget, data, speed)."""
        cfg = self.cfg
        metrics: dict[str, Any] = {"train_seconds": self.stopwatch.elapsed(),
                                   "device": str(self.device), "world_size": self.info.world_size}
        metrics["amp"] = self.amp
        metrics.update({"epochs": self.global_step / self.spe, "steps": self.global_step})
        if hasattr(cfg, "dataset"):
            metrics["dataset"] = cfg.dataset
        metrics.update({
            "train_size": self.n,
            "batch_size": self.batch,
            "lr": cfg.lr,
            "train_img_per_s": self.steady_img_per_s(),
            "threads": torch.get_num_threads(),
            "speed_options": speed.option_label(self.amp, self.channels_last),
        })
        if getattr(cfg, "init", None):
            metrics["init"] = str(cfg.init)
        metrics["cumulative"] = add_cumulative(self.prior, cumulative_of_run(metrics))
        return metrics

    def steady_img_per_s(self) -> float | None:
        """Images per second of this session's optimizer steps, leaving out the first
        `WARM_STEPS` (allocation, compilation) when there are more."""
        times = self.step_times[WARM_STEPS:] if len(self.step_times) > WARM_STEPS else self.step_times
        return len(times) * self.batch / sum(times) if times and sum(times) > 0 else None

    def finish(self, final: Callable[[], tuple[dict[str, Any], str]]) -> dict[str, Any] | None:
        """On rank 0: make sure a checkpoint exists, ``final()`` → (metrics, summary line),
        save the model with metrics.json, print the summary. Returns the metrics (None on
        other ranks)."""
        metrics = None
        if self.info.is_main:
            if not self.out.has_checkpoint():  # e.g. limits already reached before the first step
                self.checkpoint(self.epoch, self.start_step)
            metrics, summary = final()
            save_model(self.out.path, self.saved_model(), metrics=metrics)
            print(summary)
        barrier(self.info)
        return metrics
