"""Evaluation metrics for the β-VAE: KL per dimension, MIG, per-factor correlation, separation.

All functions are pure: arrays in (numpy or torch, any device), plain numbers / numpy arrays out.
Shapes: N = number of images, D = latent dimensions (128 for the shipped β-VAEs).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

__all__ = [
    "kl_per_dim",
    "active_dims",
    "histogram_discretize",
    "mutual_info_gap",
    "factor_correlations",
    "knn_accuracy",
    "silhouette",
    "majority_baseline",
    "separation_scores",
]


def _to_numpy(x, name: str) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor (detached, moved to the CPU)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_latents(latents, name: str = "latents") -> np.ndarray:
    z = _to_numpy(latents, name)
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {z.shape}")
    if z.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (points), got {z.shape[0]}")
    return z


# --------------------------------------------------------------------------------------------
# KL divergence of the posterior q(z|x) = N(mu, diag(exp(logvar))) from the prior p(z) = N(0, I)
# --------------------------------------------------------------------------------------------


def kl_per_dim(mu, logvar) -> np.ndarray:
    """Mean over the data of the analytic KL(q(z_d | x) || N(0, 1)) for every latent dimension d.

        KL_d(x) = 1/2 * (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2)      (nats)

    Args:
        mu: (N, D) posterior means.
        logvar: (N, D) posterior log-variances log sigma^2.
    Returns:
        (D,) float64: KL per dimension, averaged over the N images. Its sum is the mean KL term
        of the ELBO (per image, in nats).
    """
    mu = _check_latents(mu, "mu")
    logvar = _to_numpy(logvar, "logvar")
    if logvar.shape != mu.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {mu.shape} and "
                         f"{logvar.shape}")
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)  # (N, D)
    return kl.mean(axis=0)


ACTIVE_KL = 0.01  # nats: a latent dimension with more mean KL than this is "active"


def active_dims(kl_per_dim, threshold: float = ACTIVE_KL) -> int:
    """Number of latent dimensions whose mean KL exceeds ``threshold`` nats.

    A dimension with (near) zero KL has collapsed to the prior: the decoder ignores it.
    (Burda et al. 2016 count "active units" by the variance of E[z|x]; with a Gaussian posterior
    the KL criterion gives the same picture and is what the Traverse tab ranks by.)

    Args:
        kl_per_dim: (D,) KL per dimension in nats, e.g. from :func:`kl_per_dim`.
        threshold: nats; `ACTIVE_KL` (0.01) by default — every tab and report counts with it.
    """
    kl = _to_numpy(kl_per_dim, "kl_per_dim")
    if kl.ndim != 1:
        raise ValueError(f"kl_per_dim must have shape (D,), got {kl.shape}")
    return int(np.sum(kl > threshold))


# --------------------------------------------------------------------------------------------
# Mutual information gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs")
# --------------------------------------------------------------------------------------------


def histogram_discretize(values, n_bins: int = 20) -> np.ndarray:
    """Discretise every column into ``n_bins`` equal-width bins spanning its own [min, max].

    This is disentanglement_lib's default ``_histogram_discretize`` (20 bins): bin edges from
    ``np.histogram(column, n_bins)``, bin index from ``np.digitize``.

    Args:
        values: (N,) or (N, D) array.
        n_bins: number of equal-width bins per column.
    Returns:
        int64 array of the same shape with bin indices in 1..n_bins.
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    v = _to_numpy(values, "values")
    squeeze = v.ndim == 1
    if squeeze:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must have shape (N,) or (N, D), got {v.shape}")
    out = np.empty(v.shape, dtype=np.int64)
    for j in range(v.shape[1]):
        edges = np.histogram(v[:, j], bins=n_bins)[1]
        out[:, j] = np.digitize(v[:, j], edges[:-1])
    return out[:, 0] if squeeze else out


def _factor_codes(values, name: str, discrete: bool, n_bins: int) -> np.ndarray:
    """(N,) int codes of one factor: categories as they are, continuous values binned."""
    v = _to_numpy(values, f"factor {name!r}")
    if v.ndim != 1:
        raise ValueError(f"factor {name!r} must have shape (N,), got {v.shape}")
    if discrete:
        return np.unique(v, return_inverse=True)[1].astype(np.int64)
    return histogram_discretize(v, n_bins)


