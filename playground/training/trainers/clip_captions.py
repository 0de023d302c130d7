"""The CLIP trainer's captions as token ids, one epoch at a time: each image's caption and, for
hard negatives, the same caption with one attribute flipped; and the vocabulary they use: the
words whose states a shipped U-Net reads (`frozen_vocabulary`) and the rows of new words
(`draw_new_rows`).

Captions change every epoch (`captions_for_dataset(..., seed=epoch)`), so the model sees many
phrasings of the same face; a hard negative keeps the phrasing and flips one attribute of a
pool (`NEGATIVE_POOLS`), so that the small details decide the match.
"""
from __future__ import annotations

import numpy as np
import torch

from playground.data.captions import ATTRIBUTE_PHRASES, HAIR_COLOUR_NAMES, captions_for_dataset
from playground.evaluation.quality import SMALL_DETAILS
from playground.models.clip import TextImageCLIP
from playground.store.checkpoints import load_model

# attributes a hard negative may flip (each needs a zero-shot phrase, hence a caption phrase)
NEGATIVE_POOLS: dict[str, tuple[str, ...]] = {
    "all": tuple(ATTRIBUTE_PHRASES),
    "small": tuple(a for a in SMALL_DETAILS if a in ATTRIBUTE_PHRASES),
}


class CaptionTokens:
    """The token ids of every training image's caption for one epoch at a time: (N, L); with
    `hard_negatives`, also each image's K hard-negative captions (K, N, L): the same phrasing
    of the same face with one attribute flipped (K different attributes of `pool`, drawn per
    epoch and image), e.g. "… with glasses" for a face without them, so that the small details
    decide the match (NegCLIP, Yuksekgonul et al. 2023)."""

    def __init__(self, dataset, model: TextImageCLIP, seed: int, hard_negatives: bool = False,
                 negatives_per_image: int = 1, pool: tuple[str, ...] = NEGATIVE_POOLS["all"],
                 absent: str = "plain", balanced: bool = False, say_absent: bool = False,
                 pair_absent: bool = False, hide_hair_colour: float = 0.0,
                 hide_facial_hair: float = 0.0):
        attributes = getattr(dataset, "attributes", None)
        if not attributes:
            raise ValueError("CLIP trains on captioned faces: the dataset needs .attributes "
                             "(and .factors for SynthFaces)")
        self.attributes = {k: np.asarray(v) for k, v in attributes.items()}
        self.factors = getattr(dataset, "factors", None)
        self.flippable = [a for a in pool if a in self.attributes]
        if hard_negatives and len(self.flippable) < negatives_per_image:
            raise ValueError(f"{negatives_per_image} hard negatives per image need as many "
                             f"flippable attributes; the dataset has {self.flippable}")
        self.model, self.seed, self.hard_negatives = model, seed, hard_negatives
        self.negatives_per_image, self.absent = negatives_per_image, absent
        if pair_absent and not (hard_negatives and say_absent):
            raise ValueError("pair_absent pairs a caption with its first hard negative: it "
                             "needs hard_negatives and say_absent")
        self.balanced, self.say_absent, self.pair_absent = balanced, say_absent, pair_absent
        self.colours = [a for a in HAIR_COLOUR_NAMES if a in self.flippable]
        if hide_hair_colour and not (hard_negatives and absent == "rich" and len(self.colours) > 1):
            raise ValueError("hiding hair colours pairs 'hair that is not brown' with a hard "
                             "negative that says 'brown hair': it needs hard negatives, rich "
                             "absent phrases and the hair colours in the negative pool")
        if hide_facial_hair and not (hard_negatives and "No_Beard" in self.flippable):
            raise ValueError("hiding a mustache or goatee pairs 'a beard' with a hard negative "
                             "that says 'without a beard': it needs hard negatives and No_Beard "
                             "in the negative pool")
        self.hide_hair_colour, self.hide_facial_hair = hide_hair_colour, hide_facial_hair
        self.epoch, self.tokens, self.negatives = None, None, None

    def for_epoch(self, epoch: int) -> torch.Tensor:
        self._make(epoch)
        return self.tokens

    def negatives_for_epoch(self, epoch: int) -> torch.Tensor:
        self._make(epoch)
        return self.negatives

    def texts(self, epoch: int) -> tuple[list[str], list[list[str]]]:
        """Epoch `epoch`'s captions, one per image, and with hard negatives its K lists of
        negative captions (else none)."""
        seed = self.seed * 100_003 + epoch
        n = len(next(iter(self.attributes.values())))
        choices = self._flips(epoch, n) if self.hard_negatives else None
        # with pair_absent, a caption also says that its face lacks what the first negative
        # adds: "… with hair that is not brown" against "… with brown hair", the two differing
        # mostly by the "not" (a second colour still shows: "black and brown hair")
        say = [self.flippable[c] for c in choices[:, 0]] if self.pair_absent else [None] * n
        hide = (self._hidden(epoch, choices, say)
                if self.hide_hair_colour or self.hide_facial_hair else None)
        positives = captions_for_dataset(
            self.attributes, self.factors, seed=seed, absent=self.absent,
            say_absent=say, hide=hide)
        # the same caption seed: the phrasing stays, only the flipped attribute's words change;
        # with say_absent, a flip that takes a feature away says so ("… with hair that is not
        # brown"), instead of 3 times in 10: then "not brown" is what a face with brown hair
        # must not match, and the text side has to learn what "not" does
        negatives = [captions_for_dataset(
            flip_one_attribute(self.attributes, self.flippable, choice=choices[:, k]),
            self.factors, seed=seed, absent=self.absent,
            say_absent=self._negative_says(choices[:, k], hide if k == 0 else None),
            hide=hide) for k in range(self.negatives_per_image if self.hard_negatives else 0)]
        return positives, negatives

    def _negative_says(self, flips: np.ndarray, hide: list[str | None] | None
                       ) -> list[str | None] | None:
        """What each negative says is missing: with say_absent, what its flip took away;
        otherwise only where a hidden feature's pair needs it ("without a beard")."""
        names = [self.flippable[c] for c in flips]
        if self.say_absent:
            return names
        if hide is None:
            return None
        return [name if h is not None else None for name, h in zip(names, hide)]

    def _make(self, epoch: int) -> None:
        if self.epoch == epoch:
            return
        positives, negatives = self.texts(epoch)
        self.tokens = self.model.tokenize(positives)
        if self.hard_negatives:
            self.negatives = torch.stack([self.model.tokenize(k) for k in negatives])
        self.epoch = epoch

    def _hidden(self, epoch: int, choices: np.ndarray, say: list[str | None]
                ) -> list[str | None]:
        """Per face, the attribute its caption leaves unsaid (None for most), so that a "not"
        is all that tells its caption from its first hard negative. Edits `choices` (n, A) and
        `say` in place.
        - On a share `hide_hair_colour` of the faces with one hair colour, the caption names
          none and says one colour the face lacks is missing; the negative adds that colour.
        - On a share `hide_facial_hair` of the others with a mustache or a goatee alone, the
          caption says "a beard" instead; the negative flips No_Beard ("without a beard").

        Why: when every caption names the colour, "hair that is not brown" never carries
        information of its own, and the text side learns it as a weaker "brown" (the shipped
        CLIP put it closer to brown-haired faces than to any other); likewise "without a
        beard" is never what tells a goatee's caption from another's."""
        rng = np.random.default_rng([self.seed, epoch, 2])
        n = len(choices)
        hide: list[str | None] = [None] * n

        def first_flip(i: int, name: str) -> None:
            at = int(np.flatnonzero(choices[i] == self.flippable.index(name))[0])
            choices[i, [0, at]] = choices[i, [at, 0]]

        draw = rng.random(n)
        if self.hide_hair_colour:
            has = np.stack([self.attributes[c] for c in self.colours], axis=1).astype(bool)
            for i in np.flatnonzero((has.sum(axis=1) == 1) & (draw < self.hide_hair_colour)):
                own = int(np.argmax(has[i]))
                other = self.colours[rng.choice([j for j in range(len(self.colours)) if j != own])]
                hide[i], say[i] = self.colours[own], other
                first_flip(i, other)
        if self.hide_facial_hair:
            kinds = [a for a in ("Mustache", "Goatee") if a in self.attributes]
            has = np.stack([self.attributes[k] for k in kinds], axis=1).astype(bool)
            draw = rng.random(n)
            for i in np.flatnonzero((has.sum(axis=1) == 1) & (draw < self.hide_facial_hair)):
                if hide[i] is None:
                    hide[i], say[i] = kinds[int(np.argmax(has[i]))], "No_Beard"
                    first_flip(i, "No_Beard")
        return hide

    def _flips(self, epoch: int, n: int) -> np.ndarray:
        """(n, A) indices into the pool: row i's first K are the attributes its K hard
        negatives flip (K distinct ones: the first K of a random order of the pool)."""
        rng = np.random.default_rng([self.seed, epoch, 1])
        keys = rng.random((n, len(self.flippable)))
        if self.balanced:
            keys = balanced_flip_keys(self.attributes, self.flippable, n,
                                      self.negatives_per_image, rng)
        return np.argsort(keys, axis=1)


