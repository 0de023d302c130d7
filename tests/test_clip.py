"""The playground CLIP (open_clip classes): tokens, embeddings, its file, the pretrained loader."""
from __future__ import annotations

import pytest
import torch

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
from tests.helpers import TINY_CLIP, tiny_clip


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
        CLIPConfig(**TINY_CLIP, text_head_layers=-1)


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
            CLIPConfig(**TINY_CLIP, vision_stem=wrong)