def _check_factors(factors: Mapping, n: int) -> None:
    if not factors:
        raise ValueError("factors is empty: pass {name: (N,) array}")
    for name, values in factors.items():
        if len(values) != n:
            raise ValueError(f"factor {name!r} has {len(values)} values but latents have {n} rows")


def mutual_info_gap(
    latents,
    factors: Mapping[str, np.ndarray],
    discrete: Collection[str] = (),
    n_bins: int = 20,
) -> tuple[float, dict[str, float]]:
    """Mutual information gap (MIG) of Chen et al. (2018), estimated as in disentanglement_lib.

    For every ground-truth factor v_k:
        MIG_k = (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k)
    where z_(1), z_(2) are the latent dimensions with the largest and second-largest mutual
    information with v_k. MIG is the mean of MIG_k over factors; 1 = each factor is captured by
    exactly one dimension, 0 = no single dimension stands out.

    Estimation: every latent dimension is discretised into ``n_bins`` equal-width bins over its
    range (histogram binning, disentanglement_lib's default with 20 bins); continuous factors
    are binned the same way; categorical factors (names in ``discrete``) keep their categories.
    I and H are plug-in estimates from ``sklearn.metrics.mutual_info_score`` (nats), with
    H(v) = I(v; v). The plug-in MI has a small positive bias (about (bins-1)^2 / 2N nats), so
    random latents give MIG slightly above 0 and perfect latents slightly below 1.

    Factors that are constant over the sample (H = 0) are skipped; they cannot be captured.

    Args:
        latents: (N, D) codes, e.g. posterior means mu. D must be >= 2.
        factors: {name: (N,) values}.
        discrete: names of the categorical factors (integer category values).
        n_bins: bins per latent dimension and per continuous factor.
    Returns:
        (mig, per_factor): the mean gap and {factor name: gap} for the non-constant factors.
    """
    from sklearn.metrics import mutual_info_score

    z = _check_latents(latents)
    if z.shape[1] < 2:
        raise ValueError("MIG needs at least 2 latent dimensions (it compares the top two)")
    _check_factors(factors, z.shape[0])
    unknown = set(discrete) - set(factors)
    if unknown:
        raise ValueError(f"discrete names {sorted(unknown)} are not in factors")
    z_codes = histogram_discretize(z, n_bins)  # (N, D)

    per_factor: dict[str, float] = {}
    for name, values in factors.items():
        v = _factor_codes(values, name, name in discrete, n_bins)
        entropy = mutual_info_score(v, v)
        if entropy <= 1e-12:
            continue  # constant factor over this sample
        mi = np.array([mutual_info_score(v, z_codes[:, d]) for d in range(z.shape[1])])  # (D,)
        top2 = np.sort(mi)[-2:]
        per_factor[name] = float((top2[1] - top2[0]) / entropy)
    if not per_factor:
        raise ValueError("every factor is constant over this sample: MIG is undefined")
    return float(np.mean(list(per_factor.values()))), per_factor


# --------------------------------------------------------------------------------------------
# Best single-dimension correlation per factor
# --------------------------------------------------------------------------------------------


