"""Text captions made from face attributes (CelebA names) and, for SynthFaces, factors.

One vocabulary serves both datasets: captions are built from CelebA attribute names, so a
SynthFaces sample (18 of those names, see ``synthfaces.ATTRIBUTE_NAMES``) and a CelebA sample
(all 40) get captions in the same style, e.g.
"a photo of a grinning man with gray hair, a mustache and glasses, lit from the left".

Rules:
  * every present attribute that has a phrase is mentioned (all 40 have one); an absent one
    is never claimed, though some absent ones get negative phrases ("not smiling",
    "without a mustache") - a text encoder should learn what "not" and "without" do;
  * "man" only if Male=1 (CelebA) or, without a Male entry, facial hair (Mustache, Goatee
    or No_Beard=0); "woman" only if Male=0 or, without a Male entry, Wearing_Lipstick and no
    facial hair; otherwise "person", "face" or "someone";
  * deterministic for a given seed; different seeds vary template, synonyms and order.

Directions ("left"/"right") are in image coordinates, as in SynthFaces: light=-1 is lit from
the image's left, yaw=-1 is facing the image's left.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# Phrases for each CelebA attribute when present, by slot:
#   "adj": before the noun ("a smiling man"),  "with": after "with" ("with glasses"),
#   "wearing": after "wearing" ("wearing a hat"),  "prefix": replaces "a photo of".
# Hair colour and texture are merged into one phrase ("wavy blond hair"); Male decides the
# noun; No_Beard=0 gives "a beard" unless Mustache/Goatee already describe the facial hair.
_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "5_o_Clock_Shadow": {"with": ("stubble", "a five o'clock shadow")},
    "Arched_Eyebrows": {"with": ("arched eyebrows", "arched brows")},
    "Attractive": {"adj": ("attractive", "good-looking")},
    "Bags_Under_Eyes": {"with": ("bags under the eyes", "puffy eyes")},
    "Bald": {"adj": ("bald",), "with": ("a bald head",)},
    "Bangs": {"with": ("bangs", "a fringe")},
    "Big_Lips": {"with": ("full lips", "big lips")},
    "Big_Nose": {"with": ("a big nose", "a large nose")},
    "Blurry": {"prefix": ("a blurry photo of", "a blurry picture of")},
    "Bushy_Eyebrows": {"with": ("bushy eyebrows", "thick eyebrows")},
    "Chubby": {"adj": ("chubby",), "with": ("a round face", "a chubby face")},
    "Double_Chin": {"with": ("a double chin",)},
    "Eyeglasses": {"with": ("glasses", "eyeglasses", "spectacles"),
                   "wearing": ("glasses", "eyeglasses", "spectacles")},
    "Goatee": {"with": ("a goatee",)},
    "Heavy_Makeup": {"with": ("heavy makeup",), "wearing": ("heavy makeup", "a lot of makeup")},
    "High_Cheekbones": {"with": ("high cheekbones",)},
    "Mouth_Slightly_Open": {"with": ("a slightly open mouth", "parted lips",
                                     "the mouth slightly open")},
    "Mustache": {"with": ("a mustache", "a moustache")},
    "Narrow_Eyes": {"adj": ("squinting",), "with": ("narrow eyes", "narrowed eyes")},
    "Oval_Face": {"with": ("an oval face",)},
    "Pale_Skin": {"adj": ("pale", "fair-skinned"), "with": ("pale skin", "fair skin")},
    "Pointy_Nose": {"with": ("a pointy nose", "a pointed nose")},
    "Receding_Hairline": {"with": ("a receding hairline",)},
    "Rosy_Cheeks": {"with": ("rosy cheeks", "flushed cheeks")},
    "Sideburns": {"with": ("sideburns",)},
    "Smiling": {"adj": ("smiling", "grinning"), "with": ("a smile", "a big smile", "a grin")},
    "Wearing_Earrings": {"wearing": ("earrings",)},
    "Wearing_Hat": {"wearing": ("a hat", "a cap")},
    "Wearing_Lipstick": {"wearing": ("lipstick",), "with": ("painted lips",)},
    "Wearing_Necklace": {"wearing": ("a necklace",)},
    "Wearing_Necktie": {"wearing": ("a necktie", "a tie")},
    "Young": {"adj": ("young", "youthful")},
}
_HAIR_COLOURS: dict[str, tuple[str, ...]] = {
    "Black_Hair": ("black", "dark"),
    "Blond_Hair": ("blond", "golden"),
    "Brown_Hair": ("brown", "chestnut"),
    "Gray_Hair": ("gray", "grey", "silver"),
}
HAIR_COLOUR_NAMES = tuple(_HAIR_COLOURS)
_HAIR_TEXTURES: dict[str, tuple[str, ...]] = {"Straight_Hair": ("straight",), "Wavy_Hair": ("wavy",)}
# Phrases for a feature the face lacks, used now and then: attribute -> phrases, said when the
# attribute is 0, or 1 for No_Beard (whose 1 already means "no beard"). A text encoder that
# never reads "without a mustache" takes it for "a mustache" (zero-shot AUC 0.35 on beards).
# They use only words the shipped CLIP has learned, so a CLIP retrained on them with its text
# states frozen still serves the shipped U-Net (test_clip checks this).
_NEGATIVE_PHRASES: dict[str, tuple[str, ...]] = {
    "Smiling": ("not smiling", "with a neutral expression", "with a serious expression"),
    "Eyeglasses": ("without glasses", "not wearing glasses"),
    "Wearing_Hat": ("without a hat", "not wearing a hat"),
    "Mustache": ("without a mustache", "without a moustache"),
    "Goatee": ("without a goatee",),
    "No_Beard": ("without a beard",),
    "Wearing_Lipstick": ("not wearing lipstick", "without lipstick"),
    "Bangs": ("without bangs", "without a fringe"),
    "Narrow_Eyes": ("with open eyes", "with the eyes open"),
    "Young": ("older",),  # an adjective, see _compose
}
# More ways to say that a feature is missing, for the CLIP alone (``absent="rich"``): the
# zero-shot check's absent prompts ("with darker skin", "with a slim face", "with flat
# eyebrows", "with the mouth closed", "with wide open eyes", "with hair that is not gray")
# among other phrasings, several in words no U-Net caption uses. A text tower that never read
# "darker" takes "with darker skin" for "with … skin", i.e. pale skin (zero-shot AUC 0.64,
# 0.96 against a neutral prompt). With its text states frozen, a CLIP trained on these learns
# only the new words' embedding rows, so every caption a U-Net trained on keeps its states.
_RICH_NEGATIVE_PHRASES: dict[str, tuple[str, ...]] = {
    **_NEGATIVE_PHRASES,
    "Arched_Eyebrows": ("with flat eyebrows", "with straight eyebrows", "with level brows"),
    "Pale_Skin": ("with darker skin", "with dark skin", "with tanned skin", "with olive skin"),
    "Chubby": ("with a slim face", "with a thin face", "with a lean face"),
    "Mouth_Slightly_Open": ("with the mouth closed", "with closed lips", "with a closed mouth"),
    "Narrow_Eyes": _NEGATIVE_PHRASES["Narrow_Eyes"] + ("with wide open eyes", "with wide eyes"),
    "Bald": ("with hair on the head", "with a full head of hair"),
    **{name: (f"with hair that is not {words[0]}",) for name, words in _HAIR_COLOURS.items()},
}
ABSENT_PHRASINGS = ("plain", "rich")  # `captions_for_dataset(absent=...)`: the U-Net's, the CLIP's
_NEGATIVE_WHEN_PRESENT = frozenset({"No_Beard"})
NEGATIVE_PROBABILITY = 0.3  # chance of each available negative phrase being used
MAX_NEGATIVES = 3  # at most this many per caption, so the present attributes still lead
CELEBA_ATTRIBUTE_NAMES: tuple[str, ...] = tuple(sorted(
    set(_PHRASES) | set(_HAIR_COLOURS) | set(_HAIR_TEXTURES) | {"Male", "No_Beard"},
    key=str.lower))  # the 40 CelebA names, in the file's (alphabetical) order

# (present, absent) phrases for zero-shot prompts, one per SynthFaces attribute; they read
# after a noun: "a person smiling" / "a person not smiling" (see `zero_shot_prompts`).
ATTRIBUTE_PHRASES: dict[str, tuple[str, str]] = {
    "Arched_Eyebrows": ("with arched eyebrows", "with flat eyebrows"),
    "Bald": ("with a bald head", "with hair on the head"),
    "Bangs": ("with bangs", "without bangs"),
    "Black_Hair": ("with black hair", "with hair that is not black"),
    "Blond_Hair": ("with blond hair", "with hair that is not blond"),
    "Brown_Hair": ("with brown hair", "with hair that is not brown"),
    "Chubby": ("with a chubby face", "with a slim face"),
    "Eyeglasses": ("wearing glasses", "not wearing glasses"),
    "Goatee": ("with a goatee", "without a goatee"),
    "Gray_Hair": ("with gray hair", "with hair that is not gray"),
    "Mouth_Slightly_Open": ("with the mouth slightly open", "with the mouth closed"),
    "Mustache": ("with a mustache", "without a mustache"),
    "Narrow_Eyes": ("with narrow eyes", "with wide open eyes"),
    "No_Beard": ("without a beard", "with a beard"),
    "Pale_Skin": ("with pale skin", "with darker skin"),
    "Smiling": ("smiling", "not smiling"),
    "Wearing_Hat": ("wearing a hat", "not wearing a hat"),
    "Wearing_Lipstick": ("wearing lipstick", "not wearing lipstick"),
}
# SynthFaces factor phrases: factor -> (phrase at the low end, phrase at the high end).
LIGHT_THRESHOLD = 0.5  # |light| above this -> "lit from the left/right"
YAW_THRESHOLD = 0.6  # |yaw| above this -> "turned to the left/right"
ROLL_THRESHOLD = 0.6  # |roll| above this -> "with a tilted head" (sometimes)
BACKGROUND_PROBABILITY = 0.75  # chance of naming the background colour
FACTOR_PHRASES: dict[str, tuple[str, str]] = {
    "light": ("lit from the left", "lit from the right"),
    "yaw": ("turned to the left", "turned to the right"),
}
_LIGHT_VARIANTS = ("lit from the {}", "illuminated from the {}", "with light coming from the {}")
_YAW_VARIANTS = ("turned to the {}", "facing {}", "looking to the {}", "head turned {}")
_BACKGROUND_VARIANTS = ("on {} background", "against {} background", "in front of {} backdrop")
# Background colour names by hue (degrees, upper bounds). No hair-colour words on purpose.
_HUE_NAMES = ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (195, "teal"),
              (255, "blue"), (290, "purple"), (340, "pink"), (360, "red"))
_NEUTRAL_NOUNS = ("person", "face", "someone")
_PREFIXES = ("", "", "a photo of", "a portrait of", "a close-up of", "an image of")
MAX_ADJECTIVES = 2  # more adjectives move to "with ..." phrases where they have one


def hue_colour_name(hue: float) -> str:
    """Name of the colour with this hue (0..1 around the HSV circle), e.g. 0.6 -> "blue"."""
    degrees = (float(hue) % 1.0) * 360.0
    return next(name for bound, name in _HUE_NAMES if degrees < bound)


# the zero-shot prompts with the attribute phrase left out: true of every face
NEUTRAL_PROMPT = "a photo of a person"


def zero_shot_prompts(attribute: str, noun: str = "person") -> tuple[str, str]:
    """("a photo of a person smiling", "a photo of a person not smiling") for an attribute."""
    if attribute not in ATTRIBUTE_PHRASES:
        raise ValueError(f"no zero-shot phrases for {attribute!r}; known: {sorted(ATTRIBUTE_PHRASES)}")
    present, absent = ATTRIBUTE_PHRASES[attribute]
    return f"a photo of a {noun} {present}", f"a photo of a {noun} {absent}"


def _as_rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be an int seed or a numpy Generator, got {type(rng).__name__}")


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _join(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _present(attrs: Mapping[str, bool | int]) -> dict[str, bool]:
    """Validate names and turn values (bool, 0/1, -1/1, numpy scalars) into booleans."""
    unknown = sorted(set(attrs) - set(CELEBA_ATTRIBUTE_NAMES))
    if unknown:
        raise ValueError(f"unknown attribute names {unknown}; expected CelebA names such as "
                         f"'Smiling' (see CELEBA_ATTRIBUTE_NAMES)")
    present = {}
    for name, value in attrs.items():
        value = float(np.asarray(value).reshape(()))
        if value not in (-1.0, 0.0, 1.0):
            raise ValueError(f"attribute {name} must be 0/1 (or -1/1 or a bool), got {value}")
        present[name] = value > 0
    return present


def _noun(present: dict[str, bool], rng: np.random.Generator) -> str:
    """Pick the noun without ever contradicting the attributes (see module docstring)."""
    facial_hair = (present.get("Mustache", False) or present.get("Goatee", False)
                   or present.get("No_Beard", True) is False)
    if "Male" in present:
        gendered = "man" if present["Male"] else "woman"
    elif facial_hair:
        gendered = "man"
    elif present.get("Wearing_Lipstick", False):
        gendered = "woman"
    else:
        gendered = None
    if gendered is not None and rng.random() < 0.6:
        return gendered
    return _pick(rng, _NEUTRAL_NOUNS)


def _compose(attrs: Mapping[str, bool | int], rng: np.random.Generator,
             hair_length: str | None = None, clauses: tuple[str, ...] = (),
             absent: str = "plain", say_absent: str | None = None, hide: str | None = None) -> str:
    """Build one caption. ``hair_length`` ("long"/"short") and ``clauses`` come from factors;
    ``absent`` picks the phrases for missing features (`ABSENT_PHRASINGS`); the attribute
    named ``say_absent``, if the face lacks it, is always said to be missing; the one named
    ``hide`` is not mentioned though the face has it (and is not said to be missing)."""
    present = _present(attrs)
    said = {name: on and name != hide for name, on in present.items()}
    noun = _noun(present, rng)
    adjectives: list[str] = []
    with_items: list[str] = []
    wearing_items: list[str] = []
    prefix = _pick(rng, _PREFIXES)
    names = [name for name in _PHRASES if said.get(name, False)]
    rng.shuffle(names)
    for name in names:
        slots = _PHRASES[name]
        if "prefix" in slots:
            prefix = _pick(rng, slots["prefix"])
            continue
        choices = [slot for slot in ("adj", "with", "wearing") if slot in slots]
        slot = _pick(rng, choices)
        if slot == "adj" and len(adjectives) >= MAX_ADJECTIVES and "with" in slots:
            slot = "with"
        {"adj": adjectives, "with": with_items, "wearing": wearing_items}[slot].append(
            _pick(rng, slots[slot]))

    # Hair: "long wavy blond and brown hair".
    colours = [_pick(rng, words) for name, words in _HAIR_COLOURS.items() if said.get(name)]
    textures = [_pick(rng, words) for name, words in _HAIR_TEXTURES.items() if present.get(name)]
    if colours or textures or hair_length:
        words = ([hair_length] if hair_length else []) + textures + ([_join(colours)] if colours else [])
        with_items.append(" ".join(words) + " hair")

    # Facial hair: Mustache/Goatee by name, otherwise No_Beard=0 is "a beard".
    if present.get("No_Beard") is False and not (said.get("Mustache") or said.get("Goatee")):
        if rng.random() < 0.3 and len(adjectives) < MAX_ADJECTIVES:
            adjectives.append("bearded")
        else:
            with_items.append(_pick(rng, ("a beard", "a full beard")))
    elif present.get("No_Beard") and noun == "man" and rng.random() < 0.3:
        adjectives.append("clean-shaven")

    # Now and then, a phrase for an absent attribute.
    negatives = []
    candidates = list(_NEGATIVE_PHRASES.items())
    if absent == "rich":
        # the U-Net's negatives first, as often as in its captions, so that the CLIP keeps
        # hearing them; the extra ones share the slots left, in a random order
        extra = [item for item in _RICH_NEGATIVE_PHRASES.items() if item[0] not in _NEGATIVE_PHRASES]
        candidates = ([(name, _RICH_NEGATIVE_PHRASES[name]) for name, _ in candidates]
                      + [extra[i] for i in rng.permutation(len(extra))])
    for name, phrases in candidates:
        lacking = present.get(name) is (name in _NEGATIVE_WHEN_PRESENT)
        # (the draw comes first either way, so the rest of the phrasing stays as it would be)
        if lacking and (rng.random() < NEGATIVE_PROBABILITY or name == say_absent):
            if name == "Young":
                adjectives.insert(0, _pick(rng, phrases))  # "an older smiling man"
            elif len(negatives) < MAX_NEGATIVES or name == say_absent:
                negatives.append(_pick(rng, phrases))

    rng.shuffle(with_items)
    rng.shuffle(wearing_items)
    if noun == "someone" and adjectives:
        noun = "person"  # "a smiling someone" does not read
    noun_phrase = " ".join(adjectives + [noun])
    if noun != "someone":
        noun_phrase = f"{_article(noun_phrase)} {noun_phrase}"
    parts = [f"{prefix} {noun_phrase}" if prefix else noun_phrase]
    if with_items:
        parts[0] += " with " + _join(with_items)
    if wearing_items:
        parts.append("wearing " + _join(wearing_items))
    extra = negatives + list(clauses)
    rng.shuffle(extra)
    return ", ".join(parts + extra)


def caption_from_attributes(attrs: Mapping[str, bool | int],
                            rng: int | np.random.Generator | None = 0) -> str:
    """One caption from CelebA-named attributes of one face.

    Args:
        attrs: attribute name -> value (bool, 0/1, -1/1); any subset of the 40 CelebA names.
            Absent keys are "unknown": neither mentioned nor negated.
        rng: a seed (same seed, same caption) or a numpy Generator.
    """
    return _compose(attrs, _as_rng(rng))


def _factor_extras(factors_row: Mapping[str, float | int], rng: np.random.Generator
                   ) -> tuple[str | None, tuple[str, ...]]:
    """Hair length and direction/background clauses from one row of SynthFaces factors."""
    from playground.data.synthfaces import CATEGORICAL_FACTORS

    clauses = []
    light = float(factors_row.get("light", 0.0))
    if abs(light) > LIGHT_THRESHOLD:
        clauses.append(_pick(rng, _LIGHT_VARIANTS).format("left" if light < 0 else "right"))
    yaw = float(factors_row.get("yaw", 0.0))
    if abs(yaw) > YAW_THRESHOLD:
        clauses.append(_pick(rng, _YAW_VARIANTS).format("left" if yaw < 0 else "right"))
    if abs(float(factors_row.get("roll", 0.0))) > ROLL_THRESHOLD and rng.random() < 0.5:
        clauses.append(_pick(rng, ("with a tilted head", "head tilted")))
    if "background" in factors_row and rng.random() < BACKGROUND_PROBABILITY:
        colour = hue_colour_name(float(factors_row["background"]))
        clauses.append(_pick(rng, _BACKGROUND_VARIANTS).format(f"{_article(colour)} {colour}"))
    hair_length = None
    if "hair_style" in factors_row:
        style = CATEGORICAL_FACTORS["hair_style"][int(factors_row["hair_style"])]
        hair_length = style if style in ("long", "short") else None
    return hair_length, tuple(clauses)


def caption_from_factors(factors_row: Mapping[str, float | int], seed: int | np.random.Generator = 0,
                         attributes_row: Mapping[str, bool | int] | None = None) -> str:
    """One caption for a SynthFaces sample: its attributes plus factor phrases.

    Args:
        factors_row: factor name -> value for one face (as from ``sample_factors``, one row).
        seed: a seed (same seed, same caption) or a numpy Generator.
        attributes_row: its CelebA-named attributes; computed with
            ``synthfaces.attributes_from_factors`` when None.
    """
    if attributes_row is None:
        from playground.data.synthfaces import attributes_from_factors

        batch = attributes_from_factors({k: np.asarray([v]) for k, v in factors_row.items()})
        attributes_row = {name: int(np.asarray(v).reshape(-1)[0]) for name, v in batch.items()}
    rng = _as_rng(seed)
    hair_length, clauses = _factor_extras(factors_row, rng)
    return _compose(attributes_row, rng, hair_length, clauses)


def captions_for_dataset(attributes: Mapping[str, np.ndarray],
                         factors: Mapping[str, np.ndarray] | None = None,
                         seed: int = 0, absent: str = "plain",
                         say_absent: Sequence[str | None] | None = None,
                         hide: Sequence[str | None] | None = None) -> list[str]:
    """Captions for N faces: ``attributes`` maps names to (N,) arrays; ``factors`` likewise
    (SynthFaces) or None (CelebA). Row i uses the generator seeded by (seed, i), so its caption
    does not depend on the other rows (a subset gets the same captions). ``absent="rich"``
    says what a face lacks in more ways (`_RICH_NEGATIVE_PHRASES`: the CLIP's captions; the
    U-Net trains on the "plain" ones). ``say_absent[i]`` names an attribute that row i's
    caption always says is missing when the face lacks it (a hard negative that took it away);
    ``hide[i]`` one that it does not mention though the face has it."""
    if absent not in ABSENT_PHRASINGS:
        raise ValueError(f"absent must be one of {ABSENT_PHRASINGS}, got {absent!r}")
    columns = {name: np.asarray(values).reshape(-1) for name, values in attributes.items()}
    factor_columns = {name: np.asarray(values).reshape(-1) for name, values in (factors or {}).items()}
    lengths = {len(v) for v in columns.values()} | {len(v) for v in factor_columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"attribute/factor arrays have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}")
    for name, per_row in (("say_absent", say_absent), ("hide", hide)):
        if per_row is not None and len(per_row) != n:
            raise ValueError(f"{name} needs one entry per face ({n}), got {len(per_row)}")
    captions = []
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        row = {name: column[i] for name, column in columns.items()}
        hair_length, clauses = (
            _factor_extras({k: v[i] for k, v in factor_columns.items()}, rng)
            if factor_columns else (None, ()))
        captions.append(_compose(row, rng, hair_length, clauses, absent,
                                 say_absent[i] if say_absent is not None else None,
                                 hide[i] if hide is not None else None))
    return captions
