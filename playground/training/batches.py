"""Data for training: datasets by name, seeded batches per epoch (exact resume), DDP shards,
and image sources that yield float batches on the device."""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from playground.training.distributed import DistInfo, barrier


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

def open_on_all_ranks(info: DistInfo, name: str, split: str, n: int | None, root: str | None):
    """Open a dataset on rank 0 first (it may build a cache), then on the other ranks."""
    dataset = open_dataset(name, split, n, root) if info.is_main else None
    barrier(info)
    return dataset if info.is_main else open_dataset(name, split, n, root)
