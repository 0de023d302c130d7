"""Captions from attributes and SynthFaces factors: faithful, varied, deterministic."""
from __future__ import annotations

import re

import numpy as np
import pytest

from playground.data import synthfaces
from playground.data.captions import (
    ATTRIBUTE_PHRASES,
    CELEBA_ATTRIBUTE_NAMES,
    caption_from_attributes,
    caption_from_factors,
    captions_for_dataset,
    hue_colour_name,
    zero_shot_prompts,
)

# The test's own idea of which words claim an attribute (independent of the module's tables).
KEYWORDS = {
    "Arched_Eyebrows": ["arched"],
    "Bald": ["bald"],
    "Bangs": ["bangs", "fringe"],
    "Black_Hair": ["black", "dark"],
    "Blond_Hair": ["blond", "blonde", "golden"],
    "Brown_Hair": ["brown", "chestnut"],
    "Chubby": ["chubby", "round face"],
    "Eyeglasses": ["glasses", "eyeglasses", "spectacles"],
    "Goatee": ["goatee"],
    "Gray_Hair": ["gray", "grey", "silver"],
    "Mouth_Slightly_Open": ["open", "parted"],
    "Mustache": ["mustache", "moustache"],
    "Narrow_Eyes": ["narrow", "narrowed", "squinting"],
    "Pale_Skin": ["pale", "fair"],
    "Smiling": ["smiling", "grinning", "smile", "grin"],
    "Wearing_Hat": ["hat", "cap"],
    "Wearing_Lipstick": ["lipstick", "painted lips"],
}
BEARD_WORDS = ["beard", "bearded"]
# Phrases that say a feature is absent, by the attribute they deny; removed before looking
# for claims. No_Beard's phrase is said when No_Beard = 1 (no beard).
DENIALS = {
    "Smiling": ["not smiling", "neutral expression", "serious expression"],
    "Eyeglasses": ["without glasses", "not wearing glasses"],
    "Wearing_Hat": ["without a hat", "not wearing a hat"],
    "Mustache": ["without a mustache", "without a moustache"],
    "Goatee": ["without a goatee"],
    "No_Beard": ["without a beard"],
    "Wearing_Lipstick": ["not wearing lipstick", "without lipstick"],
    "Bangs": ["without bangs", "without a fringe"],
    "Narrow_Eyes": ["with open eyes", "with the eyes open"],
}
NEGATIONS = [phrase for phrases in DENIALS.values() for phrase in phrases]
CELEBA_FILE_ORDER = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def says(text: str, words) -> bool:
    return any(re.search(rf"\b{re.escape(w)}\b", text) for w in words)


def without_negations(text: str) -> str:
    for phrase in NEGATIONS:
        text = text.replace(phrase, "")
    return text


def synthfaces_like(rng: np.random.Generator) -> dict[str, int]:
    """A consistent SynthFaces attribute row: one hair colour unless bald, one facial hair."""
    row = {name: int(rng.random() < 0.4) for name in synthfaces.ATTRIBUTE_NAMES}
    for name in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Mustache", "Goatee"):
        row[name] = 0
    if not row["Bald"]:
        row[("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")[rng.integers(4)]] = 1
    facial = rng.integers(4)  # none, mustache, goatee, beard
    row["No_Beard"] = int(facial == 0)
    row["Mustache"], row["Goatee"] = int(facial == 1), int(facial == 2)
    return row


def test_deterministic_per_seed_and_varied_across_seeds():
    attrs = {"Smiling": 1, "Eyeglasses": 1, "Gray_Hair": 1, "Mustache": 1, "No_Beard": 0}
    assert caption_from_attributes(attrs, 7) == caption_from_attributes(attrs, 7)
    assert caption_from_attributes(attrs, np.random.default_rng(7)) == caption_from_attributes(attrs, 7)
    captions = {caption_from_attributes(attrs, seed) for seed in range(20)}
    assert len(captions) >= 10
    row = {"light": -0.9, "yaw": 0.0, "roll": 0.0, "background": 0.6, "hair_style": 2}
    assert caption_from_factors(row, 3, attrs) == caption_from_factors(row, 3, attrs)
    assert len({caption_from_factors(row, s, attrs) for s in range(20)}) >= 10


def test_synthfaces_attributes_present_are_mentioned_absent_are_not():
    rng = np.random.default_rng(0)
    for seed in range(300):
        row = synthfaces_like(rng)
        caption = caption_from_attributes(row, seed)
        claims = without_negations(caption)
        for name, words in KEYWORDS.items():
            if row[name]:
                assert says(caption, words), f"{name} missing from {caption!r} ({row})"
            else:
                assert not says(claims, words), f"{name} claimed in {caption!r} ({row})"
        beard_expected = row["No_Beard"] == 0 and not (row["Mustache"] or row["Goatee"])
        assert says(claims, BEARD_WORDS) == beard_expected, caption
        for name, phrases in DENIALS.items():  # a denial only for a feature the face lacks
            if says(caption, phrases):
                assert row[name] == (name == "No_Beard"), f"{name} denied in {caption!r} ({row})"


