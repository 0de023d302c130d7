"""The CLIP trainer's losses: contrastive (with hard negatives) and an auxiliary attribute loss.

`contrastive_loss` is CLIP's symmetric InfoNCE; hard-negative captions (a caption with one
attribute flipped) add columns on the image side, so that the details decide the match.

``--attribute-weight W`` adds `attribute_loss`. Captions name up to 18 attributes of a face,
and a hard negative flips one to four of them, so each step gives the image tower a weak
reason to keep any one small detail. A linear head on the image embedding, fitted to the same
attribute labels the captions are written from, gives that reason on every face in every step:

    L = L_contrastive + W · BCE(head(√E · f_img), y),   y ∈ {0, 1}^A

The head is training-only: it is not part of the shipped model, which keeps open_clip's layout,
and the zero-shot check still compares the image with two prompts, never with the head.

``--factor-weight V`` adds `factor_loss` (SynthFaces only): a second head regresses the
continuous factors the renderer drew the face from, scaled to [-1, 1] (`factor_matrix`):

    L += V · MSE(head_f(√E · f_img), u),   u ∈ [-1, 1]^F

A label like Arched_Eyebrows is a threshold on one of them (brow > 0.6), so the labels say
nothing about how far a face is from the line; the factor says it on every face.

Both heads average one loss per target (attribute or factor). ``--head-balance loss`` weights
each target by its share of the batch's loss instead (`balanced_mean`), so the head's gradient
goes to the details the tower has not learned yet, rather than equally to forty targets of
which thirty-odd are already read.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from playground.data.synthfaces.factors import CONTINUOUS_FACTORS


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor,
                     negative_text_features: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE, with optional hard-negative captions on the image side.

    image_features, text_features: (B, E) normalised pairs; negative_text_features: (B', E)
    extra captions no image matches. With s = logit_scale:
        L = ½ [CE(s · img · [txt; neg]ᵀ, diag) + CE(s · txt · imgᵀ, diag)]
    Without negatives this is open_clip's ClipLoss (one process).
    """
    labels = torch.arange(image_features.shape[0], device=image_features.device)
    candidates = (text_features if negative_text_features is None
                  else torch.cat([text_features, negative_text_features]))
    per_image = logit_scale * image_features @ candidates.T  # (B, B + B')
    per_text = logit_scale * text_features @ image_features.T  # (B, B)
    return 0.5 * (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels))


class AttributeHead(nn.Module):
    """A linear read-out of A targets (attribute logits, or factors) from a normalised image
    embedding.

    The embedding (B, E) has unit norm; scaled by √E its coordinates have unit variance, so a
    freshly initialised linear layer's logits, and its gradient into the tower, start at a
    useful size."""

    def __init__(self, embed_dim: int, names: tuple[str, ...]):
        super().__init__()
        self.names = names
        self.linear = nn.Linear(embed_dim, len(names))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, E) normalised → (B, A)."""
        return self.linear(image_features * image_features.shape[1] ** 0.5)


def attribute_matrix(attributes: dict[str, np.ndarray], names: tuple[str, ...]) -> torch.Tensor:
    """(N, A) float 0/1 labels, columns in the order of `names`."""
    if not names:
        raise ValueError("--attribute-weight needs a dataset with attribute labels")
    return torch.as_tensor(np.stack([np.asarray(attributes[n]) for n in names], axis=1),
                           dtype=torch.float32)


HEAD_BALANCES = ("mean", "loss")


def balanced_mean(per_target: torch.Tensor, balance: str = "mean") -> torch.Tensor:
    """Combine (T,) per-target losses into one scalar.

    "mean": (1/T) Σ_t L_t. "loss": Σ_t w_t L_t / T with w_t = T · L_t / Σ_s L_s held constant
    (no gradient through the weights): each target's gradient is scaled by its share of the
    loss, so a target still at chance gets many times the weight of a learned one, and the
    weights even out as the targets do. The value equals Σ L_t² / Σ L_t."""
    if balance == "mean":
        return per_target.mean()
    if balance == "loss":
        weights = per_target.detach() / per_target.detach().mean().clamp_min(1e-12)
        return (weights * per_target).mean()
    raise ValueError(f"head balance must be one of {HEAD_BALANCES}, got {balance!r}")


def attribute_loss(head: AttributeHead, image_features: torch.Tensor,
                   labels: torch.Tensor, balance: str = "mean") -> torch.Tensor:
    """BCE per attribute (mean over the batch), combined by `balanced_mean`:
    (B, E), (B, A) → scalar."""
    per_pair = F.binary_cross_entropy_with_logits(head(image_features.float()), labels,
                                                  reduction="none")
    return balanced_mean(per_pair.mean(0), balance)


# what a face looks like: every continuous factor but the background's hue
FACE_FACTORS = tuple(n for n in CONTINUOUS_FACTORS if n != "background")


def factor_matrix(factors: Mapping[str, np.ndarray]) -> tuple[tuple[str, ...], torch.Tensor]:
    """The `FACE_FACTORS` of a dataset, each scaled from its drawing range to [-1, 1]:
    (names, (N, F) float)."""
    names = tuple(n for n in FACE_FACTORS if n in factors)
    if not names:
        raise ValueError("--factor-weight needs a dataset with SynthFaces' factors "
                         "(CelebA has none)")
    columns = [(np.asarray(factors[n], dtype=np.float64) - CONTINUOUS_FACTORS[n][0])
               / (CONTINUOUS_FACTORS[n][1] - CONTINUOUS_FACTORS[n][0]) * 2 - 1 for n in names]
    return names, torch.as_tensor(np.stack(columns, axis=1), dtype=torch.float32)


def factor_loss(head: AttributeHead, image_features: torch.Tensor,
                targets: torch.Tensor, balance: str = "mean") -> torch.Tensor:
    """Squared error per factor (mean over the batch), combined by `balanced_mean`:
    (B, E), (B, F) → scalar."""
    per_pair = F.mse_loss(head(image_features.float()), targets, reduction="none")
    return balanced_mean(per_pair.mean(0), balance)
