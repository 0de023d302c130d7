"""Exponential moving average of a model's weights: what the U-Net trainer ships, and the CLIP
trainer with ``--ema-decay``."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Exponential moving average of a model's weights (Polyak averaging), with warm-up.

    After each optimizer step, `update` sets every parameter of the copy to
    ``d·ema + (1−d)·θ`` with ``d = min(decay, (1 + n) / (10 + n))`` (n = updates before this
    one), so early averages are not dominated by the random initialisation; buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.num_updates = 0

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1.0 - d)  # e + (1−d)(p − e) = d·e + (1−d)·p
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
        self.num_updates += 1

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume it exactly (for the train state's extra tensors)."""
        out = {f"ema.{k}": v for k, v in self.model.state_dict().items()}
        out["ema_num_updates"] = torch.tensor([self.num_updates], dtype=torch.int64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "ema_num_updates" not in tensors:
            raise ValueError("the checkpoint has no EMA weights: it was not written by this trainer")
        state = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
        self.model.load_state_dict(state, strict=True)
        self.num_updates = int(tensors["ema_num_updates"].item())
