"""Input checks shared by the image models (β-VAE, autoencoder, judge)."""
from __future__ import annotations

import torch


def check_images(x: torch.Tensor, channels: int = 3, size: int = 64) -> None:
    """Raise ValueError unless `x` is a float tensor (N, channels, size, size) in [0, 1]."""
    shape = (channels, size, size)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"expected images of shape (N, {', '.join(map(str, shape))}), "
                         f"got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {x.dtype} "
                         "(divide uint8 images by 255)")
    if x.numel():
        lo, hi = torch.aminmax(x.detach())
        if torch.isnan(lo) or torch.isnan(hi):
            raise ValueError("images contain NaN")
        if lo < 0 or hi > 1:
            raise ValueError(f"expected images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
