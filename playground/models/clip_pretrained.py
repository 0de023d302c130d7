"""A real pretrained open_clip model behind `TextImageCLIP`'s interface.

`load_pretrained_clip` loads one by name where its weights can be had (e.g. on a machine with
internet) and fails with one clear error offline; the playground's own CLIP
(`playground.models.clip`) is what ships, since pretrained weights cannot be downloaded here.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from playground.models.clip import TextImageCLIP
from playground.models.clip_tokens import TokenizerMixin


class PretrainedCLIPAdapter(TokenizerMixin, nn.Module):
    """A pretrained open_clip model behind `TextImageCLIP`'s interface (no known-token list:
    `unknown_words` returns nothing). Images are resized from 64×64 to the model's size."""

    def __init__(self, model: nn.Module, image_mean: Sequence[float], image_std: Sequence[float],
                 image_size: int, context_length: int, known_tokens: frozenset[int] = frozenset()):
        super().__init__()
        self.clip = model
        self.image_size = int(image_size)
        self.context_length = int(context_length)
        self.known_tokens = frozenset(known_tokens)
        self.register_buffer("image_mean", torch.tensor(list(image_mean)).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("image_std", torch.tensor(list(image_std)).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def text_width(self) -> int:
        return int(self.clip.ln_final.normalized_shape[0])

    _as_tokens = TextImageCLIP._as_tokens
    trim_tokens = staticmethod(TextImageCLIP.trim_tokens)
    encode_text_tokens = TextImageCLIP.encode_text_tokens
    encode_text = TextImageCLIP.encode_text

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] → embeddings (B, E)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        x = images.to(self.image_mean.device).float()
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic",
                              align_corners=False).clamp(0, 1)
        return self.clip.encode_image((x - self.image_mean) / self.image_std, normalize=normalize)


class PretrainedUnavailableError(RuntimeError):
    """A pretrained open_clip model's weights could not be loaded (e.g. offline)."""


def load_pretrained_clip(model_name: str, pretrained: str, device: str | torch.device = "cpu",
                         cache_dir: str | None = None) -> PretrainedCLIPAdapter:
    """A pretrained open_clip model (e.g. ``("ViT-B-32", "laion2b_s34b_b79k")``) with the
    `TextImageCLIP` interface.

    Raises:
        ValueError: unknown model name or pretrained tag.
        PretrainedUnavailableError: the weights could not be downloaded or read (offline,
            blocked hub, corrupt cache) — with what to do about it.
    """
    import open_clip

    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise ValueError(f"open_clip has no pretrained weights {pretrained!r} for {model_name}; "
                         f"known: {', '.join(tags) or 'none'}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device, cache_dir=cache_dir)
    except Exception as e:  # network errors come in many types (requests, hf_hub, OSError …)
        raise PretrainedUnavailableError(
            f"could not load the pretrained open_clip model {model_name} ({pretrained}): "
            f"{type(e).__name__}: {e}. Its weights are downloaded from the internet on first "
            "use; this machine seems to be offline. Use the playground's own CLIP "
            "(trained/clip, or `python -m playground.train clip`) or copy the weights into "
            "the open_clip cache folder (cache_dir).") from e
    model.eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
    std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
    return PretrainedCLIPAdapter(model, mean, std, size, model.context_length).to(device)