def test_celeba_attributes_all_mentioned():
    """Every one of the 40 CelebA attributes, when alone and present, shows up in the text."""
    extra_keywords = {
        "5_o_Clock_Shadow": ["stubble", "five o'clock shadow"], "Attractive": ["attractive", "good-looking"],
        "Bags_Under_Eyes": ["bags under the eyes", "puffy eyes"], "Big_Lips": ["lips"],
        "Big_Nose": ["nose"], "Blurry": ["blurry"], "Bushy_Eyebrows": ["bushy", "thick"],
        "Double_Chin": ["double chin"], "Heavy_Makeup": ["makeup"], "High_Cheekbones": ["cheekbones"],
        "Male": ["man", "person", "face", "someone"], "No_Beard": ["person", "face", "someone"],
        "Oval_Face": ["oval"], "Pointy_Nose": ["pointy", "pointed"], "Receding_Hairline": ["receding"],
        "Rosy_Cheeks": ["rosy", "flushed"], "Sideburns": ["sideburns"], "Straight_Hair": ["straight"],
        "Wavy_Hair": ["wavy"], "Wearing_Earrings": ["earrings"], "Wearing_Necklace": ["necklace"],
        "Wearing_Necktie": ["tie", "necktie"], "Young": ["young", "youthful"],
    }
    keywords = {**KEYWORDS, **extra_keywords}
    assert set(keywords) == set(CELEBA_ATTRIBUTE_NAMES)
    for name in CELEBA_ATTRIBUTE_NAMES:
        for seed in range(5):
            caption = caption_from_attributes({name: 1}, seed)
            assert says(caption, keywords[name]), (name, caption)


def test_celeba_names_in_file_order():
    assert list(CELEBA_ATTRIBUTE_NAMES) == CELEBA_FILE_ORDER


def test_man_and_woman_never_contradict_the_attributes():
    seen = {"man": 0, "woman": 0}
    rng = np.random.default_rng(1)
    for seed in range(200):
        row = {name: int(rng.random() < 0.3) for name in CELEBA_ATTRIBUTE_NAMES}
        caption = caption_from_attributes(row, seed)
        if row["Male"]:
            assert not says(caption, ["woman"]), caption
        else:
            assert not says(caption, ["man"]), caption
        seen["man"] += says(caption, ["man"])
        seen["woman"] += says(caption, ["woman"])
    assert seen["man"] > 10 and seen["woman"] > 10  # the words are actually used

    for seed in range(100):  # SynthFaces rows: no Male entry
        row = synthfaces_like(rng)
        caption = caption_from_attributes(row, seed)
        facial_hair = row["Mustache"] or row["Goatee"] or not row["No_Beard"]
        if says(caption, ["man"]):
            assert facial_hair, caption
        if says(caption, ["woman"]):
            assert row["Wearing_Lipstick"] and not facial_hair, caption
    neutral = {"Smiling": 1, "No_Beard": 1, "Wearing_Lipstick": 0}
    for seed in range(30):
        assert not says(caption_from_attributes(neutral, seed), ["man", "woman"])
    lipstick = {"No_Beard": 1, "Wearing_Lipstick": 1}
    assert any(says(caption_from_attributes(lipstick, s), ["woman"]) for s in range(30))


def test_negative_phrases_only_for_given_absent_attributes():
    captions = [caption_from_attributes({"Smiling": 0, "Eyeglasses": 0}, s) for s in range(60)]
    assert any(says(c, ["not smiling", "neutral expression", "serious expression"]) for c in captions)
    assert any(says(c, ["without glasses", "not wearing glasses"]) for c in captions)
    small = {"Mustache": 0, "Goatee": 0, "No_Beard": 1, "Wearing_Lipstick": 0, "Narrow_Eyes": 0}
    captions = [caption_from_attributes(small, s) for s in range(60)]
    for phrases in (["without a mustache", "without a moustache"], ["without a goatee"],
                    ["without a beard"], ["not wearing lipstick", "without lipstick"],
                    ["with open eyes", "with the eyes open"]):
        assert any(says(c, phrases) for c in captions), phrases
    assert not any(says(c, ["without a beard"]) for c in
                   (caption_from_attributes({"No_Beard": 0}, s) for s in range(60)))
    crowded = {name: 0 for name in ("Smiling", "Eyeglasses", "Wearing_Hat", "Mustache", "Goatee",
                                    "Wearing_Lipstick", "Bangs", "Narrow_Eyes")}
    counts = [sum(says(c, [p]) for p in NEGATIONS) for c in
              (caption_from_attributes(crowded, s) for s in range(100))]
    assert max(counts) <= 3 < sum(counts)  # MAX_NEGATIVES per caption
    unknown = [caption_from_attributes({"Bangs": 1}, s) for s in range(60)]  # Smiling not given
    assert not any(says(c, ["smiling", "smile", "expression", "glasses", "hat"]) for c in unknown)


