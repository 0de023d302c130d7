"""Metrics: KL, MIG, per-factor correlation and separation scores follow their definitions."""
import numpy as np
import pytest
import torch

from playground.evaluation import metrics


def _factors(n, rng):
    """Two continuous factors, one binary and one 4-way categorical, independent."""
    return {
        "a": rng.uniform(-1, 1, n).astype(np.float32),
        "b": rng.uniform(0, 1, n).astype(np.float32),
        "glasses": rng.integers(0, 2, n),
        "hair": rng.integers(0, 4, n),
    }


def test_kl_of_standard_normal_posterior_is_zero():
    mu = torch.zeros(16, 5)
    logvar = torch.zeros(16, 5)
    kl = metrics.kl_per_dim(mu, logvar)
    assert kl.shape == (5,)
    np.testing.assert_allclose(kl, 0.0, atol=1e-12)
    assert metrics.active_dims(kl) == 0


def test_kl_matches_closed_form_and_counts_active_dims():
    # dim 0: mu = 2, sigma = 1 -> KL = 2; dim 1: sigma^2 = e -> KL = (e - 2) / 2; dim 2: prior.
    mu = np.array([[2.0, 0.0, 0.0]] * 4)
    logvar = np.array([[0.0, 1.0, 0.0]] * 4)
    kl = metrics.kl_per_dim(mu, logvar)
    np.testing.assert_allclose(kl, [2.0, (np.e - 2) / 2, 0.0], rtol=1e-12)
    assert metrics.active_dims(kl) == 2
    assert metrics.active_dims(kl, threshold=1.0) == 1
    with pytest.raises(ValueError, match="same shape"):
        metrics.kl_per_dim(mu, logvar[:, :2])


def test_histogram_discretize_uses_equal_width_bins():
    codes = metrics.histogram_discretize(np.array([0.0, 0.04, 0.5, 0.96, 1.0]), n_bins=20)
    assert codes.tolist() == [1, 1, 11, 20, 20]


def test_mig_is_one_for_perfect_latents_and_zero_for_random():
    rng = np.random.default_rng(0)
    n = 4000
    f = _factors(n, rng)
    perfect = np.stack([f["a"], f["b"], f["glasses"], f["hair"]], 1).astype(np.float64)
    perfect = np.concatenate([perfect, rng.normal(size=(n, 4))], 1)  # plus 4 noise dims
    mig, per = metrics.mutual_info_gap(perfect, f, discrete={"glasses", "hair"})
    assert set(per) == set(f)
    assert mig > 0.95
    assert min(per.values()) > 0.9

    mig_rand, _ = metrics.mutual_info_gap(rng.normal(size=(n, 8)), f, discrete={"glasses", "hair"})
    assert mig_rand < 0.03
    # A latent that copies a factor twice has no gap for that factor.
    twice = np.stack([f["a"], f["a"], f["b"]], 1)
    _, per_twice = metrics.mutual_info_gap(twice, {"a": f["a"], "b": f["b"]})
    assert per_twice["a"] < 0.05 and per_twice["b"] > 0.9


def test_mig_skips_constant_factors_and_rejects_bad_input():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(100, 3))
    _, per = metrics.mutual_info_gap(z, {"a": z[:, 0], "const": np.zeros(100)})
    assert set(per) == {"a"}
    with pytest.raises(ValueError, match="values but latents"):
        metrics.mutual_info_gap(z, {"a": z[:50, 0]})
    with pytest.raises(ValueError, match="not in factors"):
        metrics.mutual_info_gap(z, {"a": z[:, 0]}, discrete={"b"})
    with pytest.raises(ValueError, match="NaN"):
        metrics.mutual_info_gap(np.full((100, 3), np.nan), {"a": z[:, 0]})


def test_factor_correlations_find_the_right_dimension_and_sign():
    rng = np.random.default_rng(2)
    n = 2000
    f = _factors(n, rng)
    z = rng.normal(size=(n, 6))
    z[:, 3] = -f["a"]  # perfect, negative
    z[:, 1] = f["glasses"] + 0.1 * rng.normal(size=n)
    z[:, 5] = (f["hair"] == 2) * 1.0  # blond indicator
    categorical = {"hair": ("black", "brown", "blond", "gray"), "glasses": ("no", "yes")}
    out = metrics.factor_correlations(z, f, categorical=categorical)
    assert out["a"]["dim"] == 3
    assert out["a"]["r"] == pytest.approx(-1.0, abs=1e-9)
    assert out["a"]["abs_r"] == pytest.approx(1.0, abs=1e-9)
    assert out["glasses"]["dim"] == 1 and out["glasses"]["r"] > 0.95
    assert "category" not in out["glasses"]  # binary: the factor itself
    assert out["hair"] == {"r": pytest.approx(1.0), "abs_r": pytest.approx(1.0), "dim": 5,
                           "category": "blond"}
    assert out["b"]["abs_r"] < 0.1  # b is in no dimension
    # categorical given as a set of names: category reported by index
    assert metrics.factor_correlations(z, f, categorical={"hair"})["hair"]["category"] == 2


def test_knn_accuracy_silhouette_and_baseline():
    rng = np.random.default_rng(3)
    n = 400
    labels = np.repeat([0, 1], n // 2)
    blobs = rng.normal(size=(n, 2)) * 0.3 + labels[:, None] * np.array([5.0, 0.0])
    assert metrics.knn_accuracy(blobs, labels) > 0.99
    assert metrics.silhouette(blobs, labels) > 0.8
    shuffled = rng.permutation(labels)
    acc = metrics.knn_accuracy(blobs, shuffled)
    assert abs(acc - 0.5) < 0.1
    assert abs(metrics.silhouette(blobs, shuffled)) < 0.05
    assert metrics.majority_baseline(np.array([0, 0, 0, 1])) == 0.75
    scores = metrics.separation_scores(blobs, labels)
    assert set(scores) == {"knn_acc", "silhouette", "baseline"} and scores["baseline"] == 0.5
    with pytest.raises(ValueError, match="2 classes"):
        metrics.knn_accuracy(blobs, np.zeros(n))
    with pytest.raises(ValueError, match="k must be"):
        metrics.knn_accuracy(blobs[:20], labels[:20] * 0 + np.arange(20) % 2, k=50)
