"""The ε-prediction U-Net of latent diffusion, conditioned on text tokens by cross-attention.

    eps = unet(x_t, t, context, context_mask)

x_t (B, C, H, W) is the noised sample (a 4×16×16 latent by default; 3×64×64 pixels work too),
t (B,) the integer timesteps, context (B, L, D) the text encoder's per-token states and
context_mask (B, L) bool (True = a real token, False = padding that must be ignored).

Layout (Ronneberger et al. 2015; Ho et al. 2020; Rombach et al. 2022):

    t ─ sinusoidal embedding ─ MLP ─────────────────────────── temb (added in every ResBlock)
    x_t ─ conv_in ─ [level 0: ResBlocks (+attn)] ─ down ─ [level 1 ...] ─ ... ─ mid ─┐
                          │ skip                           │ skip                     │
    eps ─ conv_out ─ [level 0: concat, ResBlocks (+attn)] ─ up ─ [level 1 ...] ─ ... ─┘

At every level listed in ``attention_levels`` (the low resolutions) each ResBlock is followed
by a `TransformerBlock`: self-attention over the H·W positions, then cross-attention (queries
from the latent positions, keys/values from the text tokens, padding masked out), then a
feed-forward layer, each residual. The middle block has one too. All attention goes through
``torch.nn.functional.scaled_dot_product_attention``.

The unconditional prediction ε(x_t, ∅) is this same network given the encoded empty prompt
"" (the trainer replaces a share `cond_drop` of the captions, 10–20 %, by ""), so
classifier-free guidance needs one network. ``context=None`` is accepted (cross-attention is
then skipped) but is not what the trained model expects.

`UNetConfig` also records what a loader needs to rebuild the whole pipeline: the names of the
first-stage ``autoencoder`` and the ``text_encoder`` it was trained with, and the noise
``schedule`` (a `ScheduleConfig`), all in the model's config.json.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from playground.diffusion.schedule import ScheduleConfig

SPACES = ("latent", "pixel")


@dataclass
class UNetConfig:
    """Architecture of a `LatentUNet` plus the pipeline it belongs to; saved as config.json."""

    kind: ClassVar[str] = "unet"  # registry key in config.json (not a field)

    in_channels: int = 4  # channels of x_t: 4 for the 16×16×4 latent, 3 for RGB pixels
    sample_size: int = 16  # H = W of x_t (16 for the latent; 64 for pixels; 8 in tests)
    channels: tuple[int, ...] = (48, 96, 144)  # width per level (16, 8, 4 for a 16×16 input); ~107 img/s bf16 on 1 CPU thread
    num_res_blocks: int = 1  # ResBlocks per level on the way down (one more on the way up)
    attention_levels: tuple[int, ...] = (1, 2)  # level indices with self- and cross-attention (8×8 and 4×4)
    head_dim: int = 32  # channels per attention head (heads = width // head_dim, at least 1)
    context_dim: int = 128  # D of the text tokens (the CLIP text width; twice it with text_words)
    text_words: bool = False  # context = CLIP final states ‖ the words' input embeddings
    # (`TextImageCLIP.encode_text_tokens(words=True)`): the final states blur small details
    ff_mult: int = 2  # hidden width of the transformer feed-forward layer, times the level width
    norm_groups: int = 8  # GroupNorm groups (batch-independent, DDP-safe)
    time_embed_mult: int = 4  # time-embedding width = time_embed_mult · channels[0]
    dropout: float = 0.0  # dropout inside ResBlocks (none: the data set is large for this model)
    space: str = "latent"  # "latent" (x_t is an autoencoder latent) or "pixel" (images in [-1, 1])
    autoencoder: str = ""  # name (or folder) of the first-stage KLAutoencoder ("" in pixel space)
    text_encoder: str = ""  # name (or folder) of the TextImageCLIP whose tokens are the context
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # the forward process it was trained on

    def __post_init__(self):
        if isinstance(self.schedule, dict):  # from config.json
            self.schedule = ScheduleConfig(**self.schedule)
        if not isinstance(self.schedule, ScheduleConfig):
            raise ValueError(f"schedule must be a ScheduleConfig, got {type(self.schedule).__name__}")
        self.channels = tuple(int(c) for c in self.channels)
        self.attention_levels = tuple(int(i) for i in self.attention_levels)
        if not self.channels:
            raise ValueError("channels needs at least one level")
        if any(c < 1 or c % self.norm_groups for c in self.channels):
            raise ValueError(f"every width in {self.channels} must be a positive multiple of "
                             f"norm_groups={self.norm_groups}")
        levels = len(self.channels)
        if self.sample_size % (2 ** (levels - 1)):
            raise ValueError(f"sample_size={self.sample_size} must be divisible by "
                             f"2^{levels - 1} for {levels} levels")
        bad = [i for i in self.attention_levels if not 0 <= i < levels]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range 0..{levels - 1}")
        for name in ("in_channels", "head_dim", "context_dim", "ff_mult", "time_embed_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one x_t."""
        return (self.in_channels, self.sample_size, self.sample_size)

    def architecture(self) -> dict:
        """The fields that shape the network (not the pipeline names or the schedule)."""
        skip = {"space", "autoencoder", "text_encoder", "schedule"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


# =========================================================================== building blocks
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017; Ho et al. 2020).

    Args:
        t: (B,) timesteps (any numeric dtype).
    Returns:
        (B, dim) float32: [cos(t·ω_k), sin(t·ω_k)] with ω_k = max_period^(−k / (dim/2)).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                             device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv → (+ time embedding) → GroupNorm → SiLU → dropout → conv, plus a
    (1×1-projected) skip. (B, c_in, H, W), temb (B, T) → (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None].to(h.dtype)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


