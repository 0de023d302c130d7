"""The latent-diffusion pipeline (playground.pipelines.latent_diffusion) on tiny real models saved in a tmp folder:
loading by name, exact determinism, guidance, shapes, errors; prompt analysis; judge scores;
the forward process on pictures."""
import os

import numpy as np
import pytest
import torch

from playground.data import captions
from playground.data import synthfaces as sf
from playground.diffusion import (
    NoiseSchedule,
    classifier_free_guidance,
    ddim_sample,
    ddim_timesteps,
)
from playground.models.autoencoder import KLAutoencoder
from playground.models.clip import TextImageCLIP
from playground.models.unet import LatentUNet
from playground.pipelines import diffusion_models, forward_process, latent_diffusion, prompts
from playground.pipelines.latent_diffusion import pad_condition
from playground.store import checkpoints
from tests.helpers import TINY_T, save_tiny_pipeline, tiny_models


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ldm")
    save_tiny_pipeline(root / "trained", judge=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_TRAINED", str(root / "trained"))
    mp.setenv("PLAYGROUND_RUNS", str(root / "runs"))
    diffusion_models.clear_cache()
    yield root / "trained"
    mp.undo()
    diffusion_models.clear_cache()


@pytest.fixture(scope="module")
def pipe(trained):
    return diffusion_models.get_pipeline("ldm")


PROMPTS = ["a smiling woman with blond hair", "a man with a beard and glasses"]


# ------------------------------------------------------------------------------ loading
def test_load_pipeline_reads_the_component_names_and_schedule(pipe, trained):
    assert isinstance(pipe.unet, LatentUNet) and isinstance(pipe.clip, TextImageCLIP)
    assert isinstance(pipe.autoencoder, KLAutoencoder)
    assert pipe.names == {"unet": "ldm", "autoencoder": "autoencoder", "clip": "clip"}
    assert pipe.num_timesteps == TINY_T and pipe.sample_shape == (4, 8, 8)
    assert not pipe.unet.training and not any(p.requires_grad for p in pipe.unet.parameters())
    assert diffusion_models.list_pipelines() == ["ldm"]
    # the same weights give the same pipeline object from the cache; new weights reload it
    assert diffusion_models.get_pipeline("ldm") is pipe
    direct = latent_diffusion.load_pipeline(trained / "ldm")
    assert torch.equal(direct.sample(PROMPTS, steps=3, seed=1),
                       pipe.sample(PROMPTS, steps=3, seed=1))


def test_changed_weights_are_reloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    save_tiny_pipeline(tmp_path, seed=0)
    first = diffusion_models.get_pipeline("ldm")
    unet = tiny_models(seed=1)[2]
    checkpoints.save_model(tmp_path / "ldm", unet)
    os.utime(tmp_path / "ldm" / checkpoints.WEIGHTS_FILE, ns=(1, 1))  # surely a new stamp
    second = diffusion_models.get_pipeline("ldm")
    assert second is not first
    assert torch.equal(second.unet.conv_in.weight, unet.conv_in.weight)
    diffusion_models.clear_cache()


def test_missing_model_or_component_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    with pytest.raises(ValueError, match="not trained yet.*python -m playground.train ldm"):
        diffusion_models.get_pipeline("ldm")
    with pytest.raises(ValueError, match="not trained yet"):
        diffusion_models.get_pipeline(None)
    _, _, unet = tiny_models()
    unet.config.autoencoder = "gone"
    checkpoints.save_model(tmp_path / "trained" / "ldm", unet)
    checkpoints.save_model(tmp_path / "trained" / "clip", tiny_models()[1])
    with pytest.raises(ValueError, match="autoencoder 'gone', which cannot be found"):
        diffusion_models.get_pipeline("ldm")
    with pytest.raises(ValueError, match="is a 'clip' model, not a diffusion U-Net"):
        diffusion_models.get_pipeline("clip")
    with pytest.raises(ValueError, match="invalid model name"):
        diffusion_models.get_pipeline("../ldm")


def test_a_unet_that_reads_the_words_gets_them_and_a_mismatch_is_refused(tmp_path):
    from playground.models.unet import UNetConfig

    autoencoder, clip, unet = tiny_models()
    cfg = UNetConfig(**{**unet.config.__dict__, "context_dim": 32, "text_words": True})
    checkpoints.save_model(tmp_path / "autoencoder", autoencoder)
    checkpoints.save_model(tmp_path / "clip", clip)
    checkpoints.save_model(tmp_path / "ldm-words", LatentUNet(cfg))
    words = latent_diffusion.load_pipeline(tmp_path / "ldm-words")
    assert words.text_words
    context, mask = words.encode_prompts(PROMPTS)
    states = clip.encode_text_tokens(clip.tokenize(PROMPTS)[:, :context.shape[1]])
    assert context.shape[-1] == 32
    torch.testing.assert_close(context[..., :16], states)
    assert words.sample(PROMPTS, steps=2, seed=0).shape == (2, 3, 64, 64)
    # a U-Net that expects the words, from a config that says it does not, is refused
    cfg.text_words = False
    checkpoints.save_model(tmp_path / "ldm-wide", LatentUNet(cfg))
    with pytest.raises(ValueError, match="expects text states of width 32.*gives 16"):
        latent_diffusion.load_pipeline(tmp_path / "ldm-wide")


# ------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("sampler,steps,eta", [("ddim", 4, 0.0), ("ddim", 4, 0.5),
                                               ("ddpm", None, 0.0), ("dpm++", 4, 0.0)])
