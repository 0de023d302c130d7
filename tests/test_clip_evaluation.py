"""The CLIP's measurements: zero-shot scores, the negation and facial-hair diagnostics, the
linear probe, paraphrased prompts; on tiny models and stand-ins."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.data.captions import ATTRIBUTE_PHRASES
from playground.evaluation.clip import retrieval_accuracy, zero_shot_accuracy
from playground.training.batches import image_source
from playground.training.trainers.clip_captions import caption_vocabulary
from tests.helpers import tiny_clip


def test_zero_shot_accuracy_and_baseline(small_sets):
    model = tiny_clip()
    _, val = small_sets
    feats = model.encode_image(torch.from_numpy(val.images).permute(0, 3, 1, 2).float() / 255)
    scores = zero_shot_accuracy(model, feats.detach(), val.attributes)
    y = val.attributes["Smiling"].astype(bool)
    assert scores["zero_shot_baseline_per_attribute"]["Smiling"] == pytest.approx(
        max(y.mean(), 1 - y.mean()))
    assert 0 <= scores["zero_shot_acc"] <= 1
    assert set(scores["zero_shot_acc_per_attribute"]) >= {"Smiling", "Eyeglasses", "Bald"}
    # an "oracle" whose image features are the prompt of its true Smiling value scores 1
    from playground.data.captions import zero_shot_prompts

    pos, neg = model.encode_text(list(zero_shot_prompts("Smiling"))).detach()
    oracle = torch.stack([pos if v else neg for v in y])
    perfect = zero_shot_accuracy(model, oracle, val.attributes)
    assert perfect["zero_shot_acc_per_attribute"]["Smiling"] == 1.0
    assert perfect["zero_shot_auc_per_attribute"]["Smiling"] == 1.0
    assert perfect["zero_shot_balanced_acc_per_attribute"]["Smiling"] == 1.0
    flipped = zero_shot_accuracy(model, torch.stack([neg if v else pos for v in y]), val.attributes)
    assert flipped["zero_shot_auc_per_attribute"]["Smiling"] == 0.0
    # retrieval: an "oracle" whose image features are its caption features scores 1
    captions = [f"caption number {i}" for i in range(10)]
    oracle = model.encode_text(captions).detach()
    assert retrieval_accuracy(model, oracle, captions, group=10) == 1.0


def test_the_negation_diagnostic_puts_a_neutral_prompt_beside_the_absent_one(small_sets):
    from playground.data.captions import zero_shot_prompts
    from playground.evaluation.clip import NEUTRAL_PROMPT, negation_diagnostic

    model = tiny_clip()
    _, val = small_sets
    feats = model.encode_image(torch.from_numpy(val.images).permute(0, 3, 1, 2).float() / 255)
    rows = negation_diagnostic(model, feats.detach(), val.attributes)
    headline = zero_shot_accuracy(model, feats.detach(), val.attributes)
    assert set(rows) == set(headline["zero_shot_auc_per_attribute"])
    for name, row in rows.items():  # the first margin is the headline's own
        assert row["auc_absent"] == pytest.approx(headline["zero_shot_auc_per_attribute"][name])
    # images that are the present prompt when smiling and the neutral one when not: the neutral
    # margin separates them perfectly, whatever the absent prompt is
    y = val.attributes["Smiling"].astype(bool)
    pos = model.encode_text([zero_shot_prompts("Smiling")[0]]).detach()[0]
    neutral = model.encode_text([NEUTRAL_PROMPT]).detach()[0]
    split = negation_diagnostic(model, torch.stack([pos if v else neutral for v in y]),
                                val.attributes)
    assert split["Smiling"]["auc_neutral"] == 1.0
    # a word no caption had is named (the tiny model was told which tokens it knows)
    known = tuple(int(t) for t in model.tokenize(["a photo of a person smiling"])[0])
    told = tiny_clip(known_tokens=known)
    assert negation_diagnostic(told, feats.detach(), val.attributes)["Smiling"][
        "unknown_words"] == ["not"]


def test_the_facial_hair_diagnostic_splits_the_margin_by_the_other_kind():
    """Faces that are the present prompt (mustaches, and beards: the confusion the diagnostic
    is for) or the absent prompt (none, goatees): the Mustache margin separates mustaches from
    none and goatees perfectly and ties with beards; a kind with no face is left out."""
    from playground.data.captions import zero_shot_prompts
    from playground.evaluation.clip import facial_hair_diagnostic

    model = tiny_clip()
    present, absent = model.encode_text(list(zero_shot_prompts("Mustache"))).detach()
    kinds = np.array([0, 1, 1, 2, 3, 3, 0, 1])
    feats = torch.stack([present if k in (1, 3) else absent for k in kinds])
    rows = facial_hair_diagnostic(model, feats, kinds)
    assert rows["Mustache"] == {"none": 1.0, "goatee": 1.0, "beard": 0.5}
    assert set(rows["Goatee"]) == {"none", "mustache", "beard"}
    assert facial_hair_diagnostic(model, feats[:4], kinds[:4])["Mustache"] == {
        "none": 1.0, "goatee": 1.0}  # no beard among the first four


def test_linear_probe_reads_hair_colour_from_the_patch_embeddings(small_sets):
    from playground.evaluation.clip import linear_probe, patch_embeddings

    train, val = small_sets
    model = tiny_clip()
    patches = patch_embeddings(model, image_source(val, torch.device("cpu")))
    assert patches.shape == (64, 16 * (64 // 16) ** 2)  # width × patches, before any attention
    probe = linear_probe(model, train, val, features="patches")
    assert set(probe) <= set(ATTRIBUTE_PHRASES) and "Black_Hair" in probe
    assert all(0 <= v <= 1 for v in probe.values())
    # hair colour covers many pixels: a random linear patch embedding keeps it readable
    assert probe["Black_Hair"] > 0.75 and probe["Blond_Hair"] > 0.75
    embedded = linear_probe(model, train, val, names=("Black_Hair",))
    assert set(embedded) == {"Black_Hair"}


def test_paraphrased_zero_shot_prompts_use_the_rich_captions_words(small_sets):
    """The paraphrase check asks the same question in other words, all of them words a CLIP
    trained on the rich captions has read; with the headline's phrases it is the headline."""
    from types import SimpleNamespace

    from playground.data.synthfaces import attributes_from_factors, sample_factors
    from playground.evaluation.clip import PARAPHRASE_NOUN, PARAPHRASES

    assert set(PARAPHRASES) == set(ATTRIBUTE_PHRASES)
    assert all(PARAPHRASES[a] != ATTRIBUTE_PHRASES[a] for a in ("Pale_Skin", "Smiling", "Chubby"))
    model = tiny_clip()
    _, val = small_sets
    feats = model.encode_image(torch.from_numpy(val.images).permute(0, 3, 1, 2).float() / 255)
    headline = zero_shot_accuracy(model, feats.detach(), val.attributes)
    same = zero_shot_accuracy(model, feats.detach(), val.attributes, ATTRIBUTE_PHRASES, "person")
    assert same["zero_shot_auc"] == pytest.approx(headline["zero_shot_auc"])
    other = zero_shot_accuracy(model, feats.detach(), val.attributes, PARAPHRASES, PARAPHRASE_NOUN)
    assert other["zero_shot_auc"] != pytest.approx(headline["zero_shot_auc"])
    factors = sample_factors(20_000, np.random.default_rng(0))
    faces = SimpleNamespace(factors=factors, attributes=attributes_from_factors(factors))
    told = tiny_clip(known_tokens=caption_vocabulary(faces, model, absent="rich"))
    unread = {p: told.unknown_words(f"a photo of a {PARAPHRASE_NOUN} {p}")
              for pair in PARAPHRASES.values() for p in pair}
    assert not any(unread.values()), {p: w for p, w in unread.items() if w}
