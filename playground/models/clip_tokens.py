"""The prompt side of the playground's CLIPs: open_clip's BPE tokenizer behind the helpers the
app, the trainers and the U-Net use (`tokenize`, `truncated`, `unknown_words`, `text_mask`),
shared by `playground.models.clip.TextImageCLIP` and the pretrained adapter."""
from __future__ import annotations

import re
from typing import Sequence

import torch

PAD_ID = 0  # open_clip's SimpleTokenizer pads with 0


def _tokenizer(context_length: int):
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


class TokenizerMixin:
    """Tokenizer-side helpers shared by our CLIP and the pretrained adapter."""

    context_length: int
    known_tokens: frozenset[int]

    def _get_tokenizer(self):
        tok = getattr(self, "_tok", None)
        if tok is None:
            tok = _tokenizer(self.context_length)
            object.__setattr__(self, "_tok", tok)  # not an nn.Module attribute
        return tok

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids (B, L) int64: start token, BPE tokens, end token, zero padding; a prompt
        longer than the context is cut (its last kept token becomes the end token)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [_check_text(t) for t in texts]
        return self._get_tokenizer()(list(texts)).long()

    def token_count(self, text: str) -> int:
        """Tokens `text` needs, start and end tokens included."""
        return len(self._get_tokenizer().encode(_check_text(text))) + 2

    def truncated(self, texts: str | Sequence[str]) -> list[bool]:
        """For each text, whether `tokenize` cuts it at the context length."""
        if isinstance(texts, str):
            texts = [texts]
        return [self.token_count(t) > self.context_length for t in texts]

    def unknown_words(self, text: str, states: bool = False) -> list[str]:
        """Words of `text` with a token never seen in training (empty when nothing is known
        about the training vocabulary); with `states`, never seen by the per-token states a
        U-Net conditions on (`CLIPConfig.state_tokens`, when the model learned words later)."""
        known = (getattr(self, "state_tokens", frozenset()) if states else frozenset()
                 ) or self.known_tokens
        if not known:
            return []
        tok = self._get_tokenizer()
        unknown = []
        for word in re.findall(r"[^\W_]+", _check_text(text).lower()):
            if any(t not in known for t in tok.encode(word)):
                unknown.append(word)
        return unknown

    @staticmethod
    def text_mask(tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) bool, True where a token is real (start, text, end), False for padding."""
        return tokens != PAD_ID


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise ValueError(f"a prompt must be a string, got {type(text).__name__}")
    return text
