"""The judge: a small supervised CNN that reads the SynthFaces factors back from a face.

It scores generated faces in two ways:

- **FD-judge** — the Fréchet distance between Gaussians fitted to its penultimate features of
  two image sets (`features`, `fd_judge`). It is the FID recipe with this network in place of
  Inception, so its numbers are *not* FID and are only comparable with other FD-judge numbers
  from the same judge.
- **attribute accuracy** — `predict_attributes` turns its factor predictions into the 18
  CelebA-named attributes, e.g. to check that "a smiling man with glasses" came out smiling
  and wearing glasses.

Heads on a shared trunk (conv blocks → global average pool → a `feature_dim` layer):

- continuous factor f ∈ [lo, hi]: a Gaussian N(μ_f, σ_f²) over f rescaled to [−1, 1]
  (μ trained by squared error, log σ² by the Gaussian NLL of the detached residual), so
  P(smile > 0) = Φ((μ − t) / σ) is a calibrated probability;
- categorical factor: a softmax over its categories.

Attribute probabilities then follow the rules of
`playground.data.synthfaces.attributes_from_factors` (e.g. P(Black_Hair) = P(black) · P(not
bald), the factors being independent by construction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from playground.data.synthfaces import (
    ATTRIBUTE_NAMES,
    ATTRIBUTE_THRESHOLDS,
    CATEGORICAL_FACTORS,
    CONTINUOUS_FACTORS,
)
from playground.evaluation.frechet import frechet_distance
from playground.models.checks import check_images


def _default_continuous() -> tuple[tuple[str, float, float], ...]:
    return tuple((name, float(lo), float(hi)) for name, (lo, hi) in CONTINUOUS_FACTORS.items())


def _default_categorical() -> tuple[tuple[str, int], ...]:
    return tuple((name, len(cats)) for name, cats in CATEGORICAL_FACTORS.items())


@dataclass
class JudgeConfig:
    """Architecture of a `Judge` and the factors it predicts; saved as ``config.json``."""

    kind: ClassVar[str] = "judge"  # registry key in config.json (not a field)

    channels: tuple[int, ...] = (32, 64, 128, 256)  # one stride-2 block per entry: 64 → 4
    feature_dim: int = 128  # size of the penultimate features used by FD-judge
    image_size: int = 64  # input height = width
    in_channels: int = 3  # RGB
    norm_groups: int = 8  # GroupNorm groups
    # (name, low, high) of each continuous factor (the SynthFaces ones by default)
    continuous: tuple[tuple[str, float, float], ...] = field(default_factory=_default_continuous)
    # (name, number of categories) of each categorical factor
    categorical: tuple[tuple[str, int], ...] = field(default_factory=_default_categorical)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.continuous = tuple((str(n), float(lo), float(hi)) for n, lo, hi in self.continuous)
        self.categorical = tuple((str(n), int(k)) for n, k in self.categorical)
        if not self.channels or any(c < 1 or c % self.norm_groups for c in self.channels):
            raise ValueError(f"channels {self.channels} must be non-empty positive multiples of "
                             f"norm_groups={self.norm_groups}")
        if self.image_size % 2 ** len(self.channels):
            raise ValueError(f"image_size {self.image_size} is not divisible by "
                             f"2**{len(self.channels)}")
        if self.feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {self.feature_dim}")
        if not self.continuous and not self.categorical:
            raise ValueError("the judge needs at least one factor to predict")
        for name, lo, hi in self.continuous:
            if not hi > lo:
                raise ValueError(f"continuous factor {name!r} needs low < high, got ({lo}, {hi})")
        for name, k in self.categorical:
            if k < 2:
                raise ValueError(f"categorical factor {name!r} needs >= 2 categories, got {k}")

    @property
    def continuous_names(self) -> list[str]:
        return [name for name, _, _ in self.continuous]

    @property
    def categorical_names(self) -> list[str]:
        return [name for name, _ in self.categorical]


def _block(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    """Stride-2 conv then a 3×3 conv: (N, c_in, H, W) → (N, c_out, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.GroupNorm(groups, c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.GroupNorm(groups, c_out), nn.SiLU(),
    )


class Judge(nn.Module):
    """Predicts SynthFaces factors from (N, 3, 64, 64) images in [0, 1]."""

    def __init__(self, config: JudgeConfig | None = None):
        super().__init__()
        self.config = config = config or JudgeConfig()
        c, g = config.channels, config.norm_groups
        widths = (config.in_channels, *c)
        self.trunk = nn.Sequential(*[_block(a, b, g) for a, b in zip(widths[:-1], widths[1:])])
        self.to_features = nn.Sequential(nn.Linear(c[-1], config.feature_dim), nn.SiLU())
        n_cont = len(config.continuous)
        # per continuous factor, in the [−1, 1] rescaled units: μ, and log σ² (the uncertainty
        # head reads detached features: it learns how sure the judge is without shaping them)
        self.continuous_head = nn.Linear(config.feature_dim, n_cont) if n_cont else None
        self.logvar_head = nn.Linear(config.feature_dim, n_cont) if n_cont else None
        self.categorical_heads = nn.ModuleDict(
            {name: nn.Linear(config.feature_dim, k) for name, k in config.categorical})

    # ----------------------------------------------------------------------------- units
    def normalize_factors(self, values: torch.Tensor) -> torch.Tensor:
        """Continuous factors (N, F) in their own ranges → [−1, 1]."""
        lo, hi = self._ranges(values)
        return (values - lo) / (hi - lo) * 2 - 1

    def denormalize_factors(self, values: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize_factors`: (N, F) in [−1, 1] units → the factors' ranges."""
        lo, hi = self._ranges(values)
        return (values + 1) / 2 * (hi - lo) + lo

    def _ranges(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.tensor([[lo, hi] for _, lo, hi in self.config.continuous],
                         dtype=like.dtype, device=like.device)
        return r[:, 0], r[:, 1]

    # ----------------------------------------------------------------------------- model
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features for FD-judge: images (N, 3, 64, 64) in [0, 1] → (N, feature_dim)."""
        check_images(x, self.config.in_channels, self.config.image_size)
        h = self.trunk(x * 2 - 1)  # (N, C, 4, 4)
        return self.to_features(h.mean(dim=(2, 3)))  # global average pool → (N, F)

    def heads(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs from features (N, F): ``"continuous_mean"`` and
        ``"continuous_logvar"`` (N, n_continuous) in [−1, 1] units, and one logits tensor
        (N, K) per categorical factor name."""
        out: dict[str, torch.Tensor] = {}
        if self.continuous_head is not None:
            out["continuous_mean"] = self.continuous_head(feats)
            out["continuous_logvar"] = self.logvar_head(feats.detach()).clamp(-16.0, 4.0)
        for name, head in self.categorical_heads.items():
            out[name] = head(feats)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """`heads` of `features`: the training path."""
        return self.heads(self.features(x))

    @torch.no_grad()
    def predict_factors(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Factor predictions in the factors' own units.

        Returns:
            continuous name → (N,) mean prediction; ``"<name>_std"`` → (N,) its predicted
            standard deviation; categorical name → (N, K) probabilities.
        """
        return self.factors_from_heads(self(x))

    def factors_from_heads(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`predict_factors` from already computed `heads` outputs (float32)."""
        result: dict[str, torch.Tensor] = {}
        if self.continuous_head is not None:
            mean = self.denormalize_factors(out["continuous_mean"].float())
            lo, hi = self._ranges(mean)
            std = torch.exp(0.5 * out["continuous_logvar"].float()) * (hi - lo) / 2
            for i, name in enumerate(self.config.continuous_names):
                result[name] = mean[:, i]
                result[f"{name}_std"] = std[:, i]
        for name in self.config.categorical_names:
            result[name] = out[name].float().softmax(dim=1)
        return result

    @torch.no_grad()
    def predict_attributes(self, x: torch.Tensor, hard: bool = False) -> dict[str, torch.Tensor]:
        """The 18 CelebA-named attributes of SynthFaces: name → (N,) probability (or 0/1
        with `hard`, thresholded at 0.5)."""
        probs = attribute_probabilities(self.predict_factors(x))
        if hard:
            return {name: (p > 0.5).to(torch.uint8) for name, p in probs.items()}
        return probs


def attribute_probabilities(factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Attribute probabilities from factor predictions (as returned by `predict_factors`).

    The probabilistic twin of `playground.data.synthfaces.attributes_from_factors`:
    a threshold attribute is P(f > t) = Φ((μ − t) / σ) (or P(f < t)); categorical ones are
    sums and products of category probabilities (the factors are independent).
    Returns:
        attribute name → (N,) float probabilities, in `ATTRIBUTE_NAMES` order.
    """
    probs: dict[str, torch.Tensor] = {}
    for name, (factor, op, t) in ATTRIBUTE_THRESHOLDS.items():
        mu, std = factors[factor], factors[f"{factor}_std"].clamp_min(1e-6)
        above = 0.5 * (1 + torch.erf((mu - t) / (std * math.sqrt(2))))
        probs[name] = above if op == ">" else 1 - above
    style, color, facial = factors["hair_style"], factors["hair_color"], factors["facial_hair"]
    not_bald = 1 - style[:, 0]
    probs["Bald"] = style[:, 0]
    probs["Bangs"] = style[:, 3]
    for i, name in enumerate(("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair")):
        probs[name] = color[:, i] * not_bald
    probs["Eyeglasses"] = factors["eyeglasses"][:, 1]
    probs["Wearing_Hat"] = factors["hat"][:, 1]
    probs["Wearing_Lipstick"] = factors["lipstick"][:, 1]
    probs["Mustache"] = facial[:, 1]
    probs["Goatee"] = facial[:, 2]
    probs["No_Beard"] = facial[:, 0]
    return {name: probs[name] for name in ATTRIBUTE_NAMES}


@torch.no_grad()
def judge_features(judge: Judge, images, batch_size: int = 256) -> np.ndarray:
    """Judge features of many images, in batches.

    Args:
        images: float tensor (N, 3, 64, 64) in [0, 1], or uint8 array/tensor (N, 64, 64, 3).
    Returns:
        float64 array (N, feature_dim).
    """
    device = next(judge.parameters()).device
    if isinstance(images, np.ndarray) or (isinstance(images, torch.Tensor)
                                         and images.dtype == torch.uint8):
        t = torch.as_tensor(np.asarray(images) if isinstance(images, np.ndarray) else images)
        if t.dim() != 4 or t.shape[-1] != judge.config.in_channels:
            raise ValueError(f"expected uint8 images (N, H, W, {judge.config.in_channels}), "
                             f"got {tuple(t.shape)}")
        chunks = (c.permute(0, 3, 1, 2).float().div(255) for c in t.split(batch_size))
    else:
        chunks = iter(images.split(batch_size))
    judge.eval()
    feats = [judge.features(c.to(device)).double().cpu() for c in chunks]
    if not feats:
        raise ValueError("no images given")
    return torch.cat(feats).numpy()


def fd_judge(judge: Judge, images_a, images_b, batch_size: int = 256) -> float:
    """FD-judge: the Fréchet distance between the judge features of two image sets.

    Not FID (a different network); compare it only with FD-judge numbers of the same judge,
    computed on sets of the same size (the estimate is biased upwards for small sets).
    """
    return frechet_distance(judge_features(judge, images_a, batch_size),
                            judge_features(judge, images_b, batch_size))
