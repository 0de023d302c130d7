"""Judge CNN, attribute probabilities, the Fréchet distance (FD-judge) and the judge trainer."""
import json

import numpy as np
import pytest
import torch
from scipy import linalg

import playground
from playground.data.synthfaces import (
    ATTRIBUTE_NAMES,
    CATEGORICAL_FACTORS,
    CONTINUOUS_FACTORS,
    attributes_from_factors,
    sample_factors,
)
from playground.evaluation.frechet import (
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
)
from playground.models.judge import (
    Judge,
    JudgeConfig,
    attribute_probabilities,
    fd_judge,
    judge_features,
)
from playground.store.checkpoints import save_model
from playground.train import main
from playground.training import load_train_state, read_log
from playground.training.trainers.judge import (
    FactorTargets,
    JudgeTrainConfig,
    judge_loss,
    train_judge,
)

TINY = JudgeConfig(channels=(8, 8, 16, 16), feature_dim=16)
TINY_CLI = ["--channels", "8,8,16,16", "--feature-dim", "16", "--batch-size", "16",
            "--train-size", "64", "--eval-size", "16", "--test-size", "16", "--no-progress",
            "--log-every", "1", "--amp", "none", "--layout", "contiguous"]


pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py


def tiny_judge(seed=0):
    torch.manual_seed(seed)
    return Judge(TINY)


def images(n=4, seed=0):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


class FakeFaces:
    """Random images with random SynthFaces factors (what the trainer reads: .images, .factors)."""

    def __init__(self, n, seed=0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        self.factors = sample_factors(n, rng)

    def __len__(self):
        return len(self.images)


# ----------------------------------------------------------------------------- model
def test_shapes_of_features_heads_and_predictions():
    judge = tiny_judge().eval()
    x = images(3)
    assert judge.features(x).shape == (3, 16)
    out = judge(x)
    assert out["continuous_mean"].shape == out["continuous_logvar"].shape == (3, len(CONTINUOUS_FACTORS))
    for name, cats in CATEGORICAL_FACTORS.items():
        assert out[name].shape == (3, len(cats))
    factors = judge.predict_factors(x)
    for name, (lo, hi) in CONTINUOUS_FACTORS.items():
        assert factors[name].shape == (3,) and (factors[f"{name}_std"] > 0).all()
    for name in CATEGORICAL_FACTORS:
        torch.testing.assert_close(factors[name].sum(dim=1), torch.ones(3))
    attrs = judge.predict_attributes(x)
    assert list(attrs) == list(ATTRIBUTE_NAMES)
    for p in attrs.values():
        assert p.shape == (3,) and (p >= 0).all() and (p <= 1).all()
    hard = judge.predict_attributes(x, hard=True)
    assert all(set(v.unique().tolist()) <= {0, 1} for v in hard.values())
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        judge.features(x * 2)


def test_factor_units_round_trip():
    judge = tiny_judge()
    f = sample_factors(5, np.random.default_rng(0))
    values = torch.tensor(np.stack([f[n] for n in CONTINUOUS_FACTORS], axis=1))
    unit = judge.normalize_factors(values)
    assert unit.min() >= -1 and unit.max() <= 1
    torch.testing.assert_close(judge.denormalize_factors(unit), values)


def test_sharp_factor_predictions_give_the_dataset_attributes():
    """attribute_probabilities is the probabilistic twin of attributes_from_factors."""
    factors = sample_factors(500, np.random.default_rng(1))
    preds = {}
    for name in CONTINUOUS_FACTORS:
        preds[name] = torch.from_numpy(factors[name])
        preds[f"{name}_std"] = torch.full((500,), 1e-6)
    for name, cats in CATEGORICAL_FACTORS.items():
        preds[name] = torch.nn.functional.one_hot(torch.from_numpy(factors[name]), len(cats)).float()
    probs = attribute_probabilities(preds)
    truth = attributes_from_factors(factors)
    for name in ATTRIBUTE_NAMES:
        np.testing.assert_array_equal((probs[name].numpy() > 0.5).astype(np.uint8), truth[name],
                                      err_msg=name)
    # an uncertain smile right at the threshold is a coin flip
    preds["smile"], preds["smile_std"] = torch.zeros(500), torch.full((500,), 0.3)
    assert attribute_probabilities(preds)["Smiling"] == pytest.approx(torch.full((500,), 0.5))


def test_save_load_round_trip_through_playground_load(tmp_path):
    judge = tiny_judge(seed=2).eval()
    save_model(tmp_path / "trained" / "judge-tiny", judge)
    loaded = playground.load("judge-tiny")
    assert isinstance(loaded, Judge) and loaded.config == judge.config
    x = images(2, seed=4)
    with torch.no_grad():
        assert torch.equal(loaded.features(x), judge.features(x))
    for name, p in loaded.predict_attributes(x).items():
        assert torch.equal(p, judge.predict_attributes(x)[name])


def test_a_few_optimiser_steps_lower_the_loss():
    judge = tiny_judge()
    data = FakeFaces(16)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    targets = FactorTargets(data.factors, TINY, torch.device("cpu"))
    y_cont, y_cat = targets.batch(torch.arange(16))
    opt = torch.optim.Adam(judge.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = judge_loss(judge(x), y_cont, y_cat, TINY.categorical_names)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_loss_terms_on_perfect_predictions():
    y_cont = torch.tensor([[0.5, -0.5]])
    out = {"continuous_mean": y_cont.clone(), "continuous_logvar": torch.zeros(1, 2),
           "a": torch.tensor([[100.0, 0.0]])}
    losses = judge_loss(out, y_cont, torch.tensor([[0]]), ["a"])
    assert losses["mse"].item() == 0 and losses["nll"].item() == 0
    assert losses["ce"].item() == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(300, 8)) @ np.random.default_rng(1).normal(size=(8, 8))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_is_symmetric_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(300, 6)) * 1.5 + 0.2
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b + 1.0) > frechet_distance(a, b) > 0


