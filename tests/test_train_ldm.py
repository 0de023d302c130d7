"""The LDM trainer with a tiny autoencoder and a tiny real CLIP: CLI run, exact resume, EMA
weights in the saved model, pixel space."""
import json

import numpy as np
import pytest
import torch

from playground.data.synthfaces import SynthFacesDataset
from playground.models.autoencoder import AutoencoderConfig, KLAutoencoder
from playground.models.clip import CLIPConfig, TextImageCLIP
from playground.models.unet import LatentUNet
from playground.store.checkpoints import load_config, load_model, save_model
from playground.train import main
from playground.training import load_train_extra, load_train_state, read_log
from playground.training.trainers.ldm import encode_prompts, train_ldm
from playground.training.trainers.ldm_config import LDMTrainConfig

pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py

TINY_CLIP = CLIPConfig(embed_dim=16, patch_size=16, vision_width=16, vision_layers=1,
                       vision_head_width=8, text_width=16, text_heads=2, text_layers=1)
TINY_AE = AutoencoderConfig(latent_size=8, channels=(8, 8, 8, 8))  # 4×8×8 latents
TINY = dict(channels=(8, 16), attention_levels=(1,), head_dim=8, batch_size=8, eval_size=8,
            log_every=1, progress=False, lr_schedule="constant", amp="none", layout="contiguous")


@pytest.fixture(scope="module")
def faces():
    return SynthFacesDataset("train", n=16), SynthFacesDataset("val", n=8)


def tiny_models():
    torch.manual_seed(0)
    return KLAutoencoder(TINY_AE).eval(), TextImageCLIP(TINY_CLIP).eval()


def run(out, faces, resume=False, **overrides):
    ae, clip = tiny_models()
    cfg = LDMTrainConfig(out=str(out), autoencoder="ae-tiny", clip="clip-tiny",
                         **{**TINY, **overrides})
    return train_ldm(cfg, resume=resume, train_set=faces[0], val_set=faces[1],
                     autoencoder=ae, text_encoder=clip)


def test_encode_prompts_trims_padding_and_masks():
    _, clip = tiny_models()
    context, mask = encode_prompts(clip, ["a smiling face", ""], torch.device("cpu"))
    full, full_mask = encode_prompts(clip, ["a smiling face", ""], torch.device("cpu"), trim=False)
    assert full.shape == (2, 77, 16) and context.shape[0] == 2 and context.shape[1] < 77
    assert mask.dtype == torch.bool and mask[0].sum() > mask[1].sum() >= 1
    torch.testing.assert_close(context, full[:, :context.shape[1]])
    assert not full_mask[:, context.shape[1]:].any()


def test_cli_trains_writes_a_loadable_ema_model_and_metrics(tmp_path, faces):
    ae, clip = tiny_models()
    trained = tmp_path / "trained"
    save_model(trained / "ae-tiny", ae)
    save_model(trained / "clip-tiny", clip)
    out = tmp_path / "runs" / "ldm-tiny"
    # small SynthFaces splits through --train-size / --eval-size
    argv = ["ldm", "--autoencoder", str(trained / "ae-tiny"), "--clip", "clip-tiny",
            "--channels", "8,16", "--attention-levels", "1", "--head-dim", "8",
            "--batch-size", "8", "--train-size", "16", "--eval-size", "8", "--max-steps", "3",
            "--log-every", "1", "--no-progress", "--amp", "bf16", "--threads", "1",
            "--out", str(out)]
    assert main(argv) == 0
    model = load_model(str(out))
    assert isinstance(model, LatentUNet)
    cfg = load_config(str(out))
    # a path inside trained/ is recorded as its bare name, so a loader finds it by name
    assert cfg.autoencoder == "ae-tiny" and cfg.text_encoder == "clip-tiny"
    assert cfg.schedule.num_timesteps == 1000 and cfg.context_dim == 32 and cfg.text_words
    assert cfg.sample_shape == (4, 8, 8) and cfg.space == "latent"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["ema_updates"] == 3
    for key in ("train_loss", "val_loss", "val_loss_raw", "train_img_per_s", "parameters",
                "epochs"):
        assert metrics[key] is not None and metrics[key] > 0, key
    assert metrics["parameters"] == sum(p.numel() for p in model.parameters())
    # the saved model holds the EMA weights, not the raw ones
    raw, _, _ = load_train_state(out)
    extra = load_train_extra(out)
    saved = model.state_dict()
    for k, v in saved.items():
        torch.testing.assert_close(v, extra[f"ema.{k}"].float(), rtol=0, atol=0)
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)
    lines = [r for r in read_log(out) if r["type"] == "train"]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert all(0 <= r["dropped"] <= 1 for r in lines)