def balanced_flip_keys(attributes: dict[str, np.ndarray], names: list[str], n: int, k: int,
                       rng: np.random.Generator, rounds: int = 8) -> np.ndarray:
    """Sort keys (n, A) whose ascending order picks each face's k attributes to flip so that
    each attribute is flipped about as often on faces that have it as on faces that lack it.

    Gumbel top-k over per-attribute weights, one for the faces that have it and one for the
    rest; starting at 1 / 2p and 1 / 2(1 − p) for an attribute of share p, the weights are
    corrected `rounds` times on the same noise by the square root of the counts' ratio
    (top-k of a few attributes is not proportional to the weights).

    Why: with uniform picks, a rare feature's flips mostly *add* it ("… with a mustache" for
    a face without one: 85 % of the mustache negatives), so the text side can lower every
    caption that mentions a mustache and win most of those negatives without the image tower
    ever seeing one. Balanced, the mention says nothing about which caption is the true one."""
    has = np.stack([np.asarray(attributes[a])[:n] for a in names], axis=1).astype(bool)
    share = has.mean(axis=0).clip(1 / n, 1 - 1 / n)  # (A,)
    w_has, w_lacks = 0.5 / share, 0.5 / (1 - share)
    gumbel = rng.gumbel(size=has.shape)

    def keys() -> np.ndarray:
        return -(np.log(np.where(has, w_has, w_lacks)) + gumbel)

    for _ in range(rounds):
        picked = np.zeros_like(has)
        np.put_along_axis(picked, np.argsort(keys(), axis=1)[:, :k], True, axis=1)
        on_has = (picked & has).sum(axis=0) + 1
        on_lacks = (picked & ~has).sum(axis=0) + 1
        w_has, w_lacks = w_has * np.sqrt(on_lacks / on_has), w_lacks * np.sqrt(on_has / on_lacks)
    return keys()