def test_frechet_distance_matches_the_closed_form():
    # 1-D: (μ1 − μ2)² + (σ1 − σ2)²
    assert frechet_distance_from_stats([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1)
    # commuting (diagonal) covariances: ‖Δμ‖² + Σ (√a − √b)²
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    d1, d2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    assert frechet_distance_from_stats(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected)
    # general covariances: against scipy's matrix square root
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance_from_stats(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    # samples from the two Gaussians estimate it
    x = rng.multivariate_normal(m1, s1, size=20_000)
    y = rng.multivariate_normal(m2, s2, size=20_000)
    assert frechet_distance(x, y) == pytest.approx(ref, rel=0.05)


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.full((3, 2), np.nan))


def test_fd_judge_accepts_uint8_and_float_images():
    judge = tiny_judge().eval()
    a = FakeFaces(12, seed=0).images
    b = FakeFaces(12, seed=1).images
    fa = judge_features(judge, a, batch_size=5)
    assert fa.shape == (12, 16) and fa.dtype == np.float64
    floats = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(judge_features(judge, floats), fa, rtol=1e-5, atol=1e-6)
    assert fd_judge(judge, a, a) == pytest.approx(0.0, abs=1e-8)
    assert fd_judge(judge, a, b) > 0


# ----------------------------------------------------------------------------- trainer & CLI
def test_resume_replays_an_uninterrupted_run(tmp_path):
    def run(out, resume=False, **kw):
        cfg = JudgeTrainConfig(out=str(out), channels=(8, 8, 16, 16), feature_dim=16,
                               batch_size=8, log_every=1, progress=False,
                               lr_schedule="constant", amp="none", layout="contiguous", **kw)  # cosine depends on max_steps
        return train_judge(cfg, resume=resume, train_set=FakeFaces(24), val_set=FakeFaces(8, 1))

    run(tmp_path / "straight", max_steps=5)
    run(tmp_path / "resumed", max_steps=2)
    metrics = run(tmp_path / "resumed", resume=True, max_steps=5)
    assert metrics["steps"] == 5
    a = load_train_state(tmp_path / "straight")[0]
    b = load_train_state(tmp_path / "resumed")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_log(tmp_path / "resumed") if r["type"] == "train"]
    assert steps == [1, 2, 3, 4, 5]


def test_the_cli_trains_resumes_and_writes_metrics(tmp_path):
    out = tmp_path / "runs" / "judge"
    assert main(["judge", *TINY_CLI, "--max-steps", "2", "--out", str(out)]) == 0
    assert main(["judge", "--max-steps", "3", "--out", str(out), "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["n"] == 16
    assert set(metrics["attribute_acc_per_attribute"]) == set(ATTRIBUTE_NAMES)
    assert metrics["attribute_acc"] == pytest.approx(
        np.mean(list(metrics["attribute_acc_per_attribute"].values())))
    assert set(metrics["factor_r2"]) == set(CONTINUOUS_FACTORS)
    assert set(metrics["factor_acc"]) == set(CATEGORICAL_FACTORS)
    assert metrics["fd_floor"] >= 0 and metrics["device"] == "cpu" and metrics["train_seconds"] > 0
    assert playground.load(str(out)).config.feature_dim == 16
