"""NoiseSchedule: the forward process q and its closed forms (exact identities, no model)."""

import math

import pytest
import torch

from playground.diffusion import NoiseSchedule, ScheduleConfig


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule()


def test_default_is_linear_1000(schedule):
    assert schedule.num_timesteps == len(schedule) == 1000
    assert schedule.config == ScheduleConfig()
    assert schedule.betas.dtype == torch.float64 and schedule.betas.shape == (1000,)
    assert schedule.betas[0].item() == pytest.approx(1e-4)
    assert schedule.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(schedule.betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alphas_cumprod_is_a_decreasing_product_in_0_1(kind):
    s = NoiseSchedule(kind=kind)
    abar = s.alphas_cumprod
    assert torch.all(abar.diff() < 0), "alphabar_t must be strictly decreasing"
    assert torch.all(abar > 0) and torch.all(abar < 1)
    assert torch.allclose(abar, torch.cumprod(1 - s.betas, 0))
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert s.alphas_cumprod_prev[0] == 1.0
    assert torch.equal(s.alphas_cumprod_prev[1:], abar[:-1])
    assert abar[-1] < 1e-4, "x_T should carry almost no signal"
    assert torch.allclose(s.sqrt_alphas_cumprod**2, abar)
    assert torch.allclose(s.sqrt_one_minus_alphas_cumprod**2, 1 - abar)


def test_cosine_schedule_follows_its_definition():
    s = NoiseSchedule(kind="cosine", num_timesteps=100)

    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    # alphabar_t = f((t+1)/T) / f(0) as long as beta is not clipped
    expected = torch.tensor([f((t + 1) / 100) / f(0) for t in range(100)], dtype=torch.float64)
    unclipped = s.betas < 0.999
    assert unclipped[:-1].all() and s.betas[-1] == 0.999  # only the last beta hits the 0.999 cap
    assert torch.allclose(s.alphas_cumprod[unclipped], expected[unclipped], rtol=1e-10)


def test_matches_diffusers_schedules():
    diffusers = pytest.importorskip("diffusers")
    lin = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    cos = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    for ours, theirs in [(NoiseSchedule(), lin), (NoiseSchedule(kind="cosine"), cos)]:
        # diffusers works in float32, so agreement is to float32 precision
        assert torch.allclose(ours.betas, theirs.betas.double(), rtol=1e-6, atol=1e-9)
        assert torch.allclose(ours.alphas_cumprod, theirs.alphas_cumprod.double(), rtol=2e-6)


def test_predict_x0_inverts_q_sample():
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    x_t = s.q_sample(x0, t, eps)
    assert torch.allclose(s.predict_x0(x_t, t, eps), x0, atol=1e-9)
    assert torch.allclose(s.predict_eps(x_t, t, x0), eps, atol=1e-9)
    # per-sample t: each row uses its own alphabar_t
    for i, ti in enumerate(t.tolist()):
        abar = s.alphas_cumprod[ti]
        assert torch.allclose(x_t[i], abar.sqrt() * x0[i] + (1 - abar).sqrt() * eps[i])


def test_q_sample_at_last_step_is_standard_normal():
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(1)
    x0 = torch.ones(20000, 1, 2, 2)  # far from zero mean: the signal must be gone at T-1
    x_T = s.q_sample(x0, torch.full((20000,), 999), torch.randn(x0.shape, generator=g))
    assert abs(x_T.mean().item()) < 0.02
    assert abs(x_T.std().item() - 1) < 0.02
    # ...whereas at t = 0 it is still the data
    x_0 = s.q_sample(x0, torch.zeros(20000, dtype=torch.long), torch.randn(x0.shape, generator=g))
    assert abs(x_0.mean().item() - 1) < 0.01 and x_0.std().item() < 0.02


def test_posterior_is_bayes_rule():
    """q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0): product of two Gaussians in x_{t-1}."""
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(2)
    t = torch.tensor([1, 2, 100, 999])
    x0 = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    mean, var, log_var = s.q_posterior_mean_variance(x0, x_t, t)
    assert mean.shape == x0.shape and var.shape == (4, 1, 1, 1) and log_var.shape == (4, 1, 1, 1)
    for i, ti in enumerate(t.tolist()):
        alpha, beta, abar_prev = s.alphas[ti], s.betas[ti], s.alphas_cumprod_prev[ti]
        precision = alpha / beta + 1 / (1 - abar_prev)
        expected_mean = (alpha.sqrt() / beta * x_t[i] + abar_prev.sqrt() / (1 - abar_prev) * x0[i]) / precision
        assert torch.allclose(var[i].squeeze(), 1 / precision, rtol=1e-9)
        assert torch.allclose(mean[i], expected_mean, atol=1e-9)
        assert torch.allclose(log_var[i].squeeze(), torch.log(1 / precision), rtol=1e-9)


def test_posterior_mean_in_eps_form():
    """With x_0 = x^_0(x_t, eps): mu~_t = (x_t - beta_t / sqrt(1 - alphabar_t) eps) / sqrt(alpha_t).

    (Ho et al. 2020, eq. 11.)
    """
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(3)
    t = torch.tensor([0, 5, 250, 999])
    x_t = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    mean, _, _ = s.q_posterior_mean_variance(s.predict_x0(x_t, t, eps), x_t, t)
    beta = s.betas[t].view(-1, 1, 1, 1)
    expected = (x_t - beta / s.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1) * eps) / s.alphas[t].sqrt().view(
        -1, 1, 1, 1
    )
    assert torch.allclose(mean, expected, atol=1e-9)