def flip_one_attribute(attributes: dict[str, np.ndarray], names: list[str],
                       rng: np.random.Generator | None = None,
                       choice: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A copy of `attributes` (name → (N,) 0/1) in which each row has one of `names` set to
    its opposite: names[choice[i]] for row i, or drawn uniformly with `rng`."""
    n = len(next(iter(attributes.values())))
    if choice is None:
        choice = rng.integers(len(names), size=n)
    out = {k: np.asarray(v).copy() for k, v in attributes.items()}
    for j, name in enumerate(names):
        rows = choice == j
        out[name][rows] = 1 - out[name][rows]
    return out


def caption_vocabulary(dataset, model: TextImageCLIP, seeds: tuple[int, ...] = (0, 1, 2),
                       n: int = 20_000, absent: str = "plain") -> tuple[int, ...]:
    """Token ids used by the captions of the first `n` faces under a few caption seeds."""
    attrs = {k: np.asarray(v)[:n] for k, v in dataset.attributes.items()}
    factors = ({k: np.asarray(v)[:n] for k, v in dataset.factors.items()}
               if getattr(dataset, "factors", None) else None)
    seen: set[int] = set()
    for seed in seeds:
        tokens = model.tokenize(captions_for_dataset(attrs, factors, seed=seed, absent=absent))
        seen.update(torch.unique(tokens).tolist())
    seen.discard(0)
    return tuple(sorted(seen))


def frozen_vocabulary(init: str) -> tuple[int, ...]:
    """The tokens whose per-token states the saved CLIP `init` gives a U-Net
    (`CLIPConfig.unet_tokens`)."""
    return load_model(init).config.unet_tokens


def untrained_rows(model: TextImageCLIP, tokens: tuple[int, ...]) -> tuple[int, ...]:
    """The `tokens` whose embedding rows are all zero: a compact file stores every word its
    model never read that way."""
    table = model.clip.token_embedding.weight
    return tuple(t for t in tokens if not bool(table[t].detach().any()))


def draw_new_rows(model: TextImageCLIP, tokens: tuple[int, ...], seed: int) -> None:
    """Give the embedding rows of `tokens` that are still zero (as a compact file stores every
    word its model never read) open_clip's initial scale, std 0.02: the word embedding the
    `TextHead` reads is layer-normalised, and at zero that has no useful gradient. Rows that
    are not zero (a resumed run's) are kept."""
    table = model.clip.token_embedding.weight
    with torch.no_grad():
        fresh = torch.as_tensor(untrained_rows(model, tokens), dtype=torch.long,
                                device=table.device)
        noise = torch.randn(len(fresh), table.shape[1],
                            generator=torch.Generator().manual_seed(seed)) * 0.02
        table[fresh] = noise.to(table)
