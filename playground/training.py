"""Training machinery shared by every trainer (β-VAE now; autoencoder, CLIP, judge, LDM later).

- devices and DDP: `resolve_device`, `setup_distributed` (torchrun sets RANK / WORLD_SIZE)
- data: `open_dataset`, `image_source` (a fast path that indexes one uint8 tensor, or a
  DataLoader with workers for datasets that read files), `epoch_batches` (a seeded
  permutation per epoch, so a resumed run sees the same batches in the same order)
- the run folder: `RunFolder` (log.jsonl lines for live loss curves, checkpoints)
- checkpoints with exact resume: `save_train_state` / `load_train_state` (safetensors + JSON,
  never pickle; optimizer tensors under flat keys)
- time: `Stopwatch` (training time summed over resumed sessions), `Every` (periodic saves)

A run folder holds:
    config.json, model.safetensors     the model so far (`playground.load(<folder>)` opens it)
    train_state.safetensors            model + optimizer tensors, with the JSON state below
                                       embedded in its metadata (one file = one consistent state)
    train_state.json                   the same JSON state, readable: epoch, step, elapsed, args
    log.jsonl                          one JSON object per line: {"type": "train" | "val", ...}
    metrics.json                       written at the end
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from playground.checkpoints import (atomic_write_bytes, atomic_write_json, read_safetensors,
                                    save_safetensors)

TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"
LOG_FILE = "log.jsonl"
STATE_FORMAT = 1  # bump when the train_state layout changes


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
                     optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Write everything needed to resume: ``train_state.safetensors`` then ``train_state.json``.

    The safetensors file holds the model (``model.*``) and optimizer (``optimizer.*``) tensors
    and, in its metadata, the JSON `state` (epoch, step, elapsed, args ...) plus the
    optimizer's non-tensor parts, so that one atomic file is one consistent checkpoint.
    train_state.json repeats the JSON part for people and UIs.
    """
    folder = Path(folder)
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(opt_tensors)
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
