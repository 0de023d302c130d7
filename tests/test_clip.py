"""The playground CLIP (open_clip classes) and its trainer, on tiny models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.data.captions import ATTRIBUTE_PHRASES
from playground.data.synthfaces import SynthFacesDataset
from playground.evaluation.clip import retrieval_accuracy, zero_shot_accuracy
from playground.models.clip import (
    EMBEDDING_KEY,
    KNOWN_ROWS_KEY,
    CLIPConfig,
    TextImageCLIP,
)
from playground.models.clip_pretrained import (
    PretrainedCLIPAdapter,
    PretrainedUnavailableError,
    load_pretrained_clip,
)
from playground.store.checkpoints import load_model, save_model
from playground.store.files import read_safetensors, save_safetensors
from playground.training.batches import image_source
from playground.training.trainers.clip import CLIPTrainConfig, train_clip
from playground.training.trainers.clip_captions import caption_vocabulary

TINY = dict(embed_dim=8, patch_size=16, vision_width=16, vision_layers=1, vision_head_width=8,
            context_length=24, text_width=16, text_heads=2, text_layers=1)


def tiny_clip(seed: int = 0, **overrides) -> TextImageCLIP:
    torch.manual_seed(seed)
    return TextImageCLIP(CLIPConfig(**{**TINY, **overrides})).eval()


def test_tokenize_mask_and_truncation():
    model = tiny_clip()
    tokens = model.tokenize(["a smiling person", ""])
    assert tokens.shape == (2, 24) and tokens.dtype == torch.int64
    mask = model.text_mask(tokens)
    assert mask[0].sum() == model.token_count("a smiling person") == 5  # start, 3 words, end
    assert mask[1].sum() == 2  # the empty prompt: start and end tokens only
    assert model.truncated(["word " * 30, "a face"]) == [True, False]
    long = model.tokenize(["word " * 30])
    assert model.text_mask(long).all()  # cut to the context, still ending in the end token
    assert long[0, -1] == long.max()
    with pytest.raises(ValueError, match="string"):
        model.tokenize([None])


def test_text_embedding_matches_open_clip_and_trimming_is_exact():
    model = tiny_clip()
    tokens = model.tokenize(["a smiling woman with blond hair", "a man", ""])
    with torch.no_grad():
        ours = model.encode_text(tokens)
        reference = model.clip.encode_text(tokens, normalize=True)  # open_clip, full context
        full = model.encode_text_tokens(tokens)
        trimmed_tokens = model.trim_tokens(tokens)
        trimmed = model.encode_text_tokens(trimmed_tokens)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert full.shape == (3, 24, 16)
    assert trimmed_tokens.shape[1] == model.token_count("a smiling woman with blond hair")
    torch.testing.assert_close(trimmed, full[:, :trimmed.shape[1]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(3))
    # different prompts, different states (the context carries the words)
    assert (full[0] - full[1]).abs().max() > 1e-3


def test_encode_image_shapes_and_checks():
    model = tiny_clip()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        f = model.encode_image(x)
        img, txt, scale = model(x, model.tokenize(["a", "b", "c"]))
    assert f.shape == (3, 8)
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(img, f)
    assert txt.shape == (3, 8) and scale.item() > 0
    with pytest.raises(ValueError):
        model.encode_image(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError):
        model.encode_image(torch.rand(1, 3, 64, 64) * 3)


def test_save_load_round_trip_keeps_weights_and_vocabulary(tmp_path):
    prompt = "a smiling face"
    known = tuple(tiny_clip().tokenize([prompt])[0].unique().tolist())  # start, words, end, pad
    model = tiny_clip(seed=3, known_tokens=known)
    save_model(tmp_path / "clip", model)
    loaded = load_model(tmp_path / "clip")
    assert isinstance(loaded, TextImageCLIP)
    assert loaded.config == model.config
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(x), model.encode_image(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_text([prompt]), model.encode_text([prompt]),
                                   rtol=0, atol=0)


def test_the_image_embedding_pools_the_class_token_or_the_patch_mean(tmp_path):
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for pool, is_patch_mean in (("tok", False), ("avg", True)):
        model = tiny_clip(vision_pool=pool)
        visual = model.clip.visual
        visual.output_tokens = True  # open_clip then also returns the patch tokens
        with torch.no_grad():
            x = (images - model.image_mean) / model.image_std
            pooled, patches = visual(x)
        patch_mean = patches.mean(dim=1) @ visual.proj
        assert torch.allclose(pooled, patch_mean, atol=1e-5) == is_patch_mean
        save_model(tmp_path / pool, model)
        assert load_model(tmp_path / pool).config.vision_pool == pool
    with pytest.raises(ValueError, match="vision_pool must be one of"):
        CLIPConfig(vision_pool="max")


def test_saved_file_keeps_only_the_known_embedding_rows(tmp_path):
    known = (0, 320, 9200, 49406, 49407)  # the padding row (0) is always kept
    model = tiny_clip(seed=3, known_tokens=known[1:])
    save_model(tmp_path / "clip", model)
    tensors, _ = read_safetensors(tmp_path / "clip" / "model.safetensors")
    assert EMBEDDING_KEY not in tensors
    assert tensors[KNOWN_ROWS_KEY].shape == (len(known), 16)  # (K, D), not (49,408, D)
    table = load_model(tmp_path / "clip").clip.token_embedding.weight
    original = model.clip.token_embedding.weight
    torch.testing.assert_close(table[list(known)], original[list(known)], rtol=0, atol=0)
    others = torch.ones(table.shape[0], dtype=torch.bool)
    others[list(known)] = False
    assert table[others].abs().max() == 0  # never-trained rows come back as zeros
    # a file holding the whole table (as shipped before) still loads, unchanged
    save_safetensors(tmp_path / "clip" / "model.safetensors", dict(model.state_dict()))
    torch.testing.assert_close(load_model(tmp_path / "clip").clip.token_embedding.weight,
                               original, rtol=0, atol=0)
    # rows that do not match the config's vocabulary are refused with a clear message
    rows = tensors[KNOWN_ROWS_KEY][:2]
    save_safetensors(tmp_path / "clip" / "model.safetensors", {**tensors, KNOWN_ROWS_KEY: rows})
    with pytest.raises(ValueError, match="4 known tokens"):
        load_model(tmp_path / "clip")
    # without a recorded vocabulary nothing is dropped
    save_model(tmp_path / "full", tiny_clip())
    assert EMBEDDING_KEY in read_safetensors(tmp_path / "full" / "model.safetensors")[0]


def test_unknown_words():
    model = tiny_clip()
    assert model.unknown_words("a purple dragon") == []  # no vocabulary recorded: no claims
    known = set(model.tokenize(["a smiling person with glasses"])[0].tolist())
    model = tiny_clip(known_tokens=tuple(known))
    assert model.unknown_words("A smiling person") == []
    assert model.unknown_words("a smiling dragon 🐉") == ["dragon"]


def test_pretrained_loader_errors_are_clear(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_pretrained_clip("no-such-model", "openai")
    with pytest.raises(ValueError, match="no pretrained weights"):
        load_pretrained_clip("RN50", "no-such-tag")
    # offline: the hub refuses at once; we turn whatever it raises into one clear error
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import open_clip

    def offline(*args, **kwargs):  # what create_model_and_transforms does with no network
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    with pytest.raises(PretrainedUnavailableError, match="offline") as info:
        load_pretrained_clip("RN50", "openai", cache_dir=str(tmp_path))
    assert "trained/clip" in str(info.value)


def test_pretrained_adapter_gives_the_same_interface():
    inner = tiny_clip(seed=1).clip  # any open_clip CLIP
    adapter = PretrainedCLIPAdapter(inner, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 64, 24).eval()
    ours = tiny_clip(seed=1)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(adapter.encode_image(x), ours.encode_image(x))
        torch.testing.assert_close(adapter.encode_text(["a face"]), ours.encode_text(["a face"]))
        assert adapter.encode_text_tokens(adapter.tokenize(["a face"])).shape == (1, 24, 16)
        assert adapter.encode_image(torch.rand(1, 3, 32, 32)).shape == (1, 8)  # resized
    assert adapter.text_width == 16


@pytest.fixture(scope="module")
def small_sets():
    return SynthFacesDataset("train", n=96), SynthFacesDataset("val", n=64)


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


def test_train_clip_tiny_run_writes_a_loadable_model(tmp_path, small_sets):
    train, val = small_sets
    cfg = CLIPTrainConfig(**TINY,
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
    common = dict(**TINY, batch_size=32, max_steps=3, threads=1, progress=False,
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



def test_text_head_starts_as_a_no_op_reads_the_words_and_ignores_padding(tmp_path):
    from playground.training.warm_start import warm_start

    plain = tiny_clip(0)
    save_model(tmp_path / "plain", plain)
    headed = tiny_clip(1, text_head_layers=1)
    warm_start(headed, str(tmp_path / "plain"), verbose=False)  # the head is new to "plain"
    prompts = ["a photo of a person wearing glasses", "a photo of a person not wearing glasses",
               "a bald man"]
    with torch.no_grad():
        torch.testing.assert_close(headed.encode_text(prompts), plain.encode_text(prompts),
                                   rtol=0, atol=1e-6)  # zero output layer: the init's embedding
        torch.nn.init.normal_(headed.text_head.out.weight, std=0.5)
        moved = headed.encode_text(prompts)
        assert (moved - plain.encode_text(prompts)).norm(dim=-1).min() > 1e-3
        # a prompt's embedding does not depend on the padding its batch adds
        torch.testing.assert_close(headed.encode_text(prompts[2:]), moved[2:], rtol=0, atol=1e-5)
        # what a U-Net reads is untouched, and the head is not among it
        tokens = plain.tokenize(prompts)
        torch.testing.assert_close(headed.encode_text_tokens(tokens),
                                   plain.encode_text_tokens(tokens), rtol=0, atol=0)
    assert not any(k.startswith("text_head.") for k in headed.text_state_tensors())
    headed.freeze_text_states()
    assert all(p.requires_grad for p in headed.text_head.parameters())
    # a saved headed model loads with its head
    save_model(tmp_path / "headed", headed)
    again = load_model(tmp_path / "headed")
    with torch.no_grad():
        torch.testing.assert_close(again.encode_text(prompts), moved, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="text_head_layers"):
        CLIPConfig(**TINY, text_head_layers=-1)


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


def test_detail_stem_starts_as_a_no_op_and_sees_inside_a_patch(tmp_path):
    from playground.training.warm_start import warm_start

    plain = tiny_clip(0)  # 16×16 patches: a stem has log2(16) + 1 = 5 channel counts
    save_model(tmp_path / "plain", plain)
    stemmed = tiny_clip(1, vision_stem=(4, 4, 8, 8, 8))
    warm_start(stemmed, str(tmp_path / "plain"), verbose=False)  # the stem is new to "plain"
    assert "clip.visual.conv1.weight" in stemmed.state_dict()  # the patch embedding's own name
    faces = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    # two faces that differ in a checkerboard inside one patch: same patch mean, other texture
    texture = torch.zeros(64, 64)
    texture[16:32:2, 16:32:2] = texture[17:32:2, 17:32:2] = 0.1
    textured = (faces + texture).clamp(0, 1)
    with torch.no_grad():
        torch.testing.assert_close(stemmed.encode_image(faces), plain.encode_image(faces),
                                   rtol=0, atol=1e-6)  # zero output layer: the init's embedding
        torch.nn.init.normal_(stemmed.clip.visual.conv1.out.weight, std=0.5)
        moved = stemmed.encode_image(faces)
        assert (moved - plain.encode_image(faces)).norm(dim=-1).min() > 1e-3
        assert (stemmed.encode_image(textured) - moved).norm(dim=-1).min() > 1e-4
    assert not any(".conv1." in k for k in stemmed.text_state_tensors())
    save_model(tmp_path / "stemmed", stemmed)
    again = load_model(tmp_path / "stemmed")
    assert again.config.vision_stem == (4, 4, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(faces), moved, rtol=0, atol=1e-3)
    for wrong in ((4, 8), (4, 4, 8, 8, 0)):
        with pytest.raises(ValueError, match="vision_stem"):
            CLIPConfig(**TINY, vision_stem=wrong)


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


def test_train_clip_resume_is_exact(tmp_path, small_sets):
    train, val = small_sets
    base = TINY
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
    from playground.training.trainers.clip import CLIPTrainConfig

    with pytest.raises(ValueError, match="negative_pool"):
        CLIPTrainConfig(negative_pool="large")
    with pytest.raises(ValueError, match="negatives_per_image"):
        CLIPTrainConfig(negative_pool="small", negatives_per_image=10)


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
        CLIPTrainConfig(**TINY, freeze_words=True)
