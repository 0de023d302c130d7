"""Devices and data-parallel jobs: one process, or torchrun's DDP (gloo on CPU, NCCL on GPU), and
`run_trainer`, which runs a trainer inside one (threads, DDP, graceful stop)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from playground.training.runs import GracefulStop


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