def test_same_seed_same_faces_other_seed_other_faces(pipe, sampler, steps, eta):
    kwargs = dict(guidance=3.0, sampler=sampler, steps=steps, eta=eta)
    a = pipe.sample(PROMPTS, seed=7, **kwargs)
    assert a.shape == (2, 3, 64, 64) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(a, pipe.sample(PROMPTS, seed=7, **kwargs))
    assert not torch.equal(a, pipe.sample(PROMPTS, seed=8, **kwargs))


def test_guidance_one_is_the_conditional_model(pipe):
    x_T, _ = pipe.initial_noise(2, seed=3)
    cond = pipe.encode_prompts(PROMPTS)
    plain = ddim_sample(pipe.unet_denoiser(), x_T, pipe.schedule, steps=5, cond=cond)
    expected = pipe.decode(plain)
    assert torch.equal(pipe.sample(PROMPTS, guidance=1.0, steps=5, seed=3), expected)
    # the general CFG formula at w = 1 is the same up to rounding
    null = pad_condition(pipe.encode_prompts([""]), cond[0].shape[1])
    guided = classifier_free_guidance(pipe.unet_denoiser(), 1.0, null)
    assert torch.allclose(pipe.decode(ddim_sample(guided, x_T, pipe.schedule, steps=5, cond=cond)),
                          expected, atol=1e-4)


def test_the_dpm_sampler_is_dpm_solver_on_the_guided_denoiser(pipe):
    from playground.diffusion import dpmpp_2m_sample

    x_T, _ = pipe.initial_noise(2, seed=5)
    cond = pipe.encode_prompts(PROMPTS)
    expected = pipe.decode(dpmpp_2m_sample(pipe.unet_denoiser(), x_T, pipe.schedule, steps=6,
                                           cond=cond))
    assert torch.equal(pipe.sample(PROMPTS, guidance=1.0, sampler="dpm++", steps=6, seed=5),
                       expected)
    with pytest.raises(ValueError, match=r"sampler must be one of \('ddim', 'ddpm', 'dpm\+\+'\)"):
        pipe.sample(PROMPTS, sampler="euler")


