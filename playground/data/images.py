"""Every uint8 ↔ float conversion of face images, written once.

The app, the datasets and PIL speak uint8 (N, 64, 64, 3); the models speak float (N, 3, 64, 64)
in [0, 1]. `images_to_tensor` and `tensor_to_images` go between the two.
"""
from __future__ import annotations

import numpy as np
import torch

IMAGE_SIZE = 64  # every face in the playground is 64×64


def images_to_tensor(images) -> torch.Tensor:
    """uint8 (N, 64, 64, 3) or float (N, 64, 64, 3) in [0, 1] → float32 (N, 3, 64, 64) in [0, 1].

    A float torch tensor already shaped (N, 3, 64, 64) passes through (as float32).
    """
    if isinstance(images, torch.Tensor):
        if images.dim() == 4 and images.shape[1] == 3 and images.is_floating_point():
            return images.float()
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 3:
        raise ValueError(f"expected a batch of images (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), got "
                         f"one image {arr.shape}: add a batch axis (images[None])")
    if arr.ndim != 4 or arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"expected images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), "
                         f"got {arr.shape}")
    if arr.dtype == np.uint8:
        x = torch.from_numpy(np.array(arr, copy=True)).float().div_(255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1 or np.isnan(arr).any()):
            raise ValueError("float images must lie in [0, 1] (uint8 images in 0..255)")
        x = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    else:
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {arr.dtype}")
    return x.permute(0, 3, 1, 2).contiguous()  # (N, 3, 64, 64)


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [0, 1] → uint8 (N, H, W, 3) (clamped, rounded)."""
    return (x.detach().float().clamp(0, 1).mul(255).add_(0.5).to(torch.uint8)
            .permute(0, 2, 3, 1).cpu().numpy())
