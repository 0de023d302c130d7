"""Residual blocks shared by the models that grow a deeper decoder from a trained one.

A block added to a trained network starts as the identity (`identity_at_start`), so a warm
start into the deeper architecture draws exactly what the shallower one drew, and training
decides what the new depth adds.
"""
from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))) at constant width and resolution (N, C, H, W)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def identity_at_start(block: ResBlock) -> ResBlock:
    """Zero the block's last convolution: x + 0 until training moves it."""
    last = block.block[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return block


def identity_stack(channels: int, groups: int, count: int) -> nn.Sequential:
    """`count` residual blocks at one width, each starting as the identity (an empty
    Sequential, itself the identity, when count is 0)."""
    return nn.Sequential(*(identity_at_start(ResBlock(channels, groups)) for _ in range(count)))
