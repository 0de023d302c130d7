"""An auxiliary attribute loss for CLIP training (``train clip --attribute-weight W``).

Captions name up to 18 attributes of a face, and a hard negative flips one or two of them, so
each step gives the image tower a weak reason to keep any one small detail: a mustache is
≈ 10 % of the faces and one flip in nine of those that flip at all. A linear head on the image
embedding, fitted to the same attribute labels the captions are written from, gives that reason
on every face in every step:

    L = L_contrastive + W · BCE(head(√E · f_img), y),   y ∈ {0, 1}^A

The head is training-only: it is not part of the shipped model, which keeps open_clip's layout,
and the zero-shot check still compares the image with two prompts, never with the head.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class AttributeHead(nn.Module):
    """Logits of A binary attributes from a normalised image embedding.

    The embedding (B, E) has unit norm; scaled by √E its coordinates have unit variance, so a
    freshly initialised linear layer's logits, and its gradient into the tower, start at a
    useful size."""

    def __init__(self, embed_dim: int, names: tuple[str, ...]):
        super().__init__()
        self.names = names
        self.linear = nn.Linear(embed_dim, len(names))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, E) normalised → (B, A) logits."""
        return self.linear(image_features * image_features.shape[1] ** 0.5)


def attribute_matrix(attributes: dict[str, np.ndarray], names: tuple[str, ...]) -> torch.Tensor:
    """(N, A) float 0/1 labels, columns in the order of `names`."""
    if not names:
        raise ValueError("--attribute-weight needs a dataset with attribute labels")
    return torch.as_tensor(np.stack([np.asarray(attributes[n]) for n in names], axis=1),
                           dtype=torch.float32)


def attribute_loss(head: AttributeHead, image_features: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the batch and the attributes: (B, E), (B, A) → scalar."""
    return F.binary_cross_entropy_with_logits(head(image_features.float()), labels)
