"""A small CLIP for 64×64 faces, built from open_clip's own classes (model, tokenizer).

Latent diffusion conditions its U-Net on the *per-token* states of a frozen text encoder
(Rombach et al. 2022); this module trains its own, since pretrained CLIP weights cannot be
downloaded here. `TextImageCLIP` wraps an ``open_clip.model.CLIP`` (a ViT image tower and a
causal text transformer) with open_clip's BPE ``SimpleTokenizer``, and adds what the rest of
the playground needs:

- `tokenize` / `truncated` — token ids (B, L) and which prompts were cut at the context length
  (`playground.models.clip_tokens`, shared with the pretrained adapter);
- `encode_text_tokens` — the text transformer's output for every token, (B, L, D): the
  cross-attention context of the U-Net (Q from the latents, K/V from these);
- `text_mask` — (B, L) True for real tokens (start, words, end), False for padding;
- `encode_text` / `encode_image` — L2-normalised embeddings (B, E) in the shared space, for
  zero-shot attribute checks and the latent map's text search; with ``text_head_layers`` > 0,
  a `TextHead` reads the words beside the states before the text embedding is pooled; with
  ``vision_stem``, a CNN adds what it sees below the patch size to the patch tokens
  (`playground.models.clip_stem`);
- `unknown_words` — words of a prompt whose tokens never occurred in the training captions
  (the model has no idea what they mean).

`playground.models.clip_pretrained` puts a real pretrained open_clip model behind the same
interface, where its weights can be had.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from playground.models.checks import check_images
from playground.models.clip_stem import PatchEmbedWithDetailStem, check_stem_channels
from playground.models.clip_tokens import PAD_ID, TokenizerMixin

EMBEDDING_KEY = "clip.token_embedding.weight"  # (vocab_size, D) in the module
KNOWN_ROWS_KEY = "clip.token_embedding.known_rows"  # (K, D) in a saved file: known tokens only
# what `encode_text_tokens` reads: the per-token text states a U-Net is conditioned on (the
# pooled text projection, the image tower and the temperature are not among them)
TEXT_STATE_PREFIXES = ("clip.token_embedding.", "clip.positional_embedding", "clip.transformer.",
                       "clip.ln_final.")


VISION_POOLS = ("tok", "avg")  # open_clip's pool_type values the image tower may use


@dataclass
class CLIPConfig:
    """Architecture of a `TextImageCLIP`; saved as ``config.json``."""

    kind: ClassVar[str] = "clip"  # registry key in config.json (not a field)

    embed_dim: int = 128  # size of the shared image–text embedding
    image_size: int = 64  # input height = width
    patch_size: int = 8  # ViT patch side: 64 / 8 = 8×8 = 64 patches
    vision_width: int = 128  # ViT width
    vision_layers: int = 3  # ViT transformer blocks
    vision_head_width: int = 32  # ViT attention head size (heads = width / head_width)
    # the image embedding is read from the class token ("tok", CLIP's) or is the mean of the
    # patch tokens ("avg"), where a small detail's patches reach it without the class token
    # having to attend to them
    vision_pool: str = "tok"
    # channels of a CNN whose output is added to the patch embeddings (`clip_stem`), so the
    # tokens see details smaller than a patch: log2(patch_size) + 1 counts; empty = none
    vision_stem: tuple[int, ...] = field(default_factory=tuple)
    context_length: int = 77  # tokens per prompt, start and end tokens included (CLIP's 77)
    vocab_size: int = 49408  # open_clip's BPE vocabulary
    text_width: int = 128  # text transformer width = D of the per-token states
    text_heads: int = 4  # text attention heads
    text_layers: int = 4  # text transformer blocks
    # blocks of the `TextHead` that reads the per-token states *and* the words before pooling
    # (0 = open_clip's CLIP: the end token's state alone)
    text_head_layers: int = 0
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # per-channel normalisation of [0, 1] input
    image_std: tuple[float, ...] = (0.25, 0.25, 0.25)  # (about the SynthFaces pixel spread)
    # token ids seen in the training captions (filled by the trainer; empty = unknown)
    known_tokens: tuple[int, ...] = field(default_factory=tuple)
    # the known tokens whose per-token states a U-Net can have trained on, where the model
    # learned more words later with those states frozen (`freeze_text_states`); empty = all
    state_tokens: tuple[int, ...] = field(default_factory=tuple)

    @property
    def unet_tokens(self) -> tuple[int, ...]:
        """The tokens whose per-token states a U-Net conditioned on this model can have read."""
        return self.state_tokens or self.known_tokens

    def __post_init__(self):
        self.image_mean = tuple(float(v) for v in self.image_mean)
        self.image_std = tuple(float(v) for v in self.image_std)
        self.known_tokens = tuple(sorted({int(t) for t in self.known_tokens}))
        self.state_tokens = tuple(sorted({int(t) for t in self.state_tokens}))
        self.vision_stem = tuple(int(c) for c in self.vision_stem)
        if not set(self.state_tokens) <= set(self.known_tokens):
            raise ValueError("state_tokens must be among known_tokens")
        for name in ("embed_dim", "patch_size", "vision_width", "vision_layers",
                     "vision_head_width", "text_width", "text_heads", "text_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.text_head_layers < 0:
            raise ValueError(f"text_head_layers must be >= 0, got {self.text_head_layers}")
        if self.vision_pool not in VISION_POOLS:
            raise ValueError(f"vision_pool must be one of {VISION_POOLS}, got {self.vision_pool!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size "
                             f"{self.patch_size}")
        check_stem_channels(self.vision_stem, self.patch_size)
        if self.vision_width % self.vision_head_width:
            raise ValueError(f"vision_width {self.vision_width} is not a multiple of "
                             f"vision_head_width {self.vision_head_width}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} is not a multiple of text_heads "
                             f"{self.text_heads}")
        if self.context_length < 3:
            raise ValueError(f"context_length must be >= 3 (start, a word, end), got "
                             f"{self.context_length}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError("image_mean / image_std need 3 values, std > 0")


class TextHead(nn.Module):
    """Bidirectional attention over what a U-Net reads — each token's final state followed by
    its normalised word embedding, (B, L, 2D) — giving a correction (B, L, D) that is added to
    the states before the end token is pooled.

    Why: by the last layer of the causal text tower, a caption's small-detail words have faded
    into the sentence ("… wearing glasses" and "… not wearing glasses" pool to cosine 0.997), so
    a hard negative about glasses barely moves the logits and the image tower is never asked to
    keep them. The head sees the words themselves (as the U-Net does), and it sits *after* the
    states a U-Net is conditioned on, so it trains with those states frozen. Its output layer
    starts at zero: a head added to a trained CLIP leaves every embedding as it was."""

    def __init__(self, width: int, heads: int, layers: int):
        super().__init__()
        self.inp = nn.Linear(2 * width, width)
        block = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """context (B, L, 2D), mask (B, L) True for real tokens → (B, L, D); padding is never
        attended to, so a prompt's output does not depend on its batch's padding."""
        return self.out(self.blocks(self.inp(context), src_key_padding_mask=~mask))


class TextImageCLIP(TokenizerMixin, nn.Module):
    """open_clip's CLIP (ViT image tower + causal text transformer) for 64×64 faces."""

    # weights a warm start may find missing in an older model: they start as a no-op
    new_at_warm_start = ("text_head.", "clip.visual.conv1.stem.", "clip.visual.conv1.out.")

    def __init__(self, config: CLIPConfig | None = None):
        super().__init__()
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

        self.config = cfg = config or CLIPConfig()
        vision = CLIPVisionCfg(layers=cfg.vision_layers, width=cfg.vision_width,
                               head_width=cfg.vision_head_width, patch_size=cfg.patch_size,
                               image_size=cfg.image_size, pool_type=cfg.vision_pool)
        text = CLIPTextCfg(context_length=cfg.context_length, vocab_size=cfg.vocab_size,
                           width=cfg.text_width, heads=cfg.text_heads, layers=cfg.text_layers)
        self.clip = CLIP(embed_dim=cfg.embed_dim, vision_cfg=vision, text_cfg=text)
        if cfg.vision_stem:
            visual = self.clip.visual
            visual.conv1 = PatchEmbedWithDetailStem(visual.conv1, cfg.vision_stem)
        self.text_head = (TextHead(cfg.text_width, cfg.text_heads, cfg.text_head_layers)
                          if cfg.text_head_layers else None)
        self.register_buffer("image_mean", torch.tensor(cfg.image_mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("image_std", torch.tensor(cfg.image_std).view(1, 3, 1, 1),
                             persistent=False)

    # --------------------------------------------------------------- interface properties
    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def known_tokens(self) -> frozenset[int]:
        return frozenset(self.config.known_tokens)

    @property
    def state_tokens(self) -> frozenset[int]:
        return frozenset(self.config.state_tokens)

    @property
    def text_width(self) -> int:
        return self.config.text_width

    def _as_tokens(self, texts_or_tokens) -> torch.Tensor:
        if isinstance(texts_or_tokens, torch.Tensor):
            tokens = texts_or_tokens
        else:
            tokens = self.tokenize(texts_or_tokens)
        if tokens.dim() != 2 or not 1 <= tokens.shape[1] <= self.context_length:
            raise ValueError(f"expected tokens (B, L ≤ {self.context_length}), got "
                             f"{tuple(tokens.shape)}")
        return tokens.to(self.clip.token_embedding.weight.device)

    # --------------------------------------------------------------- text
    @staticmethod
    def trim_tokens(tokens: torch.Tensor) -> torch.Tensor:
        """Drop the padding columns after the longest prompt of the batch: (B, L) → (B, L').

        Exact for everything here: the text transformer is causal, so a token's state never
        depends on the padding after it, and the padding is masked out of cross-attention."""
        longest = int((tokens != PAD_ID).sum(dim=1).max().item()) if tokens.numel() else 1
        return tokens[:, :max(longest, 1)]

    def encode_text_tokens(self, tokens, words: bool = False) -> torch.Tensor:
        """Per-token text states: (B, L) ids (or a list of prompts) → (B, L, D) after the
        final LayerNorm (what the pooled embedding is read from, at the end token).
        L may be shorter than the context length (see `trim_tokens`).

        With `words`, each state is followed by its token's own input embedding, normalised
        to unit variance: (B, L, 2D). A contrastive text tower keeps only what tells its
        captions apart; the playground's CLIP lets the small details fade (at their
        positions, "glasses" and "a" have final states at cosine 0.97, input embeddings at
        0.04), so a U-Net that should draw them gets the words as well."""
        clip = self.clip
        tokens = self._as_tokens(tokens)
        length = tokens.shape[1]
        cast_dtype = clip.transformer.get_cast_dtype()
        embedded = clip.token_embedding(tokens).to(cast_dtype)  # (B, L, D)
        x = embedded + clip.positional_embedding[:length].to(cast_dtype)
        mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
        x = clip.transformer(x, attn_mask=mask)  # causal: token i sees tokens ≤ i
        states = clip.ln_final(x)
        if not words:
            return states
        # unit variance whatever the embeddings' scale (open_clip draws them with std 0.02)
        word = F.layer_norm(embedded.float(), embedded.shape[-1:], eps=1e-8).to(states.dtype)
        return torch.cat([states, word], dim=-1)

    def text_state_tensors(self) -> dict[str, torch.Tensor]:
        """The weights `encode_text_tokens` depends on, by state_dict name: two models with
        equal tensors here give a U-Net the same conditioning."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(TEXT_STATE_PREFIXES)}

    def freeze_text_states(self, new_tokens: Sequence[int] = ()) -> None:
        """Stop training the weights of `text_state_tensors` (the text projection stays
        trainable): the image tower then learns against text states that a shipped U-Net
        already conditions on.

        `new_tokens`: embedding rows that still train — words no U-Net caption had. The text
        tower is causal, so a prompt made of the other tokens keeps its states bit for bit;
        the other rows' gradient is zeroed (the embedding has no weight decay, so Adam leaves
        them exactly as they are)."""
        for name, param in self.named_parameters():
            if name.startswith(TEXT_STATE_PREFIXES):
                param.requires_grad_(False)
        if len(new_tokens):
            table = self.clip.token_embedding.weight
            rows = torch.zeros(table.shape[0], 1, dtype=table.dtype, device=table.device)
            rows[torch.as_tensor(list(new_tokens), dtype=torch.long)] = 1
            table.requires_grad_(True)
            table.register_hook(lambda grad: grad * rows)

    def freeze_image_tower(self) -> None:
        """Stop training the image tower (stem, ViT, projection): image embeddings stay exact."""
        self.clip.visual.requires_grad_(False)

    def encode_text(self, texts_or_tokens, normalize: bool = True) -> torch.Tensor:
        """Prompts (list of str) or token ids (B, L) → embeddings (B, E), L2-normalised.

        The state at the end token (the largest id, as open_clip's "argmax" pooling), plus the
        `TextHead`'s correction there when the model has one, projected into the shared space;
        computed on the trimmed tokens (the same numbers, fewer FLOPs)."""
        tokens = self.trim_tokens(self._as_tokens(texts_or_tokens))
        head = getattr(self, "text_head", None)  # (a pretrained adapter has none)
        states = self.encode_text_tokens(tokens, words=head is not None)  # (B, L', D or 2D)
        rows, end = torch.arange(states.shape[0], device=states.device), tokens.argmax(dim=-1)
        pooled = states[rows, end, :self.text_width]
        if head is not None:
            pooled = pooled + head(states, self.text_mask(tokens))[rows, end]
        proj = self.clip.text_projection
        pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        return F.normalize(pooled, dim=-1) if normalize else pooled

    # --------------------------------------------------------------- image
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Images (B, 3, 64, 64) in [0, 1] → embeddings (B, E), L2-normalised."""
        check_images(images, 3, self.config.image_size)
        x = (images.to(self.image_mean.device).float() - self.image_mean) / self.image_std
        return self.clip.encode_image(x, normalize=normalize)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        """(image features (B, E), text features (B, E), logit scale) — both normalised,
        what open_clip's ClipLoss takes."""
        return (self.encode_image(images), self.encode_text(tokens),
                self.clip.logit_scale.exp())

    @torch.no_grad()
    def zero_shot_scores(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of each image (B, 3, 64, 64) with each prompt: (B, P)."""
        return self.encode_image(images) @ self.encode_text(list(prompts)).T

    # --------------------------------------------------------------- storage
    def compact_state_dict(self) -> dict[str, torch.Tensor]:
        """The state_dict to save: the token embedding keeps only the rows of the known tokens,
        (K, D) under `KNOWN_ROWS_KEY` instead of (49,408, D) — 12.6 of a 15.6 MB fp16 file
        otherwise, over a Hugging Face Space's 10 MB limit. The other rows never received a
        gradient (no training caption uses them) and reach an output only through a word the
        app already flags as unknown. Without a recorded vocabulary the full table is kept."""
        state = self.state_dict()
        if self.config.known_tokens:
            ids = self._stored_rows().to(state[EMBEDDING_KEY].device)
            state[KNOWN_ROWS_KEY] = state.pop(EMBEDDING_KEY)[ids].clone()
        return state

    def _stored_rows(self) -> torch.Tensor:
        """Ids of the embedding rows a compact file keeps: the known tokens and the padding
        (kept so that even the masked-out padding states stay exactly as trained)."""
        return torch.tensor(sorted({PAD_ID, *self.config.known_tokens}), dtype=torch.long)

    def expand_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inverse of `compact_state_dict` for loading: the kept rows go back to their ids,
        every other row is zero. A full (older) file passes through unchanged."""
        if KNOWN_ROWS_KEY not in state:
            return state
        state = dict(state)
        rows = state.pop(KNOWN_ROWS_KEY)
        ids = self._stored_rows()
        if rows.dim() != 2 or rows.shape[0] != len(ids):
            raise ValueError(f"{KNOWN_ROWS_KEY} has shape {tuple(rows.shape)}, but config.json "
                             f"lists {len(ids) - 1} known tokens (+ the padding row)")
        if len(ids) and int(ids.max()) >= self.config.vocab_size:
            raise ValueError(f"config.json lists token id {int(ids.max())} outside the "
                             f"vocabulary of {self.config.vocab_size}")
        table = rows.new_zeros(self.config.vocab_size, rows.shape[1])
        table[ids] = rows
        state[EMBEDDING_KEY] = table
        return state