def test_posterior_at_t0_is_the_clean_sample():
    s = NoiseSchedule()
    x0, x_t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mean, var, log_var = s.q_posterior_mean_variance(x0, x_t, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(mean, x0) and torch.all(var == 0)
    assert torch.isfinite(log_var).all()  # clipped: uses beta~_1
    assert torch.allclose(log_var.double().squeeze(), s.posterior_variance[1].log().expand(2))


def test_snr():
    s = NoiseSchedule()
    t = torch.arange(1000)
    snr = s.snr(t)
    assert snr.shape == (1000,) and snr.dtype == torch.float64
    assert torch.allclose(snr, s.alphas_cumprod / (1 - s.alphas_cumprod))
    assert torch.all(snr.diff() < 0)
    assert s.snr(999).item() == pytest.approx(s.alphas_cumprod[-1].item() / (1 - s.alphas_cumprod[-1].item()))
    assert s.snr(t, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_outputs_take_the_input_dtype(dtype):
    s = NoiseSchedule()
    x0 = torch.randn(2, 3, 4, 4).to(dtype)
    t = torch.tensor([3, 700])
    x_t = s.q_sample(x0, t, torch.randn_like(x0))
    assert x_t.dtype == dtype
    assert s.predict_x0(x_t, t, x0).dtype == dtype
    mean, var, log_var = s.q_posterior_mean_variance(x0, x_t, t)
    assert mean.dtype == var.dtype == log_var.dtype == dtype


def test_int_timestep_broadcasts_to_batch():
    s = NoiseSchedule()
    x0, eps = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    assert torch.equal(s.q_sample(x0, 42, eps), s.q_sample(x0, torch.full((3,), 42), eps))


def test_config_overrides_and_errors():
    s = NoiseSchedule(num_timesteps=10, beta_end=0.2)
    assert s.num_timesteps == 10 and s.betas[-1].item() == pytest.approx(0.2)
    assert NoiseSchedule(ScheduleConfig(num_timesteps=7)).num_timesteps == 7
    with pytest.raises(ValueError, match="kind"):
        NoiseSchedule(kind="quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        NoiseSchedule(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="num_timesteps"):
        NoiseSchedule(num_timesteps=0)


def test_bad_timesteps_raise():
    s = NoiseSchedule(num_timesteps=10)
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        s.q_sample(x, torch.tensor([0, 10]), x)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        s.q_sample(x, torch.tensor([-1, 0]), x)
    with pytest.raises(ValueError, match="integer"):
        s.q_sample(x, torch.tensor([0.5, 1.0]), x)
    with pytest.raises(ValueError, match="shape"):
        s.q_sample(x, torch.tensor([1, 2, 3]), x)
    with pytest.raises(ValueError, match="same shape"):
        s.q_sample(x, torch.tensor([1, 2]), torch.zeros(2, 1, 2, 3))
