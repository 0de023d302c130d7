"""The Fréchet distance between two feature sets (pure numpy; no model here).

Fit a Gaussian to each set, N(μ₁, Σ₁) and N(μ₂, Σ₂); their Fréchet (2-Wasserstein) distance is

    d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½).

With Inception features this is FID; this project computes it on its own judge's features
(`playground.models.judge`) and calls it **FD-judge** — never FID.

tr (Σ₁ Σ₂)^½ is computed without a matrix square root of the non-symmetric Σ₁ Σ₂ (where
``scipy.linalg.sqrtm`` returns complex parts from rounding): Σ₁ Σ₂ has the same eigenvalues as
the symmetric positive semi-definite A = Σ₁^½ Σ₂ Σ₁^½, so tr (Σ₁ Σ₂)^½ = Σᵢ √λᵢ(A), with tiny
negative eigenvalues (rounding) clipped to 0. The result is real, and symmetric in its two sets
up to rounding.
"""
from __future__ import annotations

import numpy as np


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and covariance (F, F) (unbiased, float64) of features (N, F), N >= 2."""
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected features of shape (N, F), got {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors to estimate a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues ≥ 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (Σ₁ Σ₂)^½ for covariance matrices, through the eigenvalues of Σ₁^½ Σ₂ Σ₁^½."""
    root1 = _sqrt_psd(sigma1)
    a = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((a + a.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½) for two Gaussians (means (F,), covariances (F, F))."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    f = mu1.shape[0]
    if mu1.shape != (f,) or mu2.shape != (f,) or s1.shape != (f, f) or s2.shape != (f, f):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, "
                         f"mu2 {mu2.shape}, sigma2 {s2.shape}")
    diff = mu1 - mu2
    d2 = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2))
    return max(d2, 0.0)  # rounding can leave −1e-12 for identical sets


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, F) and (N_b, F)."""
    a, b = np.asarray(feats_a), np.asarray(feats_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with the same F, got {a.shape} and {b.shape}")
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))
