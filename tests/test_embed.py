"""2-D embeddings: shapes, determinism per seed, clear errors."""
import numpy as np
import pytest
import torch

from playground.evaluation.projection import embed


@pytest.fixture(scope="module")
def latents():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 6
    return (centers[np.arange(90) % 3] + rng.normal(size=(90, 16))).astype(np.float32)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_shape_dtype_and_determinism(latents, method):
    a = embed(latents, method=method, seed=0)
    b = embed(torch.from_numpy(latents), method=method, seed=0)
    assert a.shape == (90, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_tsne_keeps_clusters_apart_and_reports_progress(latents):
    calls = []
    xy = embed(latents, method="tsne", seed=1, perplexity=10, progress=lambda f, m: calls.append(f))
    assert calls == [0.0, 1.0]
    labels = np.arange(90) % 3
    centroids = np.stack([xy[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(xy[labels == c] - centroids[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centroids[i] - centroids[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread


def test_pca_matches_first_principal_components(latents):
    xy = embed(latents, method="pca")
    centred = latents - latents.mean(0)
    sv = np.linalg.svd(centred, compute_uv=False)
    np.testing.assert_allclose(xy.var(0, ddof=1), sv[:2] ** 2 / (len(latents) - 1), rtol=1e-4)


def test_clear_errors(latents):
    with pytest.raises(ValueError, match="unknown embedding method"):
        embed(latents, method="mds")
    with pytest.raises(ValueError, match="perplexity"):
        embed(latents[:20], method="tsne")
    with pytest.raises(ValueError, match="n_neighbors"):
        embed(latents[:10], method="umap")
    with pytest.raises(ValueError, match="at least 3 points"):
        embed(latents[:2], method="pca")
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        embed(latents[0], method="pca")
    with pytest.raises(ValueError, match="NaN"):
        embed(np.full((10, 4), np.nan), method="pca")


@pytest.mark.slow
def test_umap_shape_and_determinism(latents):
    a = embed(latents, method="umap", seed=0)
    b = embed(latents, method="umap", seed=0)
    assert a.shape == (90, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, b)
