"""A convolutional stem beside the ViT's patch embedding: the image tower's eye for details
smaller than a patch.

The playground's CLIP cuts a 64×64 face into 8×8 patches and embeds each with one linear map.
A mustache (a band two pixels tall above the lip), a goatee, narrowed eyes or an arched brow
sit inside one or two patches, and a linear probe on the tower's embeddings finds them near
chance (ROC AUC 0.5–0.6) where a small CNN judge reads the small details on 96 % of faces.
Convolutions before a ViT make it learn such local features sooner (Xiao et al. 2021, "Early
convolutions help transformers see better"): `PatchEmbedWithDetailStem` adds a strided CNN's
output to every patch token, so the tokens carry what a few 3×3 filters saw at full
resolution.

Its last layer starts at zero: a stem added to a trained CLIP leaves every image embedding as
it was, and training decides what it adds. The patch embedding keeps its state_dict name
(``clip.visual.conv1.weight``), so a CLIP without a stem warm-starts into one with.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def check_stem_channels(channels: tuple[int, ...], patch_size: int) -> None:
    """One stride-2 convolution per halving from the image to the patch grid, after one
    full-resolution convolution: len(channels) = log2(patch_size) + 1."""
    if not channels:
        return
    halvings = math.log2(patch_size)
    if not halvings.is_integer() or len(channels) != int(halvings) + 1:
        raise ValueError(f"vision_stem needs log2(patch_size) + 1 = {halvings + 1:g} channel "
                         f"counts for patch_size {patch_size} (a power of 2), got {channels}")
    if min(channels) < 1:
        raise ValueError(f"vision_stem channel counts must be >= 1, got {channels}")


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3×3 conv, GroupNorm, GELU: (N, c_in, H, W) → (N, c_out, H / stride, W / stride)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                         nn.GroupNorm(math.gcd(8, c_out), c_out), nn.GELU())


class PatchEmbedWithDetailStem(nn.Conv2d):
    """The ViT's patch embedding (a Conv2d with kernel = stride = patch, no bias) plus a CNN:
    (N, 3, H, W) → (N, width, H / patch, W / patch) = patches(x) + out(stem(x)).

    channels: (c0, c1, …, ck), k = log2(patch): c0 at full resolution, then each halves it.
    """

    def __init__(self, patch: nn.Conv2d, channels: tuple[int, ...]):
        width, in_channels, size = patch.out_channels, patch.in_channels, patch.kernel_size[0]
        if patch.bias is not None or patch.stride != patch.kernel_size:
            raise ValueError("expected a ViT patch embedding: kernel = stride, no bias")
        check_stem_channels(channels, size)
        super().__init__(in_channels, width, kernel_size=size, stride=size, bias=False)
        with torch.no_grad():
            self.weight.copy_(patch.weight)
        blocks = [_conv_block(in_channels, channels[0], 1)]
        blocks += [_conv_block(a, b, 2) for a, b in zip(channels, channels[1:])]
        self.stem = nn.Sequential(*blocks)
        self.out = nn.Conv2d(channels[-1], width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.out(self.stem(x))
