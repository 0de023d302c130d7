"""β-VAE model and loss terms."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from playground.models.losses import bce_loss, beta_vae_loss, kl_normal
from playground.models.vae import BetaVAE, VAEConfig

TINY = VAEConfig(latent_dim=8, channels=(8, 8, 8, 8))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and do not stall when other jobs load the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return BetaVAE(TINY)


def images(n=4, seed=0):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- losses
def test_kl_of_standard_normal_is_zero():
    mu, logvar = torch.zeros(5, 7), torch.zeros(5, 7)
    assert torch.equal(kl_normal(mu, logvar), torch.zeros(5, 7))


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(6, 10, generator=g) * 2
    logvar = torch.randn(6, 10, generator=g)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_normal(mu, logvar), expected, rtol=1e-5, atol=1e-6)
    assert (kl_normal(mu, logvar) >= 0).all()


def test_bce_is_summed_over_pixels_and_averaged_over_batch():
    g = torch.Generator().manual_seed(2)
    logits, x = torch.randn(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    expected = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 3
    torch.testing.assert_close(bce_loss(logits, x), expected)
    # a perfect binary reconstruction costs ~0 nats; a 50/50 guess costs log 2 per pixel
    assert bce_loss(torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 64, 64).round()).item() == \
        pytest.approx(3 * 64 * 64 * math.log(2), rel=1e-5)


def test_beta_weights_only_the_kl():
    g = torch.Generator().manual_seed(3)
    logits, x = torch.randn(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    mu, logvar = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    one, four = beta_vae_loss(logits, x, mu, logvar, 1.0), beta_vae_loss(logits, x, mu, logvar, 4.0)
    assert torch.equal(one["recon"], four["recon"]) and torch.equal(one["kl"], four["kl"])
    torch.testing.assert_close(four["loss"], one["recon"] + 4 * one["kl"])
    torch.testing.assert_close(one["kl"], kl_normal(mu, logvar).sum(1).mean())


def test_loss_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in shape"):
        bce_loss(torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="differ in shape"):
        kl_normal(torch.zeros(2, 8), torch.zeros(2, 4))


# ----------------------------------------------------------------------------- model
def test_default_model_size_and_shapes():
    model = BetaVAE()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 2_957_955  # ~3 M, as documented in playground/models/vae.py
    x = images(2)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 128)
    logits, mu2, logvar2, z = model(x, generator=torch.Generator().manual_seed(0))
    assert logits.shape == (2, 3, 64, 64) and z.shape == (2, 128)
    torch.testing.assert_close(mu2, mu)


def test_decoded_and_sampled_images_lie_in_unit_interval():
    model = tiny_model().eval()
    z = torch.randn(4, 8) * 50  # far outside the prior: sigmoid must still bound the output
    out = model.decode(z)
    assert out.shape == (4, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    a = model.sample(3, generator=torch.Generator().manual_seed(7))
    b = model.sample(3, generator=torch.Generator().manual_seed(7))
    assert a.shape == (3, 3, 64, 64) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(model.decode(z), torch.sigmoid(model.decode_logits(z)))


def test_reparameterisation_uses_the_given_noise():
    mu, logvar = torch.randn(3, 8), torch.randn(3, 8)
    eps = torch.randn(3, 8)
    z = BetaVAE.reparameterize(mu, logvar, eps=eps)
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(BetaVAE.reparameterize(mu, logvar, g1), BetaVAE.reparameterize(mu, logvar, g2))
    # σ → 0 collapses z onto μ
    torch.testing.assert_close(BetaVAE.reparameterize(mu, torch.full_like(mu, -60.0)), mu)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 3, 32, 32), r"shape \(N, 3, 64, 64\)"),
    (torch.rand(3, 64, 64), r"shape \(N, 3, 64, 64\)"),
    (torch.rand(2, 64, 64, 3), r"shape \(N, 3, 64, 64\)"),
    (torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), "float images"),
    (torch.rand(2, 3, 64, 64) * 255, r"in \[0, 1\]"),
    (torch.full((1, 3, 64, 64), float("nan")), "NaN"),
])
def test_bad_images_give_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().encode(bad)


def test_bad_latents_give_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"latents of shape \(N, 8\)"):
        model.decode(torch.zeros(2, 128))
    with pytest.raises(ValueError, match=r"latents of shape \(N, 8\)"):
        model.decode(torch.zeros(8))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        VAEConfig(image_size=60)
    with pytest.raises(ValueError, match="latent_dim"):
        VAEConfig(latent_dim=0)
    with pytest.raises(ValueError, match="norm_groups"):
        VAEConfig(channels=(8, 12, 16, 16))


def test_a_few_adam_steps_lower_the_loss():
    model = tiny_model()
    x = images(8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    eps = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))

    def loss():
        logits, mu, logvar, _ = model(x, eps=eps)
        return beta_vae_loss(logits, x, mu, logvar, beta=4.0)["loss"]

    first = loss().item()
    for _ in range(15):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < first - 50  # nats per image; random 64×64×3 images start ~8,600