def _attention_backend(device: torch.device):
    """On the CPU, SDPA's plain "math" kernel: for these short sequences (≤ 64 positions at
    the attention levels of a 16×16 latent, ≤ 77 tokens) the CPU flash kernel's backward pass
    dominated a training step; with the math kernel a whole bf16 training step of the default
    U-Net ran 1.2–1.35× faster (1 thread, this project's CPU). Elsewhere, PyTorch's choice."""
    if device.type == "cpu":
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


class Attention(nn.Module):
    """Multi-head attention: queries from x (B, N, c); keys/values from `context` (B, L, D)
    (or from x itself when context is None: self-attention).

    `mask` (B, L) bool, True = attend. A row with no True entry attends to nothing: its output
    is zero (instead of the NaN that softmax over an empty set would give).
    """

    def __init__(self, dim: int, context_dim: int | None, head_dim: int):
        super().__init__()
        self.heads = max(1, dim // head_dim)
        kv_dim = context_dim if context_dim is not None else dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, c) → (B, heads, N, c / heads)
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        src = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(src)), self._split(self.to_v(src))
        attn_mask = None
        if mask is not None:
            has_any = mask.any(dim=1)  # (B,)
            safe = mask | ~has_any[:, None]  # avoid all -inf rows; their output is zeroed below
            attn_mask = safe[:, None, None, :]  # (B, 1, 1, L), broadcast over heads and queries
        with _attention_backend(q.device):
            out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype),
                                                 attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        out = self.to_out(out)
        if mask is not None:
            out = out * has_any[:, None, None].to(out.dtype)
        return out


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to the text, feed-forward (pre-LayerNorm, residual) on
    the H·W positions of a feature map: (B, c, H, W) → (B, c, H, W)."""

    def __init__(self, dim: int, context_dim: int, head_dim: int, groups: int, ff_mult: int):
        super().__init__()
        self.norm_in = nn.GroupNorm(groups, dim)
        self.proj_in = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, None, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, context_dim, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.proj_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj_out.weight)  # starts as the identity
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None,
                mask: torch.Tensor | None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm_in(x).flatten(2).transpose(1, 2))  # (B, H·W, c)
        tokens = tokens + self.self_attn(self.norm1(tokens))
        if context is not None:
            tokens = tokens + self.cross_attn(self.norm2(tokens), context, mask)
        tokens = tokens + self.ff(self.norm3(tokens))
        out = self.proj_out(tokens).transpose(1, 2).reshape(b, c, h, w)
        return x + out.to(x.dtype)


class Level(nn.Module):
    """A stack of ResBlocks, each followed by a TransformerBlock when `attention`."""

    def __init__(self, c_in: int, c_out: int, n: int, cfg: UNetConfig, temb_dim: int,
                 attention: bool):
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_out, temb_dim, cfg.norm_groups, cfg.dropout)
            for i in range(n))
        self.attn = nn.ModuleList(
            TransformerBlock(c_out, cfg.context_dim, cfg.head_dim, cfg.norm_groups, cfg.ff_mult)
            for _ in range(n)) if attention else None

    def forward(self, x, temb, context, mask):
        for i, block in enumerate(self.res):
            x = block(x, temb)
            if self.attn is not None:
                x = self.attn[i](x, context, mask)
        return x


# =========================================================================== the U-Net
class LatentUNet(nn.Module):
    """ε_θ(x_t, t, c): see the module docstring. ``LatentUNet(UNetConfig())`` has 4.87 M weights."""

    # weights that read the text context: a warm start onto a wider context (text_words) keeps
    # them and gives the new input columns zeros, so the model starts out as the one it loads
    widenable_inputs: ClassVar[tuple[str, ...]] = ("cross_attn.to_k.weight", "cross_attn.to_v.weight")

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        ch = cfg.channels
        c0 = ch[0]
        temb_dim = cfg.time_embed_mult * c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)
        attn = set(cfg.attention_levels)
        last = len(ch) - 1
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = c0
        for i, c in enumerate(ch):
            self.down.append(Level(c_prev, c, cfg.num_res_blocks, cfg, temb_dim, i in attn))
            if i < last:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            c_prev = c
        self.mid = Level(ch[-1], ch[-1], 2, cfg, temb_dim, attention=False)
        self.mid_attn = TransformerBlock(ch[-1], cfg.context_dim, cfg.head_dim, cfg.norm_groups,
                                         cfg.ff_mult)
        # up path, deepest level first: concat that level's skip, then num_res_blocks + 1 blocks
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        c_prev = ch[-1]
        for i in reversed(range(len(ch))):
            c = ch[i]
            self.up.append(Level(c_prev + c, c, cfg.num_res_blocks + 1, cfg, temb_dim, i in attn))
            if i > 0:
                self.upsample.append(nn.Conv2d(c, ch[i - 1], 3, padding=1))
            c_prev = ch[i - 1] if i > 0 else c
        self.norm_out = nn.GroupNorm(cfg.norm_groups, c0)
        self.conv_out = nn.Conv2d(c0, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # predicts ε = 0 at initialisation
        nn.init.zeros_(self.conv_out.bias)

    def _check(self, x_t, t, context, context_mask):
        cfg = self.config
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 4 or x_t.shape[1] != cfg.in_channels:
            got = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"expected x_t of shape (B, {cfg.in_channels}, H, W), got {got}")
        div = 2 ** (len(cfg.channels) - 1)
        if x_t.shape[2] % div or x_t.shape[3] % div:
            raise ValueError(f"x_t's H and W must be divisible by {div}, got {tuple(x_t.shape)}")
        if t.dim() != 1 or t.shape[0] != x_t.shape[0]:
            raise ValueError(f"expected t of shape ({x_t.shape[0]},), got {tuple(t.shape)}")
        if context is not None:
            if context.dim() != 3 or context.shape[0] != x_t.shape[0] or context.shape[2] != cfg.context_dim:
                raise ValueError(f"expected context of shape ({x_t.shape[0]}, L, "
                                 f"{cfg.context_dim}), got {tuple(context.shape)}")
            if context_mask is not None and (context_mask.dtype != torch.bool
                                             or tuple(context_mask.shape) != tuple(context.shape[:2])):
                raise ValueError(f"expected a bool context_mask of shape {tuple(context.shape[:2])}, "
                                 f"got {context_mask.dtype} {tuple(context_mask.shape)}")
        elif context_mask is not None:
            raise ValueError("context_mask given without context")

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise.

        Args:
            x_t: (B, C, H, W) noised sample.
            t: (B,) integer timesteps in [0, T) (a Python int or 0-d tensor is broadcast).
            context: (B, L, D) text-token states, or None (no cross-attention).
            context_mask: (B, L) bool, True = real token; None = attend to all L tokens.
        Returns:
            eps: (B, C, H, W), same dtype as x_t (float32 under bf16 autocast too).
        """
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            t = torch.full((x_t.shape[0],), int(t), device=x_t.device)
        self._check(x_t, t, context, context_mask)
        temb = self.time_mlp(timestep_embedding(t, self.config.channels[0]))
        h = self.conv_in(x_t)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, temb, context, context_mask)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid.res[0](h, temb)
        h = self.mid_attn(h, context, context_mask)
        h = self.mid.res[1](h, temb)
        for j, level in enumerate(self.up):
            h = level(torch.cat([h, skips.pop().to(h.dtype)], dim=1), temb, context, context_mask)
            if j < len(self.upsample):
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out.to(x_t.dtype)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
