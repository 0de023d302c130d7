"""The CLIP trainer on tiny runs: what trains, what stays frozen, captions and hard negatives,
resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.data.captions import ATTRIBUTE_PHRASES
from playground.models.clip import (
    EMBEDDING_KEY,
    TextImageCLIP,
)
from playground.store.checkpoints import load_model, save_model
from playground.training.trainers.clip import CLIPTrainConfig, train_clip
from playground.training.trainers.clip_captions import caption_vocabulary
from tests.helpers import TINY_CLIP, tiny_clip


def test_train_clip_tiny_run_writes_a_loadable_model(tmp_path, small_sets):
    train, val = small_sets
    cfg = CLIPTrainConfig(**TINY_CLIP,
                          batch_size=32, max_steps=3, threads=1, progress=False,
                          out=str(tmp_path / "run"))
    metrics = train_clip(cfg, train_set=train, val_set=val)
    assert metrics["steps"] == 3 and 0 <= metrics["zero_shot_acc"] <= 1
    assert metrics["vocabulary_tokens"] > 20
    model = load_model(tmp_path / "run")
    assert isinstance(model, TextImageCLIP)
    assert model.unknown_words("a smiling person with glasses") == []
    assert model.unknown_words("a smiling astronaut") == ["astronaut"]
    assert len(model.config.known_tokens) == metrics["vocabulary_tokens"]
    assert set(model.config.known_tokens) == set(caption_vocabulary(train, model))


def _train_then_freeze(tmp_path, small_sets, second: str, **second_options) -> dict:
    """A tiny run in tmp_path/first, then one warm-started from it with its text states frozen
    in tmp_path/<second>; returns the options both share."""
    train, val = small_sets
    common = dict(**TINY_CLIP, batch_size=32, max_steps=3, threads=1, progress=False,
                  amp="none", layout="contiguous")
    train_clip(CLIPTrainConfig(**common, out=str(tmp_path / "first")), train_set=train,
               val_set=val)
    train_clip(CLIPTrainConfig(**common, init=str(tmp_path / "first"), freeze_text_states=True,
                               out=str(tmp_path / second), **second_options),
               train_set=train, val_set=val)
    return common


def test_freezing_the_text_states_trains_only_what_no_unet_reads(tmp_path, small_sets):
    train, val = small_sets
    common = _train_then_freeze(tmp_path, small_sets, "second")
    first, second = load_model(tmp_path / "first"), load_model(tmp_path / "second")
    tokens = first.tokenize(["a smiling person with glasses", "a bald man"])
    torch.testing.assert_close(second.encode_text_tokens(tokens), first.encode_text_tokens(tokens),
                               rtol=0, atol=0)
    assert set(first.text_state_tensors()) >= {EMBEDDING_KEY, "clip.positional_embedding",
                                               "clip.ln_final.weight"}
    moved = [name for name, p in second.state_dict().items()
             if not torch.equal(p, first.state_dict()[name])]
    assert any(n.startswith("clip.visual.") for n in moved) and "clip.text_projection" in moved
    assert not set(moved) & set(first.text_state_tensors())
    with pytest.raises(ValueError, match="--init"):  # random states are nothing to keep
        train_clip(CLIPTrainConfig(**common, freeze_text_states=True,
                                   out=str(tmp_path / "third")), train_set=train, val_set=val)
    assert not (tmp_path / "third").exists()


def test_a_text_head_trains_on_frozen_states_and_ships_alone(tmp_path, small_sets):
    from playground.training.ship import same_conditioning

    _train_then_freeze(tmp_path, small_sets, "headed", text_head_layers=1)
    first, headed = load_model(tmp_path / "first"), load_model(tmp_path / "headed")
    assert headed.config.text_head_layers == 1 and headed.text_head is not None
    assert float(headed.text_head.out.weight.detach().abs().sum()) > 0  # it learned from zero
    assert same_conditioning(tmp_path / "headed", tmp_path / "first")
    prompts = ["a photo of a person smiling", "a photo of a person not smiling"]
    with torch.no_grad():
        assert not torch.allclose(headed.encode_text(prompts), first.encode_text(prompts))


def test_a_frozen_image_tower_keeps_every_image_embedding_while_the_text_head_learns(
        tmp_path, small_sets):
    _train_then_freeze(tmp_path, small_sets, "text_only", text_head_layers=1,
                       freeze_words=True, freeze_image_tower=True)
    first, text_only = load_model(tmp_path / "first"), load_model(tmp_path / "text_only")
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(text_only.encode_image(images), first.encode_image(images),
                                   rtol=0, atol=0)
    moved = {name for name, p in text_only.state_dict().items()
             if name in first.state_dict() and not torch.equal(p, first.state_dict()[name])}
    assert moved and moved <= {"clip.text_projection", "clip.logit_scale"}, moved
    assert float(text_only.text_head.out.weight.detach().abs().sum()) > 0  # learned from zero
    common = dict(**TINY_CLIP, batch_size=32, max_steps=3, threads=1, progress=False)
    with pytest.raises(ValueError, match="--freeze-text-states"):
        CLIPTrainConfig(**common, freeze_image_tower=True)
    with pytest.raises(ValueError, match="image embedding"):
        CLIPTrainConfig(**common, freeze_text_states=True, freeze_image_tower=True,
                        attribute_weight=1.0)


def test_a_detail_stem_trains_on_frozen_states_ships_alone_and_resumes(tmp_path, small_sets):
    from playground.training.ship import same_conditioning

    common = _train_then_freeze(tmp_path, small_sets, "stemmed", vision_stem=(4, 4, 8, 8, 8))
    stemmed = load_model(tmp_path / "stemmed")
    assert stemmed.config.vision_stem == (4, 4, 8, 8, 8)
    assert float(stemmed.clip.visual.conv1.out.weight.detach().abs().sum()) > 0  # learned
    assert same_conditioning(tmp_path / "stemmed", tmp_path / "first")
    train, val = small_sets  # the stem is part of the architecture a resume keeps
    train_clip(CLIPTrainConfig(**{**common, "max_steps": 4}, vision_stem=(4, 4, 8, 8, 8),
                               freeze_text_states=True, init=str(tmp_path / "first"),
                               out=str(tmp_path / "stemmed")),
               resume=True, train_set=train, val_set=val)
    assert load_model(tmp_path / "stemmed").config.vision_stem == (4, 4, 8, 8, 8)
    with pytest.raises(ValueError, match="vision_stem"):
        train_clip(CLIPTrainConfig(**{**common, "max_steps": 5}, vision_stem=(4, 4, 8, 8, 16),
                                   freeze_text_states=True, init=str(tmp_path / "first"),
                                   out=str(tmp_path / "stemmed")),
                   resume=True, train_set=train, val_set=val)


def test_training_captions_use_only_the_shipped_clips_words():
    """A new caption word would change `known_tokens`, and the shipped U-Net's text states with
    it: then no CLIP retrained with --freeze-text-states could ship without a new U-Net."""
    from types import SimpleNamespace

    from playground.data.synthfaces import attributes_from_factors, sample_factors
    from playground.store.checkpoints import trained_dir

    if not (trained_dir() / "clip" / "config.json").is_file():
        pytest.skip("no shipped CLIP")
    shipped = load_model(trained_dir() / "clip")
    factors = sample_factors(20_000, np.random.default_rng(0))
    faces = SimpleNamespace(factors=factors, attributes=attributes_from_factors(factors))
    words = set(caption_vocabulary(faces, shipped))
    new_words = words - set(shipped.config.known_tokens)
    assert not new_words, f"token ids the shipped CLIP never learned: {sorted(new_words)}"


def test_an_averaged_clip_ships_the_average_and_keeps_the_unets_text_states(tmp_path,
                                                                             small_sets):
    from playground.training.ship import same_conditioning
    from playground.training.state import load_train_state

    _train_then_freeze(tmp_path, small_sets, "averaged", ema_decay=0.9)
    first, averaged = load_model(tmp_path / "first"), load_model(tmp_path / "averaged")
    raw, _, _ = load_train_state(tmp_path / "averaged")
    shipped = averaged.state_dict()
    assert same_conditioning(tmp_path / "averaged", tmp_path / "first")
    moved = [n for n, p in raw.items() if not torch.equal(p, first.state_dict()[n])]
    assert moved and any(n.startswith("clip.visual.") for n in moved)
    for name in moved:  # the average trails the raw weights: strictly between start and end
        start, end, mean = first.state_dict()[name], raw[name], shipped[name]
        assert not torch.equal(mean, end) and not torch.equal(mean, start), name
        assert float((mean - start).norm()) < float((end - start).norm()), name
    with pytest.raises(ValueError, match="ema_decay"):
        CLIPTrainConfig(**TINY_CLIP, ema_decay=1.0)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_train_clip_resume_is_exact(tmp_path, small_sets, ema_decay):
    train, val = small_sets
    base = {**TINY_CLIP, "ema_decay": ema_decay}
    # constant lr: a cosine over 2 vs 4 steps would differ
    common = dict(batch_size=32, threads=1, progress=False, checkpoint_minutes=0.0,
                  lr_schedule="constant", amp="none", layout="contiguous")
    full = CLIPTrainConfig(**base, **common, max_steps=4, out=str(tmp_path / "full"))
    train_clip(full, train_set=train, val_set=val)
    half = CLIPTrainConfig(**base, **common, max_steps=2, out=str(tmp_path / "half"))
    train_clip(half, train_set=train, val_set=val)
    rest = CLIPTrainConfig(**base, **common, max_steps=4, out=str(tmp_path / "half"))
    train_clip(rest, resume=True, train_set=train, val_set=val)
    a, b = load_model(tmp_path / "full"), load_model(tmp_path / "half")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert not np.isclose(0, sum(float(p.detach().abs().sum()) for p in a.parameters()))


def test_contrastive_loss_is_clips_and_hard_negatives_enter_the_image_side():
    import open_clip

    from playground.training.trainers.clip_losses import contrastive_loss

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(7.0)
    torch.testing.assert_close(contrastive_loss(img, txt, scale),
                               open_clip.ClipLoss()(img, txt, scale))
    # a hard negative equal to an image's own caption ties with it: that image's term becomes
    # log(e^a + e^a + rest) - a, i.e. the image side grows by exactly what the closed form says
    neg = txt.clone()
    logits = scale * img @ txt.T
    per_image = (torch.logsumexp(torch.cat([logits, logits], dim=1), dim=1) - logits.diag()).mean()
    per_text = torch.nn.functional.cross_entropy(logits.T, torch.arange(6))
    torch.testing.assert_close(contrastive_loss(img, txt, scale, neg),
                               0.5 * (per_image + per_text))


def test_hard_negative_captions_flip_one_attribute_and_keep_the_phrasing(small_sets):
    from playground.training.trainers.clip_captions import CaptionTokens, flip_one_attribute

    train = small_sets[0]
    attrs = {k: np.asarray(v)[:64] for k, v in train.attributes.items()}
    names = [a for a in ATTRIBUTE_PHRASES if a in attrs]
    flipped = flip_one_attribute(attrs, names, np.random.default_rng(0))
    changed = np.stack([flipped[a] != attrs[a] for a in attrs])  # (A, N)
    assert (changed.sum(axis=0) == 1).all()  # exactly one attribute per face
    assert changed[[list(attrs).index(a) for a in names]].sum() == 64  # only flippable ones
    model = tiny_clip(context_length=77)
    captions = CaptionTokens(train, model, seed=0, hard_negatives=True)
    positives, negatives = captions.for_epoch(0), captions.negatives_for_epoch(0)[0]
    assert captions.negatives_for_epoch(0).shape == (1, *positives.shape)
    different = (positives != negatives).any(dim=1).float().mean()
    assert different > 0.9  # nearly every flip changes the words (a few phrases coincide)
    same_start = (positives[:, :3] == negatives[:, :3]).all(dim=1).float().mean()
    assert same_start > 0.5  # the same caption seed: most keep their opening words
    assert not torch.equal(captions.negatives_for_epoch(1)[0], negatives)  # redrawn each epoch


def test_a_negative_that_takes_a_feature_away_says_so(small_sets):
    from playground.data.captions import captions_for_dataset
    from playground.training.trainers.clip_captions import CaptionTokens

    train = small_sets[0]
    attrs = {k: np.asarray(v) for k, v in train.attributes.items()}
    factors = {k: np.asarray(v) for k, v in train.factors.items()}
    n = len(attrs["Brown_Hair"])
    bare = {**attrs, "Brown_Hair": np.zeros(n, dtype=attrs["Brown_Hair"].dtype)}
    phrase = "with hair that is not brown"
    plain = captions_for_dataset(bare, factors, seed=3, absent="rich")
    said = captions_for_dataset(bare, factors, seed=3, absent="rich",
                                say_absent=["Brown_Hair"] * n)
    assert all(phrase in c for c in said)
    assert sum(phrase in c for c in plain) < n / 2  # by chance, 3 times in 10
    assert all(a == b for a, b in zip(plain, said) if phrase in a)  # nothing else changes
    kept = captions_for_dataset(attrs, factors, seed=3, absent="rich",
                                say_absent=["Brown_Hair"] * n)  # a face with it: no "not"
    assert not any(phrase in c for c, has in zip(kept, attrs["Brown_Hair"]) if has)
    with pytest.raises(ValueError, match="one entry per face"):
        captions_for_dataset(attrs, factors, say_absent=["Brown_Hair"])
    model = tiny_clip(context_length=77)
    usual, saying = (CaptionTokens(train, model, seed=0, hard_negatives=True,
                                   negatives_per_image=4, absent="rich", say_absent=flag)
                     for flag in (False, True))
    assert torch.equal(usual.for_epoch(0), saying.for_epoch(0))  # positives stay
    longer = (saying.negatives_for_epoch(0) != 0).sum() - (usual.negatives_for_epoch(0) != 0).sum()
    assert longer > 0  # the negatives gained words


def test_paired_absence_makes_a_caption_and_its_negative_differ_by_not(small_sets):
    from playground.data.captions import captions_for_dataset
    from playground.training.trainers.clip_captions import CaptionTokens

    train = small_sets[0]
    attrs = {k: np.asarray(v) for k, v in train.attributes.items()}
    factors = {k: np.asarray(v) for k, v in train.factors.items()}
    model = tiny_clip(context_length=77)
    captions = CaptionTokens(train, model, seed=0, hard_negatives=True, pool=("Brown_Hair",),
                             absent="rich", say_absent=True, pair_absent=True)
    n, has = len(attrs["Brown_Hair"]), attrs["Brown_Hair"].astype(bool)
    seed, flipped = 0 * 100_003 + 0, {**attrs, "Brown_Hair": 1 - attrs["Brown_Hair"]}
    positives = captions_for_dataset(attrs, factors, seed=seed, absent="rich",
                                     say_absent=["Brown_Hair"] * n)
    negatives = captions_for_dataset(flipped, factors, seed=seed, absent="rich",
                                     say_absent=["Brown_Hair"] * n)
    assert torch.equal(captions.for_epoch(0), model.tokenize(positives))
    assert torch.equal(captions.negatives_for_epoch(0)[0], model.tokenize(negatives))
    phrase = "hair that is not brown"
    assert all((phrase in p) != h and (phrase in q) == h  # one of the pair says "not"
               for p, q, h in zip(positives, negatives, has))
    with pytest.raises(ValueError, match="say_absent"):
        CaptionTokens(train, model, seed=0, hard_negatives=True, pair_absent=True)
    with pytest.raises(ValueError, match="--negatives-say-absent"):
        CLIPTrainConfig(**TINY_CLIP, pair_absent=True)


def test_a_hidden_hair_colour_leaves_not_brown_against_brown_as_the_only_colour_words(
        small_sets):
    from playground.data.captions import _HAIR_COLOURS, HAIR_COLOUR_NAMES
    from playground.training.trainers.clip_captions import CaptionTokens

    train = small_sets[0]
    attrs = {k: np.asarray(v).astype(bool) for k, v in train.attributes.items()}
    model = tiny_clip(context_length=77)
    captions = CaptionTokens(train, model, seed=0, hard_negatives=True, negatives_per_image=2,
                             absent="rich", hide_hair_colour=0.5)
    positives, negatives = captions.texts(0)
    has = np.stack([attrs[c] for c in HAIR_COLOUR_NAMES], axis=1)

    def colours_named(text: str) -> set[str]:
        """The colours a caption gives the hair: the words just before "hair" ("long wavy
        chestnut hair"), not those after it ("hair that is not brown")."""
        named = set()
        for clause in text.split(","):
            words = clause.split()
            for j in (j for j, w in enumerate(words) if w == "hair" and words[j + 1:j + 2] != ["that"]):
                before = []
                for w in reversed(words[max(0, j - 3):j]):
                    if w in ("and", "with"):
                        break
                    before.append(w)
                named |= {c for c, ws in _HAIR_COLOURS.items() if set(ws) & set(before)}
        return named

    hidden = 0
    for i in np.flatnonzero(has.sum(axis=1) == 1):
        own = HAIR_COLOUR_NAMES[int(np.argmax(has[i]))]
        if colours_named(positives[i]) == {own}:
            continue  # shown as usual
        hidden += 1
        assert colours_named(positives[i]) == set()  # no colour named at all
        lacks = [c for c, ws in _HAIR_COLOURS.items() if f"hair that is not {ws[0]}" in positives[i]]
        assert lacks and own not in lacks  # but one it lacks is said to be missing
        # and its first negative names one of those instead (its own stays unsaid)
        assert colours_named(negatives[0][i]) & set(lacks)
        assert own not in colours_named(negatives[0][i])
    with_one = int((has.sum(axis=1) == 1).sum())
    assert 0.3 * with_one < hidden < 0.7 * with_one
    assert torch.equal(captions.for_epoch(0), model.tokenize(positives))  # the same draw
    assert torch.equal(captions.negatives_for_epoch(0)[0], model.tokenize(negatives[0]))
    with pytest.raises(ValueError, match="rich"):
        CaptionTokens(train, model, seed=0, hard_negatives=True, hide_hair_colour=0.5)
    with pytest.raises(ValueError, match="--hide-hair-colour"):
        CLIPTrainConfig(**TINY_CLIP, hide_hair_colour=0.5)
    with pytest.raises(ValueError, match="shares of faces"):
        CLIPTrainConfig(**TINY_CLIP, hide_hair_colour=1.5)


def test_a_hidden_mustache_or_goatee_is_called_a_beard_against_without_a_beard(small_sets):
    from playground.training.trainers.clip_captions import CaptionTokens

    train = small_sets[0]
    attrs = {k: np.asarray(v).astype(bool) for k, v in train.attributes.items()}
    model = tiny_clip(context_length=77)
    # without say_absent too: the pair still differs by "without a beard"
    options = dict(seed=0, hard_negatives=True, negatives_per_image=2, absent="rich")
    usual = CaptionTokens(train, model, **options).texts(0)[0]
    positives, negatives = CaptionTokens(train, model, hide_facial_hair=0.5, **options).texts(0)
    one = set(np.flatnonzero(attrs["Mustache"] ^ attrs["Goatee"]).tolist())
    hidden = [i for i in range(len(usual)) if positives[i] != usual[i]]
    assert set(hidden) <= one  # only a face with a mustache or a goatee alone changes
    assert 0.3 * len(one) < len(hidden) < 0.7 * len(one)
    for i in hidden:
        # "beard" is never said of such a face otherwise; its first negative flips No_Beard
        assert "beard" in positives[i] and "without a beard" not in positives[i]
        assert "without a beard" in negatives[0][i]
    with pytest.raises(ValueError, match="No_Beard"):
        CaptionTokens(train, model, seed=0, hard_negatives=True, pool=("Brown_Hair",),
                      hide_facial_hair=0.5)


def test_several_hard_negatives_flip_different_small_details(small_sets):
    from playground.data.captions import captions_for_dataset
    from playground.evaluation.quality import SMALL_DETAILS
    from playground.training.trainers.clip_captions import NEGATIVE_POOLS, CaptionTokens

    train = small_sets[0]
    model = tiny_clip(context_length=77)
    captions = CaptionTokens(train, model, seed=0, hard_negatives=True, negatives_per_image=3,
                             pool=NEGATIVE_POOLS["small"])
    positives, negatives = captions.for_epoch(0), captions.negatives_for_epoch(0)
    assert negatives.shape == (3, *positives.shape)
    # rebuild each negative's attributes from its words: the flipped attribute is found by
    # trying every small detail on the positive caption's attributes, one at a time
    attrs = {k: np.asarray(v) for k, v in train.attributes.items()}
    n = len(positives)
    seed = 0 * 100_003 + 0
    flipped_by = np.full((3, n), -1)
    for j, name in enumerate(SMALL_DETAILS):
        one = {k: v.copy() for k, v in attrs.items()}
        one[name] = 1 - one[name]
        tokens = model.tokenize(captions_for_dataset(one, train.factors, seed=seed))
        for k in range(3):
            flipped_by[k][(tokens == negatives[k]).all(dim=1).numpy()] = j
    found = (flipped_by >= 0).all(axis=0)
    assert found.mean() > 0.9  # every negative is its caption with one small detail flipped
    assert (flipped_by[0][found] != flipped_by[1][found]).all()  # K different details per face
    assert (flipped_by[1][found] != flipped_by[2][found]).all()
    assert (flipped_by[0][found] != flipped_by[2][found]).all()
    assert len(set(flipped_by[0][found].tolist())) > 5  # drawn from the whole pool


def test_balanced_negatives_flip_a_rare_feature_as_often_where_it_is_as_where_it_is_not(
        small_sets):
    from playground.training.trainers.clip_captions import CaptionTokens, balanced_flip_keys

    rng = np.random.default_rng(0)
    n = 20_000
    shares = {"rare": 0.15, "half": 0.5, "common": 0.8, "a": 0.3, "b": 0.4, "c": 0.6}
    attrs = {name: (rng.random(n) < p).astype(np.uint8) for name, p in shares.items()}
    names = list(attrs)
    for keys, balanced in ((rng.random((n, len(names))), False),
                           (balanced_flip_keys(attrs, names, n, 2, rng), True)):
        first_two = np.argsort(keys, axis=1)[:, :2]  # two negatives per face
        for j, name in enumerate(names):
            flipped = (first_two == j).any(axis=1)
            on_faces_with_it = attrs[name][flipped].mean()
            if balanced:
                assert 0.45 < on_faces_with_it < 0.55, (name, on_faces_with_it)
            elif name != "half":  # uniform picks follow the feature's share
                assert abs(on_faces_with_it - attrs[name].mean()) < 0.03
    model = tiny_clip(context_length=77)
    train = small_sets[0]
    plain, balanced = (CaptionTokens(train, model, seed=0, hard_negatives=True,
                                     negatives_per_image=2, balanced=b) for b in (False, True))
    assert torch.equal(plain.for_epoch(0), balanced.for_epoch(0))  # the same positives
    assert not torch.equal(plain.negatives_for_epoch(0), balanced.negatives_for_epoch(0))


def test_negative_options_are_checked():
    with pytest.raises(ValueError, match="negative_pool"):
        CLIPTrainConfig(negative_pool="large")
    with pytest.raises(ValueError, match="negatives_per_image"):
        CLIPTrainConfig(negative_pool="small", negatives_per_image=10)


def test_new_words_learn_their_rows_while_the_unets_states_stay_exact(tmp_path, small_sets):
    """--absent-phrases rich with frozen states: the words no plain caption has ("darker",
    "slim", …) train their embedding rows; every prompt of the init's words keeps its states
    bit for bit, so the run ships alone, and the Prompt tab still calls the new words unknown
    to the U-Net."""
    from playground.training.ship import same_conditioning

    _train_then_freeze(tmp_path, small_sets, "rich", absent_phrases="rich")
    first, rich = load_model(tmp_path / "first"), load_model(tmp_path / "rich")
    new = sorted(set(rich.config.known_tokens) - set(first.config.known_tokens))
    assert new and rich.config.state_tokens == first.config.known_tokens
    table, old_table = rich.clip.token_embedding.weight, first.clip.token_embedding.weight
    assert bool((table[new].abs().sum(dim=1) > 0).all())  # drawn, then trained
    assert not old_table[new].any()  # the init had never read them
    tokens = first.tokenize(["a smiling person with glasses", "a bald man", ""])
    torch.testing.assert_close(rich.encode_text_tokens(tokens, words=True),
                               first.encode_text_tokens(tokens, words=True), rtol=0, atol=0)
    assert same_conditioning(tmp_path / "rich", tmp_path / "first")
    prompt = "a photo of a person with hair that is not black"
    assert first.unknown_words(prompt) == ["that", "is"]
    assert rich.unknown_words(prompt) == []
    assert rich.unknown_words(prompt, states=True) == ["that", "is"]
    from playground.pipelines.prompts import prompt_info  # the Prompt tab's note

    assert prompt_info(prompt, rich).unknown_words == ["that", "is"]
    # but a change to a row the U-Net reads is refused
    with torch.no_grad():
        rich.clip.token_embedding.weight[first.config.known_tokens[0]] += 1e-3
    save_model(tmp_path / "rich-moved", rich)
    assert not same_conditioning(tmp_path / "rich-moved", tmp_path / "first")


def test_rich_absent_phrases_say_only_what_a_face_lacks():
    from playground.data.captions import ATTRIBUTE_PHRASES, captions_for_dataset
    from playground.data.synthfaces import attributes_from_factors, sample_factors

    factors = sample_factors(3000, np.random.default_rng(1))
    attributes = attributes_from_factors(factors)
    plain = captions_for_dataset(attributes, factors, seed=4)
    rich = captions_for_dataset(attributes, factors, seed=4, absent="rich")
    assert plain == captions_for_dataset(attributes, factors, seed=4, absent="plain")
    assert rich != plain
    for name in ("Pale_Skin", "Chubby", "Arched_Eyebrows", "Mouth_Slightly_Open", "Gray_Hair"):
        absent = ATTRIBUTE_PHRASES[name][1]
        said = np.array([absent in c for c in rich])
        assert said.any() and not said[attributes[name] == 1].any(), name
        assert not any(absent in c for c in plain), name
    with pytest.raises(ValueError, match="absent"):
        captions_for_dataset(attributes, factors, absent="fancy")


def test_freezing_the_words_too_trains_nothing_of_the_text_side_but_its_projection(
        tmp_path, small_sets):
    """--freeze-words from a CLIP whose rich-phrase words already learned their rows: no
    embedding row moves (so the text pass needs no backward), the image side and the
    projection still learn; from an init that never trained those rows it is refused."""
    train, val = small_sets
    common = _train_then_freeze(tmp_path, small_sets, "rich", absent_phrases="rich")
    options = dict(**common, freeze_text_states=True, freeze_words=True, absent_phrases="rich")
    train_clip(CLIPTrainConfig(**options, init=str(tmp_path / "rich"), out=str(tmp_path / "frozen")),
               train_set=train, val_set=val)
    rich, frozen = load_model(tmp_path / "rich"), load_model(tmp_path / "frozen")
    assert torch.equal(frozen.clip.token_embedding.weight, rich.clip.token_embedding.weight)
    moved = [name for name, p in frozen.state_dict().items()
             if not torch.equal(p, rich.state_dict()[name])]
    assert any(n.startswith("clip.visual.") for n in moved) and "clip.text_projection" in moved
    assert not set(moved) & set(rich.text_state_tensors())
    with pytest.raises(ValueError, match="never trained"):  # "first" has no rich words
        train_clip(CLIPTrainConfig(**options, init=str(tmp_path / "first"),
                                   out=str(tmp_path / "zero-rows")), train_set=train, val_set=val)
    with pytest.raises(ValueError, match="--freeze-text-states"):
        CLIPTrainConfig(**TINY_CLIP, freeze_words=True)