@pytest.mark.parametrize("light, yaw, side", [(-0.9, 0.0, "left"), (0.8, 0.0, "right"),
                                              (0.0, -0.8, "left"), (0.0, 0.9, "right")])
def test_direction_phrases(light, yaw, side):
    other = "right" if side == "left" else "left"
    row = {"light": light, "yaw": yaw, "roll": 0.0, "hair_style": 1}
    for seed in range(15):
        caption = caption_from_factors(row, seed, {"Smiling": 1})
        assert says(caption, [side]) and not says(caption, [other]), caption
        if light:
            assert says(caption, ["lit", "illuminated", "light"])
        else:
            assert says(caption, ["turned", "facing", "looking"])


def test_no_direction_phrase_below_thresholds_and_hair_length():
    row = {"light": 0.4, "yaw": -0.5, "roll": 0.0, "hair_style": 2, "background": 0.6}
    captions = [caption_from_factors(row, s, {"Black_Hair": 1}) for s in range(30)]
    assert not any(says(c, ["left", "right"]) for c in captions)
    assert all(says(c, ["long"]) for c in captions)
    assert any(says(c, ["blue"]) for c in captions)
    assert not any(says(c, ["red", "green", "yellow", "purple", "pink", "orange", "teal"]) for c in captions)


def test_background_colours_take_their_article():
    orange = [caption_from_factors({"background": 0.1}, s, {}) for s in range(40)]
    named = [c for c in orange if "orange" in c]
    assert named and all("an orange" in c for c in named)
    blue = [c for c in (caption_from_factors({"background": 0.6}, s, {}) for s in range(40))
            if "blue" in c]
    assert blue and all("a blue" in c for c in blue)


def test_hue_colour_names():
    assert [hue_colour_name(h) for h in (0.0, 0.1, 0.33, 0.6, 0.75, 0.99)] == [
        "red", "orange", "green", "blue", "purple", "red"]


def test_captions_for_dataset_matches_rows_and_is_subset_stable():
    factors = synthfaces.sample_factors(12, np.random.default_rng(3))
    attributes = synthfaces.attributes_from_factors(factors)
    captions = captions_for_dataset(attributes, factors, seed=5)
    assert len(captions) == 12 and all(isinstance(c, str) and c for c in captions)
    assert captions == captions_for_dataset(attributes, factors, seed=5)
    assert captions != captions_for_dataset(attributes, factors, seed=6)
    head = captions_for_dataset({k: v[:4] for k, v in attributes.items()},
                                {k: v[:4] for k, v in factors.items()}, seed=5)
    assert head == captions[:4]
    for i, caption in enumerate(captions):
        for name, words in KEYWORDS.items():
            if attributes[name][i]:
                assert says(caption, words), (name, caption)
        light = factors["light"][i]
        if abs(light) > 0.5:
            assert says(caption, ["left" if light < 0 else "right"]), caption
    # caption_from_factors derives the attributes itself when not given.
    row = {k: v[0] for k, v in factors.items()}
    own = caption_from_factors(row, 2)
    assert own == caption_from_factors(row, 2, {k: int(v[0]) for k, v in attributes.items()})
    assert len(captions_for_dataset({"Smiling": np.array([1, 0, 1])}, None, 0)) == 3


def test_zero_shot_phrases():
    assert set(ATTRIBUTE_PHRASES) == set(synthfaces.ATTRIBUTE_NAMES)
    assert zero_shot_prompts("Smiling") == ("a photo of a person smiling", "a photo of a person not smiling")
    for name in ATTRIBUTE_PHRASES:
        present, absent = zero_shot_prompts(name, noun="face")
        assert present != absent and present.startswith("a photo of a face ")


def test_bad_input():
    with pytest.raises(ValueError, match="unknown attribute"):
        caption_from_attributes({"Smilling": 1})
    with pytest.raises(ValueError, match="0/1"):
        caption_from_attributes({"Smiling": 2})
    with pytest.raises(ValueError, match="different lengths"):
        captions_for_dataset({"Smiling": np.array([1, 0]), "Bald": np.array([1])})
    with pytest.raises(ValueError, match="zero-shot"):
        zero_shot_prompts("Male")
