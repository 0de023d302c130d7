"""The U-Net's training data in memory: scaled autoencoder latents (or uint8 pixels), encoded
once and cached on disk by the autoencoder's weights and the images, so a new run, an A/B arm
or a warm start does not encode 60,000 faces again."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class InMemoryBatches:
    """A training source for `TrainLoop.run` over one in-memory tensor (N, C, H, W): latents
    (float, yielded as they are) or uint8 images (yielded as float in [-1, 1])."""

    def __init__(self, data: torch.Tensor, device: torch.device):
        self.data = data.to(device) if device.type == "cuda" else data
        self.device = device

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.data[idx.to(self.data.device)].to(self.device)
        return x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x

    def iterate(self, index_batches):
        for idx in index_batches:
            yield self.batch(idx)


@torch.no_grad()
def encode_images(autoencoder, images_nhwc: np.ndarray, device: torch.device,
                  batch_size: int = 256) -> torch.Tensor:
    """Scaled latents (N, C, h, w) float32 on the CPU: ``autoencoder.encode`` (posterior mean)
    of uint8 images (N, 64, 64, 3), in fp32."""
    images = torch.from_numpy(np.asarray(images_nhwc)).permute(0, 3, 1, 2)
    out = []
    for chunk in torch.split(images, batch_size):
        x = chunk.to(device).float().div_(255)
        out.append(autoencoder.encode(x).float().cpu())
    return torch.cat(out).contiguous()  # one layout, whether encoded now or read from the cache


def latents_key(autoencoder: nn.Module, images_nhwc: np.ndarray) -> str:
    """SHA-256 of the autoencoder's weights and of the images: names a latent cache file, so
    new weights or other images never reuse stale latents."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(autoencoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(np.ascontiguousarray(images_nhwc).tobytes())
    return digest.hexdigest()


def cached_latents(autoencoder, images_nhwc: np.ndarray, device: torch.device,
                   cache: Path | None) -> tuple[torch.Tensor, bool]:
    """`encode_images`, read from / written to ``cache/latents-<key>.safetensors`` when `cache`
    is a folder. Returns (latents, whether they came from the cache)."""
    if cache is None:
        return encode_images(autoencoder, images_nhwc, device), False
    from playground.store.files import read_safetensors, save_safetensors

    path = Path(cache) / f"latents-{latents_key(autoencoder, images_nhwc)[:32]}.safetensors"
    if path.is_file():
        try:
            return read_safetensors(path)[0]["latents"], True
        except (ValueError, OSError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache is recomputed
    latents = encode_images(autoencoder, images_nhwc, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(path, {"latents": latents.contiguous()})
    return latents, False
