"""Loss terms of the (β-)VAE, as small free functions, all in nats.

The negative ELBO of one image x is

    −ELBO(x) = E_q(z|x)[−log p(x | z)] + KL(q(z | x) ‖ p(z)),

with a Bernoulli decoder p(x | z) (pixel intensities in [0, 1] used as soft targets) and the
prior p(z) = N(0, I). The β-VAE (Higgins et al. 2017) only multiplies the KL term by β:
β = 1 is the plain VAE, β > 1 pushes q(z | x) towards the prior and the latent towards
independent factors, at the cost of blurrier reconstructions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reconstruction term −log p(x | z) of a Bernoulli decoder, in nats per image.

    Args:
        logits: decoder output (N, C, H, W), before the sigmoid.
        x: target images (N, C, H, W) in [0, 1].
    Returns:
        scalar: binary cross-entropy summed over pixels and channels, averaged over the batch.
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and images {tuple(x.shape)} differ in shape")
    n = max(x.shape[0], 1)
    return F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="sum") / n


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) for every sample and latent dimension, in nats.

    Analytic form: ½ (μ² + σ² − 1 − log σ²).

    Args:
        mu, logvar: (N, D) posterior means and log-variances.
    Returns:
        (N, D) non-negative KL per dimension (sum over D for the KL of the whole latent).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ in shape")
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def beta_vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
                  logvar: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """β-VAE objective: recon + β·KL, each summed per image and averaged over the batch.

    Returns:
        dict of scalars: ``loss`` (what to minimise), ``recon`` (BCE, nats per image),
        ``kl`` (KL of the whole latent, nats per image, *not* multiplied by β).
    """
    recon = bce_loss(logits, x)
    kl = kl_normal(mu, logvar).sum(dim=1).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}
