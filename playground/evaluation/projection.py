"""2-D embeddings of latent codes for the Latent map and the report: t-SNE, UMAP or PCA."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

METHODS = ("tsne", "umap", "pca")

# Defaults per method (any of them can be overridden through ``embed(..., **kw)``).
TSNE_DEFAULTS = {
    "perplexity": 30.0,  # effective number of neighbours (van der Maaten & Hinton's usual value)
    "init": "pca",  # PCA initialisation: stabler global layout and deterministic per seed
    "learning_rate": "auto",  # max(N / early_exaggeration / 4, 50), sklearn's recommended setting
}
UMAP_DEFAULTS = {
    "n_neighbors": 15,  # size of the local neighbourhood (umap-learn's default)
    "min_dist": 0.1,  # how tightly points may be packed (umap-learn's default)
}


def _as_array(latents) -> np.ndarray:
    if hasattr(latents, "detach"):  # torch tensor
        latents = latents.detach().cpu().numpy()
    return np.asarray(latents, dtype=np.float32)


def embed(
    latents,
    method: str = "tsne",
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    threads: int | None = 1,
    **kw,
) -> np.ndarray:
    """Project latent codes to 2-D.

    Args:
        latents: (N, D) codes (numpy array or torch tensor), D >= 2.
        method: "tsne" (scikit-learn TSNE, perplexity 30, PCA init), "umap" (umap-learn UMAP,
            15 neighbours) or "pca" (scikit-learn PCA, first two principal components).
        seed: random state. t-SNE and PCA give identical output for identical input and seed;
            UMAP is deterministic per seed too, but then runs single-threaded.
        progress: optional ``progress(fraction, message)`` callback, called before and after
            the fit (the libraries expose no finer hook).
        threads: OpenMP/BLAS threads for the fit, limited only inside this call (threadpoolctl);
            None lets the libraries decide. The default is 1 because t-SNE runs an OpenMP
            parallel region per gradient step: on a busy 2-core CPU two threads measured 4x
            slower (2,000 points: 28.6 s vs 7.5 s; 64 points: 28 s vs 0.2 s).
        **kw: passed to the estimator (e.g. ``perplexity=10``, ``n_neighbors=30``).
    Returns:
        (N, 2) float32 coordinates.
    """
    if method not in METHODS:
        raise ValueError(f"unknown embedding method {method!r}; choose one of {', '.join(METHODS)}")
    z = _as_array(latents)
    if z.ndim != 2:
        raise ValueError(f"latents must have shape (N, D), got {z.shape}")
    if z.shape[1] < 2:
        raise ValueError(f"latents need at least 2 dimensions to embed in 2-D, got D={z.shape[1]}")
    if not np.all(np.isfinite(z)):
        raise ValueError("latents contain NaN or infinite values")
    n = z.shape[0]

    if method == "pca":
        if n < 3:
            raise ValueError(f"PCA needs at least 3 points, got {n}")
        from sklearn.decomposition import PCA

        estimator = PCA(n_components=2, svd_solver="full", random_state=seed, **kw)
    elif method == "tsne":
        params = {**TSNE_DEFAULTS, **kw}
        if n <= params["perplexity"]:
            raise ValueError(
                f"t-SNE with perplexity {params['perplexity']:g} needs more than that many points, "
                f"got {n}; pass a smaller perplexity (about N/3) or more points"
            )
        from sklearn.manifold import TSNE

        estimator = TSNE(n_components=2, random_state=seed, **params)
    else:  # umap
        params = {**UMAP_DEFAULTS, **kw}
        if n <= params["n_neighbors"]:
            raise ValueError(
                f"UMAP with n_neighbors={params['n_neighbors']} needs more than that many points, "
                f"got {n}; pass a smaller n_neighbors or more points"
            )
        import umap

        estimator = umap.UMAP(n_components=2, random_state=seed, **params)

    if progress is not None:
        progress(0.0, f"{method}: embedding {n} points of dimension {z.shape[1]}")
    limit = threadpool_limits(threads) if threads is not None else contextlib.nullcontext()
    with limit, warnings.catch_warnings():
        # UMAP warns that a random_state forces a single thread; that is the price of determinism.
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        coords = estimator.fit_transform(z)
    if progress is not None:
        progress(1.0, f"{method}: done")
    return np.asarray(coords, dtype=np.float32)