def test_resume_is_exact_including_ema(tmp_path, faces):
    run(tmp_path / "straight", faces, max_steps=4)  # 16 images / 8 = 2 steps per epoch
    run(tmp_path / "resumed", faces, max_steps=2)
    metrics = run(tmp_path / "resumed", faces, resume=True, max_steps=4)
    assert metrics["steps"] == 4 and metrics["ema_updates"] == 4
    a, b = load_model(str(tmp_path / "straight")), load_model(str(tmp_path / "resumed"))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    ra, rb = load_train_state(tmp_path / "straight")[0], load_train_state(tmp_path / "resumed")[0]
    assert all(torch.equal(ra[k], rb[k]) for k in ra)
    with pytest.raises(ValueError, match="cond_drop"):
        run(tmp_path / "resumed", faces, resume=True, max_steps=5, cond_drop=0.5)


def test_condition_dropping_uses_the_empty_prompt(tmp_path, faces):
    metrics = run(tmp_path / "dropall", faces, max_steps=2, cond_drop=0.99)
    lines = [r for r in read_log(tmp_path / "dropall") if r["type"] == "train"]
    assert all(r["dropped"] > 0.5 for r in lines) and metrics["cond_drop"] == 0.99


def test_pixel_space_run(tmp_path, faces):
    _, clip = tiny_models()
    cfg = LDMTrainConfig(out=str(tmp_path / "pixel"), space="pixel", clip="clip-tiny",
                         **{**TINY, "batch_size": 4, "eval_size": 4, "max_steps": 2})
    metrics = train_ldm(cfg, train_set=faces[0], val_set=SynthFacesDataset("val", n=4),
                        text_encoder=clip)
    assert metrics["steps"] == 2 and metrics["sample_shape"] == [3, 64, 64]
    model = load_model(str(tmp_path / "pixel"))
    assert model.config.space == "pixel" and model.config.autoencoder == ""
    assert -1.01 < metrics["data_mean"] < 1.01


