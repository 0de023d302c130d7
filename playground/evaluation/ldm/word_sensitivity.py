"""``words`` → ``word_sensitivity``: how much the U-Net listens to each attribute's words.

For N test faces (their latents x_0), each with its caption c (seed 0) and, per attribute a,
the same caption with a flipped, c^a (`flip_one_attribute`: the rest of the phrasing stays):

    Δ_a = mean over faces, t and elements of  (ε − ε_θ(x_t, t, c^a))² − (ε − ε_θ(x_t, t, c))²

with one ε per face shared by every caption, at t = fraction · T for each of `fractions`.
Δ_a > 0: the words about a help the U-Net predict the noise, so guidance has something to
amplify; Δ_a ≈ 0: the U-Net does not read them, and no guidance scale will draw a. Δ_∅ (the
empty caption instead of c) says what the whole caption is worth. No sampling, no judge: a
few hundred U-Net calls, about a minute on one core.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from playground.data.captions import captions_for_dataset
from playground.training.trainers.clip_captions import NEGATIVE_POOLS, flip_one_attribute


@torch.no_grad()
def word_sensitivity(pipeline, faces: int = 256, fractions: Sequence[float] = (0.2, 0.5, 0.8),
                     attributes: Sequence[str] = NEGATIVE_POOLS["all"], batch_size: int = 64,
                     seed: int = 0) -> dict:
    """Δ_∅ and Δ_a per attribute (module docstring) on the first `faces` SynthFaces test faces.

    Returns ``{"word_sensitivity": {"n", "timesteps", "empty", "per_attribute": {a: Δ_a},
    "per_timestep": {a: [Δ_a at each t]}, "empty_per_timestep"}}``.
    """
    from playground.data.synthfaces import SynthFacesDataset

    data = SynthFacesDataset("test", n=faces)
    attrs = {k: np.asarray(v) for k, v in data.attributes.items()}
    factors = {k: np.asarray(v) for k, v in data.factors.items()}
    names = [a for a in attributes if a in attrs]
    n = len(data.images)
    images = torch.from_numpy(np.asarray(data.images)).permute(0, 3, 1, 2).float() / 255
    x0 = torch.cat([pipeline.encode(chunk) for chunk in images.split(batch_size)])
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=g).to(x0.device)
    T = pipeline.num_timesteps
    timesteps = [min(T - 1, int(f * T)) for f in fractions]
    denoiser = pipeline.unet_denoiser()

    def errors(captions: list[str]) -> list[float]:
        """Mean squared ε error per timestep for these captions of the N faces."""
        out = []
        for t in timesteps:
            tt = torch.full((n,), t, dtype=torch.long, device=x0.device)
            x_t = pipeline.schedule.q_sample(x0, tt, eps)
            total = 0.0
            for sl in torch.arange(n).split(batch_size):
                cond = pipeline.encode_prompts([captions[i] for i in sl.tolist()])
                pred = denoiser(x_t[sl], tt[sl], cond).float()
                total += (pred - eps[sl]).pow(2).sum().item()
            out.append(total / eps.numel())
        return out

    true = errors(captions_for_dataset(attrs, factors, seed=0))
    empty = [e - b for e, b in zip(errors([""] * n), true)]
    per_t = {}
    for name in names:
        flipped = flip_one_attribute(attrs, [name], choice=np.zeros(n, dtype=int))
        per_t[name] = [e - b for e, b in zip(errors(captions_for_dataset(flipped, factors, seed=0)),
                                             true)]
    return {"word_sensitivity": {
        "n": n, "timesteps": timesteps, "seed": seed,
        "empty": float(np.mean(empty)), "empty_per_timestep": empty,
        "per_attribute": {a: float(np.mean(v)) for a, v in per_t.items()},
        "per_timestep": per_t,
    }}
