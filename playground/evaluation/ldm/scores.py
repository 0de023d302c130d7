"""Scores of judge features: FD-judge against a SynthFaces reference, and diversity."""
from __future__ import annotations

import numpy as np
import torch

from playground.evaluation.frechet import frechet_distance_from_stats, gaussian_stats

_REFERENCE_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def reference_stats(judge, split: str = "test", n: int = 5000,
                    batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and covariance (F, F) of the judge features of the first ``n`` faces of a
    SynthFaces split; computed once per (judge, split, n) and kept in memory."""
    from playground.data.synthfaces import SynthFacesDataset
    from playground.models.judge import judge_features

    key = (id(judge), split, int(n))
    if key not in _REFERENCE_CACHE:
        images = SynthFacesDataset(split, n=n).images  # uint8 (n, 64, 64, 3)
        _REFERENCE_CACHE[key] = gaussian_stats(judge_features(judge, images, batch_size))
    return _REFERENCE_CACHE[key]


def fd_to_reference(features: np.ndarray, reference: tuple[np.ndarray, np.ndarray]) -> float:
    """FD-judge of features (N, F) against reference statistics (mean (F,), covariance (F, F))."""
    return frechet_distance_from_stats(*gaussian_stats(features), *reference)


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean L2 distance over all pairs of rows of features (N, F), N ≥ 2: the diversity."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"diversity needs features (N ≥ 2, F), got {tuple(x.shape)}")
    return float(torch.pdist(x).mean())