def test_prompts_are_trimmed_and_padding_changes_nothing(pipe):
    context, mask = pipe.encode_prompts(PROMPTS)
    assert mask[:, -1].any() and mask.all(dim=0)[0]  # cut right after the longest prompt
    assert context.shape[1] == max(pipe.clip.token_count(p) for p in PROMPTS)
    padded = pad_condition((context, mask), context.shape[1] + 7)
    assert padded[0].shape[1] == context.shape[1] + 7 and not padded[1][:, -7:].any()
    x_t, t = torch.randn(2, *pipe.sample_shape), torch.tensor([10, 500])
    eps = pipe.unet_denoiser()
    with torch.no_grad():
        torch.testing.assert_close(eps(x_t, t, padded), eps(x_t, t, (context, mask)),
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot pad"):
        pad_condition((context, mask), 1)


def test_guidance_zero_is_the_empty_prompt_and_guidance_changes_faces(pipe):
    unconditional = pipe.sample(["", ""], guidance=1.0, steps=5, seed=3)
    assert torch.allclose(pipe.sample(PROMPTS, guidance=0.0, steps=5, seed=3), unconditional,
                          atol=1e-5)
    w1 = pipe.sample(PROMPTS, guidance=1.0, steps=5, seed=3)
    w5 = pipe.sample(PROMPTS, guidance=5.0, steps=5, seed=3)
    assert not torch.allclose(w1, w5, atol=1e-3)
    assert not torch.allclose(w1, unconditional, atol=1e-3)
    # a negative prompt replaces ∅: it matters with w ≠ 1, not with w = 1
    negative = pipe.sample(PROMPTS, guidance=5.0, steps=5, seed=3, negative_prompt="a hat")
    assert not torch.allclose(negative, w5, atol=1e-3)
    same = pipe.sample(PROMPTS, guidance=1.0, steps=5, seed=3, negative_prompt="a hat")
    assert torch.equal(same, w1)


def test_progressive_yields_every_kth_step_and_ends_with_the_sample(pipe):
    chain = list(pipe.sample_progressive(PROMPTS, guidance=2.0, steps=10, seed=5, yield_every=3))
    assert [s.index for s, _ in chain] == [0, 3, 6, 9]
    assert [s.t for s, _ in chain] == ddim_timesteps(TINY_T, 10)[::3].tolist()  # 19, 13, 7, 1
    for step, images in chain:
        assert step.x_t.shape == (2, 4, 8, 8) and images.shape == (2, 3, 64, 64)
    assert torch.equal(chain[-1][1], pipe.sample(PROMPTS, guidance=2.0, steps=10, seed=5))
    ddpm = list(pipe.sample_progressive(PROMPTS, sampler="ddpm", seed=5, yield_every=8,
                                        decode=False))
    assert [s.index for s, _ in ddpm] == [0, 8, 16, TINY_T - 1] and ddpm[0][1] is None


def test_ddpm_and_ddim_start_from_the_same_x_T(pipe):
    x_T, _ = pipe.initial_noise(2, seed=11)
    for sampler in ("ddim", "ddpm"):
        given = pipe.sample(PROMPTS, sampler=sampler, steps=4 if sampler == "ddim" else None,
                            seed=11, x_T=x_T.clone())
        assert torch.equal(given, pipe.sample(PROMPTS, sampler=sampler, seed=11,
                                              steps=4 if sampler == "ddim" else None))


@pytest.mark.parametrize("kwargs,message", [
    (dict(sampler="euler"), "sampler must be one of"),
    (dict(steps=0), "steps must be between 1 and 20"),
    (dict(steps=TINY_T + 1), "steps must be between 1 and 20"),
    (dict(steps=2.5), "steps must be a whole number"),
    (dict(eta=1.5), r"eta must be in \[0, 1\]"),
    (dict(guidance=-1), "guidance scale must be a finite number >= 0"),
    (dict(guidance=float("nan")), "guidance scale must be a finite number"),
    (dict(seed=-1), "seed must be between 0"),
    (dict(negative_prompt="x" * 100_000), "negative prompt is 100,000 characters"),
    (dict(x_T=torch.zeros(1, 4, 8, 8)), r"x_T must have shape \(2, 4, 8, 8\)"),
])
def test_bad_sampling_arguments_raise_clear_errors(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe.sample(PROMPTS, **kwargs)


def test_bad_prompts_raise_clear_errors(pipe):
    with pytest.raises(ValueError, match="list of strings"):
        pipe.sample("a smiling man")
    with pytest.raises(ValueError, match="between 1 and"):
        pipe.sample([])
    with pytest.raises(ValueError, match="100,000 characters long"):
        pipe.sample(["x" * 100_000])
    with pytest.raises(ValueError, match="must be text"):
        pipe.encode_prompts([3])


# ------------------------------------------------------------------------------ prompts
@pytest.mark.parametrize("prompt,expected", [
    ("a grinning man with gray hair, a mustache and glasses, not wearing a hat",
     {"Smiling": 1, "Gray_Hair": 1, "Mustache": 1, "Eyeglasses": 1, "Wearing_Hat": 0}),
    ("a woman without glasses, with blond and brown hair and a serious expression",
     {"Eyeglasses": 0, "Blond_Hair": 1, "Brown_Hair": 1, "Smiling": 0}),
    ("a bearded man", {"No_Beard": 0}),
    ("a clean-shaven man with no hat", {"No_Beard": 1, "Wearing_Hat": 0}),
    ("A Smiling   person, NOT smiling", {"Smiling": 0}),  # the last mention wins
    ("a dragon on a red background", {}),
    ("", {}),
])
def test_named_attributes(prompt, expected):
    assert prompts.named_attributes(prompt) == expected


def test_named_attributes_agree_with_the_zero_shot_phrases_and_the_training_captions():
    for attribute in sf.ATTRIBUTE_NAMES:
        present, absent = captions.zero_shot_prompts(attribute)
        assert prompts.named_attributes(present) == {attribute: 1}, present
        assert prompts.named_attributes(absent) == {attribute: 0}, absent
    factors = sf.generate_factors(300, 1)
    attributes = sf.attributes_from_factors(factors)
    texts = captions.captions_for_dataset(attributes, factors, seed=2)
    named = 0
    for i, text in enumerate(texts):
        for attribute, value in prompts.named_attributes(text).items():
            assert int(attributes[attribute][i]) == value, (text, attribute)
            named += 1
    assert named > 2 * len(texts)  # a caption names several attributes


def test_prompt_info_notices(pipe):
    info = prompts.prompt_info("a smiling dragon", pipe.clip)
    assert info.unknown_words == ["dragon"] and info.attributes == {"Smiling": 1}
    assert not info.truncated and not info.empty
    long = prompts.prompt_info("a smiling man with glasses " * 5, pipe.clip)
    assert long.truncated and long.unknown_words == []
    assert prompts.prompt_info("   ", pipe.clip).empty
    assert pipe.truncated(["a man", "a man " * 20]) == [False, True]


# ------------------------------------------------------------------------------ judge scores
def test_adherence_and_diversity(pipe):
    judge = diffusion_models.get_judge()
    assert judge is not None
    images = pipe.sample(PROMPTS * 2, steps=3, seed=0)  # (4, 3, 64, 64)
    calls = judge.predict_attributes(images, hard=True)
    smiling = int(calls["Smiling"][0])
    expected = float((calls["Smiling"] == smiling).float().mean())
    score = prompts.adherence(judge, images, {"Smiling": smiling})
    assert score["accuracy"] == pytest.approx(expected)
    flipped = prompts.adherence(judge, images, {"Smiling": 1 - smiling})
    assert flipped["accuracy"] == pytest.approx(1 - expected)
    assert prompts.adherence(judge, images, {}) == {"accuracy": None, "per_attribute": {}}
    same = images[:1].repeat(3, 1, 1, 1)
    assert prompts.diversity(judge, same) == pytest.approx(0.0, abs=1e-6)
    assert prompts.diversity(judge, images) > 0 and prompts.diversity(judge, images[:1]) is None


def test_guidance_sweep_rows(pipe):
    rows = list(prompts.guidance_sweep_progressive(pipe, "a smiling man", weights=(1.0, 4.0),
                                                   n=2, steps=3, seed=4,
                                                   judge=diffusion_models.get_judge()))
    assert [r["w"] for r in rows] == [1.0, 4.0]
    assert torch.equal(rows[0]["images"], pipe.sample(["a smiling man"] * 2, guidance=1.0,
                                                      steps=3, seed=4))
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and set(r["per_attribute"]) == {"Smiling"}
        assert r["diversity"] >= 0 and r["seconds"] > 0
    no_judge = next(prompts.guidance_sweep_progressive(pipe, "a man", weights=(2.0,), n=2,
                                                       steps=2))
    assert no_judge["accuracy"] is None and no_judge["diversity"] is None


# ------------------------------------------------------------------------------ forward process
def test_noised_images_follow_the_closed_form():
    schedule = NoiseSchedule()
    face = sf.generate(1, 0)[0]  # (1, 64, 64, 3)
    out = forward_process.noised_images(face, 300, seed=1, schedule=schedule)
    x0 = torch.from_numpy(face).permute(0, 3, 1, 2).float() / 127.5 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    ab = float(schedule.alphas_cumprod[300])
    expected = ((ab ** 0.5 * x0 + (1 - ab) ** 0.5 * noise + 1) / 2).clamp(0, 1)
    got = torch.from_numpy(out["x_t"]).permute(0, 3, 1, 2).float() / 255
    assert (got - expected).abs().max() <= 1 / 255 + 1e-6
    assert np.array_equal(out["x0"], face)
    # the same ε at every t; almost the face at t = 0, almost pure ε at t = T - 1
    assert np.array_equal(forward_process.noised_images(face, 999, 1, schedule)["noise"], out["noise"])
    assert np.abs(forward_process.noised_images(face, 0, 1, schedule)["x_t"].astype(int) - face).mean() < 3
    late = forward_process.noised_images(face, 999, 1, schedule)
    assert np.abs(late["x_t"].astype(int) - late["noise"]).mean() < 3
    with pytest.raises(ValueError, match="timestep t must be between 0 and 999"):
        forward_process.noised_images(face, 1000, 1, schedule)


def test_noised_latents_and_latent_picture(pipe):
    face = sf.generate(1, 0)[0]
    out = forward_process.noised_latents(pipe, face, 5, seed=0)
    assert out["z_t"].shape == (1, 64, 64, 3) and out["decoded"].shape == (1, 64, 64, 3)
    picture = forward_process.latent_picture(torch.tensor([-3.0, 0.0, 3.0, 9.0]).view(1, 4, 1, 1))
    # 4 channels in a 2 × 2 grid of 32 px tiles: black, grey, white, white (clipped)
    assert picture.shape == (1, 64, 64, 3)
    assert [picture[0, 0, 0, 0], picture[0, 0, 40, 0], picture[0, 40, 0, 0],
            picture[0, 40, 40, 0]] == [0, 128, 255, 255]
    curves = forward_process.schedule_curves(pipe.schedule)
    assert curves["snr"].shape == (TINY_T,) and np.all(np.diff(curves["alphas_cumprod"]) < 0)