def _pearson_columns(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(D,) Pearson r between y (N,) and every column of z (N, D); 0 where either is constant."""
    zc = z - z.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((zc**2).sum(axis=0) * (yc**2).sum())
    num = zc.T @ yc
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), 0.0)
    return r


def factor_correlations(
    latents,
    factors: Mapping[str, np.ndarray],
    categorical: Mapping[str, Collection[str]] | Collection[str] = (),
) -> dict[str, dict]:
    """The latent dimension that best tracks each factor, by absolute Pearson correlation.

    - Continuous and binary factors: r between the factor value and each single dimension; the
      dimension with the largest |r| wins.
    - Categorical factors with more than two categories: r between the one-vs-rest indicator
      1[v == c] of each category c and each dimension; the (category, dimension) pair with the
      largest |r| wins, and its category is reported under ``"category"``.

    Args:
        latents: (N, D) codes.
        factors: {name: (N,) values}.
        categorical: names of the categorical factors, or {name: category names} (then the
            winning category is reported by name rather than by index).
    Returns:
        {factor: {"r": signed r of the best dimension, "abs_r": |r|, "dim": its index}} plus
        ``"category"`` for multi-category factors. Constant factors get r = 0 and dim = -1.
    """
    z = _check_latents(latents)
    _check_factors(factors, z.shape[0])
    if isinstance(categorical, Mapping):
        names_of = dict(categorical)
    else:
        names_of = {c: None for c in categorical}
    unknown = set(names_of) - set(factors)
    if unknown:
        raise ValueError(f"categorical names {sorted(unknown)} are not in factors")

    result: dict[str, dict] = {}
    for name, values in factors.items():
        v = _to_numpy(values, f"factor {name!r}")
        if v.ndim != 1:
            raise ValueError(f"factor {name!r} must have shape (N,), got {v.shape}")
        categories = np.unique(v)
        if name in names_of and len(categories) > 2:
            best = {"r": 0.0, "abs_r": 0.0, "dim": -1, "category": None}
            for c in categories:
                r = _pearson_columns(z, (v == c).astype(np.float64))
                d = int(np.argmax(np.abs(r)))
                if abs(r[d]) > best["abs_r"]:
                    label = names_of[name][int(c)] if names_of[name] is not None else int(c)
                    best = {"r": float(r[d]), "abs_r": float(abs(r[d])), "dim": d,
                            "category": label}
            result[name] = best
        else:
            r = _pearson_columns(z, v)
            d = int(np.argmax(np.abs(r)))
            if r[d] == 0.0:
                result[name] = {"r": 0.0, "abs_r": 0.0, "dim": -1}
            else:
                result[name] = {"r": float(r[d]), "abs_r": float(abs(r[d])), "dim": d}
    return result


# --------------------------------------------------------------------------------------------
# Separation of a binary (or multi-class) label in a space of points
# --------------------------------------------------------------------------------------------


def _check_points_labels(points, labels) -> tuple[np.ndarray, np.ndarray]:
    x = _check_latents(points, "points")
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("labels must contain at least 2 classes")
    return x, y


def majority_baseline(labels) -> float:
    """Accuracy of always predicting the most frequent class (the chance level to beat)."""
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty (N,) array, got shape {y.shape}")
    return float(np.unique(y, return_counts=True)[1].max() / len(y))


def knn_accuracy(points, labels, k: int = 10, folds: int = 5, seed: int = 0,
                 balanced: bool = False) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier predicting ``labels``.

    How well the local neighbourhood of a point predicts its label: ~1 for well separated
    classes, ~ :func:`majority_baseline` when the label is unrelated to position.
    Stratified ``folds``-fold split, shuffled with ``seed``; Euclidean distance, uniform votes.
    With ``balanced`` the score is balanced accuracy (the mean recall of the classes: chance is
    1 / classes however rare one class is, so a dominant class cannot make it look high).

    Args:
        points: (N, d) coordinates (a 2-D embedding or the full latent space).
        labels: (N,) class labels.
    Returns:
        mean accuracy over the folds, in [0, 1].
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _check_points_labels(points, labels)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    smallest = np.unique(y, return_counts=True)[1].min()
    if smallest < folds:
        raise ValueError(f"the rarest class has {smallest} points, fewer than folds={folds}")
    n_train = x.shape[0] - int(np.ceil(x.shape[0] / folds))
    if k < 1 or k > n_train:
        raise ValueError(f"k must be in 1..{n_train} (training points per fold), got {k}")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), x, y, cv=cv,
                             scoring="balanced_accuracy" if balanced else "accuracy")
    return float(scores.mean())


def silhouette(points, labels) -> float:
    """Mean silhouette coefficient (sklearn, Euclidean) of the classes in ``labels``.

    In [-1, 1]: > 0.5 strong cluster structure, 0.25-0.5 weak, < 0.25 no substantial structure
    (Kaufman & Rousseeuw's rule of thumb); ~0 when the label is unrelated to position.
    Cost is O(N^2) in time and memory per chunk: keep N in the low thousands.

    Args:
        points: (N, d) coordinates.
        labels: (N,) class labels (at least 2 classes, fewer than N).
    """
    from sklearn.metrics import silhouette_score

    x, y = _check_points_labels(points, labels)
    if len(np.unique(y)) >= x.shape[0]:
        raise ValueError("silhouette needs fewer classes than points")
    return float(silhouette_score(x, y))


def separation_scores(points, labels, k: int = 10, folds: int = 5,
                      seed: int = 0) -> dict[str, float]:
    """{"knn_acc", "silhouette", "baseline"} in one call: is the label separated in this space?"""
    return {
        "knn_acc": knn_accuracy(points, labels, k=k, folds=folds, seed=seed),
        "silhouette": silhouette(points, labels),
        "baseline": majority_baseline(labels),
    }