def test_min_snr_weights_follow_the_formula():
    from playground.diffusion.schedule import NoiseSchedule
    from playground.training.trainers.ldm import min_snr_weights

    schedule = NoiseSchedule()
    t = torch.tensor([0, 100, 500, 999])
    abar = schedule.alphas_cumprod[t]
    snr = abar / (1 - abar)
    w = min_snr_weights(schedule.alphas_cumprod, t, gamma=5.0)
    torch.testing.assert_close(w.double(), torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 0.01 and w[-1] == 1.0  # clean steps count little, noisy ones fully


def test_a_min_snr_run_trains_and_keeps_the_plain_val_loss(tmp_path, faces):
    metrics = run(tmp_path / "minsnr", faces, max_steps=2, loss_weighting="min_snr")
    assert metrics["steps"] == 2 and metrics["val_loss"] > 0
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        run(tmp_path / "bad", faces, max_steps=1, loss_weighting="snr")


def test_training_latents_are_cached_by_the_autoencoders_weights(tmp_path):
    from playground.training.trainers.ldm_latents import cached_latents, encode_images

    ae, _ = tiny_models()
    images = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    first, hit = cached_latents(ae, images, cpu, tmp_path)
    assert not hit and len(list(tmp_path.glob("latents-*.safetensors"))) == 1
    again, hit = cached_latents(ae, images, cpu, tmp_path)
    assert hit and torch.equal(first, again)
    torch.testing.assert_close(first, encode_images(ae, images, cpu))
    with torch.no_grad():  # new weights: a new key, never the stale latents
        next(ae.parameters()).add_(0.1)
    changed, hit = cached_latents(ae, images, cpu, tmp_path)
    assert not hit and not torch.equal(changed, first)
    assert len(list(tmp_path.glob("latents-*.safetensors"))) == 2


def test_a_warm_start_keeps_the_ema_at_its_full_decay(tmp_path, faces):
    run(tmp_path / "first", faces, max_steps=2)
    metrics = run(tmp_path / "second", faces, max_steps=1, init=str(tmp_path / "first"))
    # the EMA continues the warm-started average: 2 earlier updates + 1 now, decay not reset
    assert metrics["ema_updates"] == 3 and metrics["cumulative"]["steps"] == 3
    a, b = load_model(str(tmp_path / "first")), load_model(str(tmp_path / "second"))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        # ema ← d·ema + (1 − d)·θ with d = (1 + 2)/(10 + 2): a quarter of one Adam step away
        assert ka == kb and (va - vb).abs().max() < 1e-3, ka


def test_word_embeddings_follow_the_final_states_in_the_context():
    _, clip = tiny_models()
    prompts = ["a person with glasses", "a person with a hat"]
    states = clip.encode_text_tokens(prompts)
    both = clip.encode_text_tokens(prompts, words=True)
    assert both.shape == (*states.shape[:2], 2 * states.shape[2])
    torch.testing.assert_close(both[..., :16], states)
    words = both[..., 16:]
    # each word's own embedding, normalised: no position, no context
    torch.testing.assert_close(words.mean(-1), torch.zeros(words.shape[:2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(words.var(-1, unbiased=False), torch.ones(words.shape[:2]),
                               atol=1e-3, rtol=0)
    tokens = clip.tokenize(prompts)
    same = tokens[0] == tokens[1]  # "a person with" at the same positions in both prompts
    assert same[:4].all() and not same[4]
    torch.testing.assert_close(words[0, :4], words[1, :4])
    assert (words[0, 4] - words[1, 4]).abs().max() > 0.1
    # the word half ignores position: "a" reads the same wherever it stands
    a = tokens[1, 1]
    assert tokens[1, 4] == a
    torch.testing.assert_close(words[1, 1], words[1, 4])


def test_a_warm_start_onto_word_embeddings_begins_as_the_unet_it_loads(tmp_path, faces):
    run(tmp_path / "states", faces, max_steps=2, text_words=False)
    metrics = run(tmp_path / "words", faces, max_steps=1, lr=1e-12, init=str(tmp_path / "states"))
    assert metrics["context_dim"] == 32
    before, after = load_model(str(tmp_path / "states")), load_model(str(tmp_path / "words"))
    assert after.config.text_words and after.config.context_dim == 32  # the default
    assert not before.config.text_words and before.config.context_dim == 16
    with pytest.raises(ValueError, match="do not fit"):  # words → none: nothing to narrow
        run(tmp_path / "narrowed", faces, max_steps=1, init=str(tmp_path / "words"),
            text_words=False)
    _, clip = tiny_models()
    context, mask = encode_prompts(clip, ["a person with glasses", ""], torch.device("cpu"))
    wide, _ = encode_prompts(clip, ["a person with glasses", ""], torch.device("cpu"), words=True)
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 900])
    with torch.no_grad():  # one step of lr 1e-12: the weights are the loaded ones
        torch.testing.assert_close(after(x_t, t, wide, mask), before(x_t, t, context, mask),
                                   atol=1e-5, rtol=1e-4)
        # the new columns start at zero: what the words say is not read yet
        other = torch.cat([wide[..., :16], torch.randn_like(wide[..., 16:])], dim=-1)
        torch.testing.assert_close(after(x_t, t, other, mask), after(x_t, t, wide, mask))
    k = after.state_dict()["mid_attn.cross_attn.to_k.weight"]
    assert k.shape[1] == 32 and k[:, 16:].abs().max() < 1e-9


def test_only_the_weights_that_read_the_text_may_be_widened(tmp_path):
    from playground.models.unet import UNetConfig
    from playground.training.warm_start import warm_start

    small = UNetConfig(in_channels=4, sample_size=8, channels=(8, 16), attention_levels=(1,),
                       head_dim=8, context_dim=16)
    save_model(tmp_path / "narrow", LatentUNet(small))
    wider_time = LatentUNet(UNetConfig(**{**small.__dict__, "time_embed_mult": 8}))
    with pytest.raises(ValueError, match="do not fit"):
        warm_start(wider_time, str(tmp_path / "narrow"), verbose=False)
    narrower = LatentUNet(UNetConfig(**{**small.__dict__, "context_dim": 8}))
    with pytest.raises(ValueError, match="do not fit"):  # fewer inputs: nothing to keep
        warm_start(narrower, str(tmp_path / "narrow"), verbose=False)


def test_the_probe_scores_prompts_and_the_fd_of_samples_from_training_captions(tmp_path, faces):
    from playground.models.judge import Judge, JudgeConfig
    from playground.store.checkpoints import trained_dir

    torch.manual_seed(0)
    save_model(trained_dir() / "judge", Judge(JudgeConfig(channels=(8, 8, 16, 16),
                                                          feature_dim=16)))
    run(tmp_path / "run", faces, max_steps=2, probe_minutes=1e-4, probe_fd_samples=6)
    probes = [r for r in read_log(tmp_path / "run") if r["type"] == "probe"]
    assert probes and all(0 <= p["prompt_acc"] <= 1 and p["probe_caption_fd"] > 0
                          for p in probes)
    assert probes[0]["probe_caption_fd"] != probes[-1]["probe_caption_fd"]  # the model moved
    run(tmp_path / "quiet", faces, max_steps=1, probe_minutes=1e-4, probe_fd_samples=0)
    assert all("probe_caption_fd" not in r for r in read_log(tmp_path / "quiet")
               if r["type"] == "probe")
