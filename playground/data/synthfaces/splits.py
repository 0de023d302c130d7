"""Generation by seed, the cached train / val / test splits, and the torch Dataset over them."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from playground.data.synthfaces.factors import (
    ATTRIBUTE_NAMES,
    BLOCK,
    CONTINUOUS_FACTORS,
    FACTOR_NAMES,
    RENDERER_VERSION,
    SPLIT_SEEDS,
    SPLIT_SIZES,
    attributes_from_factors,
    sample_factors,
)
from playground.data.synthfaces.renderer import render_parallel
from playground.store.disk_cache import cache_dir


# ----------------------------------------------------------------------------------------
# Generation, cached splits, Dataset
# ----------------------------------------------------------------------------------------
def _block_factors(seed: int, block: int, count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
    return sample_factors(count, rng)


def generate_factors(n: int, seed: int) -> dict[str, np.ndarray]:
    """Factors of the first ``n`` faces of stream ``seed`` (every prefix is stable)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    blocks = [_block_factors(seed, b, BLOCK) for b in range(math.ceil(n / BLOCK))]
    if not blocks:
        return {name: np.zeros(0, np.float32 if name in CONTINUOUS_FACTORS else np.int64)
                for name in FACTOR_NAMES}
    return {name: np.concatenate([blk[name] for blk in blocks])[:n] for name in FACTOR_NAMES}


def generate(n: int, seed: int = 0, progress: bool = False):
    """Make ``n`` faces from ``seed`` (on several threads when ``n`` is large).

    Returns:
        images: uint8 (N, 64, 64, 3)
        factors: dict name -> (N,) float32 (continuous) or int64 (categorical index)
        attributes: dict CelebA name -> (N,) uint8 0/1
    """
    factors = generate_factors(n, seed)
    images = render_parallel(factors, progress=progress)
    return images, factors, attributes_from_factors(factors)


def load_split(split: str, root=None, progress: bool = True):
    """The full ``split`` ("train", "val", "test"), generated on first use and cached as .npz.

    Returns (images, factors, attributes) like :func:`generate`.
    """
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_SIZES)}")
    n, seed = SPLIT_SIZES[split], SPLIT_SEEDS[split]
    path = cache_dir(root) / f"synthfaces-v{RENDERER_VERSION}" / f"{split}-{n}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                images = z["images"]
                factors = {name: z[f"factor_{name}"] for name in FACTOR_NAMES}
            return images, factors, attributes_from_factors(factors)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache is regenerated
    images, factors, attributes = generate(n, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, images=images, **{f"factor_{k}": v for k, v in factors.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return images, factors, attributes


class SynthFacesDataset(torch.utils.data.Dataset):
    """A SynthFaces split as a torch Dataset.

    Items: ``{"image": float32 (3, 64, 64) in [0, 1], "attributes": float32 (A,), "index": int}``
    (the same format as :class:`playground.data.celeba.CelebADataset`).

    Args:
        split: "train" (60k), "val" (5k) or "test" (5k); fixed seeds, so fixed faces.
        n: keep only the first ``n`` faces. Small ``n`` renders them directly (no cache).
        root: cache folder (default $PLAYGROUND_CACHE or ~/.cache/playground).
    """

    attribute_names: list[str] = list(ATTRIBUTE_NAMES)

    def __init__(self, split: str = "train", n: int | None = None, root=None):
        if split not in SPLIT_SIZES:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_SIZES)}")
        full = SPLIT_SIZES[split]
        if n is not None and not 0 < n <= full:
            raise ValueError(f"n must be in 1..{full} for split {split!r}, got {n}")
        if n is not None and n <= 5_000:
            images, factors, attrs = generate(n, SPLIT_SEEDS[split])
        else:
            images, factors, attrs = load_split(split, root)
            if n is not None:
                images = images[:n]
                factors = {k: v[:n] for k, v in factors.items()}
                attrs = {k: v[:n] for k, v in attrs.items()}
        self._hold(split, images, factors, attrs)

    @classmethod
    def unseen(cls, n: int, seed: int) -> "SynthFacesDataset":
        """The first `n` faces of stream `seed`, which no split uses: faces that no model has
        trained on and no number was measured on (what a re-measurement by someone else sees)."""
        if seed in SPLIT_SEEDS.values():
            raise ValueError(f"seed {seed} is the stream of a split ({SPLIT_SEEDS}); pick another")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        dataset = cls.__new__(cls)
        dataset._hold(f"unseen-{seed}", *generate(n, seed))
        return dataset

    def _hold(self, split: str, images: np.ndarray, factors: dict, attrs: dict) -> None:
        self.split = split
        self.images = images  # uint8 (N, 64, 64, 3)
        self.factors = factors
        self.attributes = attrs
        self._attr_matrix = torch.from_numpy(
            np.stack([attrs[name] for name in self.attribute_names], axis=1).astype(np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float().div_(255.0)
        return {"image": image, "attributes": self._attr_matrix[index], "index": int(index)}

    def image_tensor(self) -> torch.Tensor:
        """All images as one uint8 tensor (N, 3, 64, 64) — the fast path for trainers."""
        return torch.from_numpy(self.images).permute(0, 3, 1, 2).contiguous()
