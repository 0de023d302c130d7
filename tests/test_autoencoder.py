"""First-stage autoencoder: shapes, scaled latents, save/load, loss, trainer and CLI (tiny)."""
import json
import math

import numpy as np
import pytest
import torch

import playground
from playground.models.autoencoder import AutoencoderConfig, KLAutoencoder, psnr
from playground.store.checkpoints import load_model, save_model
from playground.train import main
from playground.training import TensorImages, cosine_lr, load_train_state, read_log
from playground.training.trainers.autoencoder import (
    AutoencoderTrainConfig,
    autoencoder_loss,
    latent_statistics,
    train_autoencoder,
)

TINY = AutoencoderConfig(latent_size=16, channels=(8, 8, 16))
TINY_TRAIN = dict(channels=(8, 8, 16), batch_size=8, eval_size=8, scale_sample=16,
                  log_every=1, progress=False, lr_schedule="constant", amp="none",
                  layout="contiguous")
TINY_CLI = ["--channels", "8,8,16", "--batch-size", "16", "--train-size", "64",
            "--eval-size", "16", "--test-size", "16", "--scale-sample", "32", "--no-progress",
            "--log-every", "1", "--amp", "none", "--layout", "contiguous"]


pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py


def tiny_model(seed=0, config=TINY):
    torch.manual_seed(seed)
    return KLAutoencoder(config)


def images(n=4, seed=0):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


class Faces:
    """Smooth random 'faces' (blobs on a background) with the dataset attributes trainers use."""

    def __init__(self, n, seed=0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:64, 0:64] / 63.0
        cx, cy, r = rng.uniform(0.3, 0.7, (3, n, 1, 1))
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < (r * 0.4) ** 2)[..., None]  # (n, 64, 64, 1)
        bg, fg = rng.uniform(0, 1, (2, n, 1, 1, 3))
        self.images = (255 * np.where(disc, fg, bg)).astype(np.uint8)  # (n, 64, 64, 3)

    def __len__(self):
        return len(self.images)


# ----------------------------------------------------------------------------- model
@pytest.mark.parametrize("latent_size, channels", [(16, (8, 8, 16)), (8, (8, 8, 16, 16))])
def test_shapes_of_encode_decode_and_forward(latent_size, channels):
    model = tiny_model(config=AutoencoderConfig(latent_size=latent_size, channels=channels))
    x = images(3)
    z = model.encode(x)
    assert z.shape == (3, 4, latent_size, latent_size) == (3, *model.latent_shape)
    y = model.decode(z)
    assert y.shape == (3, 3, 64, 64) and y.min() >= 0 and y.max() <= 1
    recon, mean, logvar = model(x)
    assert recon.shape == x.shape and mean.shape == logvar.shape == z.shape


def test_default_widths_follow_the_latent_size():
    assert AutoencoderConfig(latent_size=16).channels == (16, 32, 64)
    assert AutoencoderConfig(latent_size=8).channels == (16, 32, 64, 128)
    assert AutoencoderConfig(latent_size=8).latent_shape == (4, 8, 8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(latent_size=12), "power of two"),
    (dict(latent_size=16, channels=(8, 16)), "3 entries"),
    (dict(channels=(8, 12, 16)), "multiple of norm_groups"),
    (dict(scale_factor=0.0), "scale_factor"),
    (dict(kl_weight=-1.0), "kl_weight"),
])
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoencoderConfig(**kwargs)


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        model.encode(images(2) * 3)
    with pytest.raises(ValueError, match="shape"):
        model.encode(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        model.encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"latents of shape \(N, 4, 16, 16\)"):
        model.decode(torch.zeros(2, 4, 8, 8))


def test_latents_are_scaled_by_scale_factor_and_decode_undoes_it():
    model = tiny_model().eval()
    x = images(2)
    with torch.no_grad():
        z1 = model.encode(x)
        y1 = model.decode(z1)
        model.config.scale_factor = 0.25
        z2 = model.encode(x)
        y2 = model.decode(z2)
        torch.testing.assert_close(z2, 0.25 * z1)
        torch.testing.assert_close(y2, y1)
        torch.testing.assert_close(model.reconstruct(x), y1)
        # sampling draws z ~ q(z | x): different from the mean, reproducible with a generator
        s1 = model.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        s2 = model.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        assert torch.equal(s1, s2) and not torch.allclose(s1, z2)


def test_save_load_round_trip_through_playground_load(tmp_path):
    model = tiny_model(seed=1).eval()
    model.config.scale_factor = 0.37
    save_model(tmp_path / "runs" / "ae-tiny", model)
    config = json.loads((tmp_path / "runs" / "ae-tiny" / "config.json").read_text())
    assert config["kind"] == "autoencoder" and config["scale_factor"] == 0.37
    loaded = playground.load("ae-tiny")
    assert isinstance(loaded, KLAutoencoder) and not loaded.training
    assert loaded.config == model.config
    x = images(2, seed=5)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
        z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        assert torch.equal(loaded.decode(z), model.decode(z))


# ----------------------------------------------------------------------------- loss & metrics
def test_loss_terms():
    g = torch.Generator().manual_seed(0)
    x, recon = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    zeros = torch.zeros(2, 4, 16, 16)
    l1 = autoencoder_loss(recon, x, zeros, zeros, kl_weight=0.5, recon_loss="l1")
    torch.testing.assert_close(l1["recon"], (recon - x).abs().mean())
    assert l1["kl"].item() == 0.0 and l1["loss"].item() == pytest.approx(l1["recon"].item())
    mse = autoencoder_loss(recon, x, zeros + 1, zeros, kl_weight=0.5, recon_loss="mse")
    torch.testing.assert_close(mse["recon"], (recon - x).pow(2).mean())
    assert mse["kl"].item() == pytest.approx(0.5)  # KL(N(1, 1) ‖ N(0, 1)) = ½ per element
    assert mse["loss"].item() == pytest.approx(mse["recon"].item() + 0.25)
    with pytest.raises(ValueError, match="recon_loss"):
        autoencoder_loss(recon, x, zeros, zeros, 0.0, recon_loss="bce")


def test_psnr_of_a_known_error():
    x = torch.full((2, 3, 64, 64), 0.5)
    assert psnr(x + 0.1, x).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)  # MSE 0.01
    assert psnr(x + 0.01, x)[0].item() == pytest.approx(40.0, abs=1e-3)


def test_cosine_schedule_ends():
    assert cosine_lr(1e-3, 0.0, 0.1) == pytest.approx(1e-3)
    assert cosine_lr(1e-3, 0.5, 0.1) == pytest.approx(0.55e-3)
    assert cosine_lr(1e-3, 1.0, 0.1) == cosine_lr(1e-3, 7.0, 0.1) == pytest.approx(1e-4)


def test_a_few_optimiser_steps_lower_the_loss():
    model = tiny_model()
    x = torch.as_tensor(Faces(8).images).permute(0, 3, 1, 2).float() / 255
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        recon, mean, logvar = model(x, generator=g)
        loss = autoencoder_loss(recon, x, mean, logvar, kl_weight=1e-6)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_scale_factor_makes_the_latents_unit_variance():
    model = tiny_model()
    source = TensorImages(Faces(32).images, torch.device("cpu"))
    stats = latent_statistics(model, source, n=32, seed=0)
    model.config.scale_factor = stats["scale_factor"]
    x = next(source.iterate([torch.arange(32)]))
    with torch.no_grad():
        # sampled latents (as measured) of the same images: std 1 up to the sampling noise
        z = model.encode(x, sample=True, generator=torch.Generator().manual_seed(9))
    assert z.std().item() == pytest.approx(1.0, rel=0.05)
    assert stats["scale_factor"] == pytest.approx(1 / stats["std"])
    assert len(stats["channel_std"]) == 4


# ----------------------------------------------------------------------------- trainer
def run(out, resume=False, **overrides):
    cfg = AutoencoderTrainConfig(out=str(out), **{**TINY_TRAIN, **overrides})
    return train_autoencoder(cfg, resume=resume, train_set=Faces(24), val_set=Faces(8, seed=1))


def test_resume_replays_an_uninterrupted_run(tmp_path):
    run(tmp_path / "straight", max_steps=5)  # 24 images / 8 = 3 steps per epoch
    run(tmp_path / "resumed", max_steps=2)
    metrics = run(tmp_path / "resumed", resume=True, max_steps=5)
    assert metrics["steps"] == 5
    a, b = load_model(tmp_path / "straight"), load_model(tmp_path / "resumed")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert a.config.scale_factor == b.config.scale_factor != 1.0
    steps = [r["step"] for r in read_log(tmp_path / "resumed") if r["type"] == "train"]
    assert steps == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="latent_size: checkpoint 16, now 8"):
        run(tmp_path / "resumed", resume=True, max_steps=6, latent_size=8,
            channels=(8, 8, 16, 16))


def test_freezing_the_encoder_trains_the_decoder_only_and_keeps_the_latents(tmp_path):
    run(tmp_path / "base", max_steps=2)
    base = load_model(tmp_path / "base")
    with pytest.raises(ValueError, match="--init"):
        run(tmp_path / "no-init", max_steps=1, freeze_encoder=True)
    tuned_args = dict(init=str(tmp_path / "base"), freeze_encoder=True, warmup_steps=1)
    run(tmp_path / "tuned", max_steps=2, **tuned_args)
    run(tmp_path / "tuned", resume=True, max_steps=3, **tuned_args)  # frozen when resumed too
    tuned = load_model(tmp_path / "tuned")
    assert tuned.config.scale_factor == base.config.scale_factor  # the init's, not re-measured
    a, b = tuned.encoder_tensors(), base.encoder_tensors()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = images(2)
    assert torch.equal(tuned.encode(x), base.encode(x))  # a U-Net would see the same latents
    assert not torch.equal(tuned.decode(base.encode(x)), base.decode(base.encode(x)))


def test_a_deeper_decoder_starts_as_the_shallower_one_and_its_extras_train(tmp_path):
    from playground.training.ship import same_conditioning
    from playground.training.warm_start import warm_start

    run(tmp_path / "base", max_steps=2)
    base = load_model(tmp_path / "base")
    deeper = KLAutoencoder(AutoencoderConfig(latent_size=16, channels=(8, 8, 16),
                                             decoder_extra_blocks=2))
    assert len(deeper.decoder.extra) == 3  # one group per level, 64×64 included
    assert set(base.state_dict()) < set(deeper.state_dict())  # the old names are all there
    warm_start(deeper, str(tmp_path / "base"), verbose=False)
    x = images(3)
    torch.testing.assert_close(deeper.reconstruct(x), base.reconstruct(x), rtol=0, atol=1e-6)
    # trained with the encoder frozen: the extras move, the latents stay, it ships alone
    tuned_args = dict(init=str(tmp_path / "base"), freeze_encoder=True, warmup_steps=1,
                      decoder_extra_blocks=1)
    run(tmp_path / "deeper", max_steps=3, **tuned_args)
    tuned = load_model(tmp_path / "deeper")
    assert tuned.config.decoder_extra_blocks == 1
    assert all(float(group[0].block[-1].weight.detach().abs().sum()) > 0
               for group in tuned.decoder.extra)
    assert torch.equal(tuned.encode(x), base.encode(x))
    assert same_conditioning(tmp_path / "deeper", tmp_path / "base")
    with pytest.raises(ValueError, match="decoder_extra_blocks"):
        AutoencoderConfig(decoder_extra_blocks=-1)


def test_a_warm_start_is_built_as_its_init_unless_an_option_says_otherwise(tmp_path, capsys):
    import argparse

    from playground.training import config_from_args

    run(tmp_path / "base", max_steps=1, latent_channels=8, decoder_extra_blocks=1)
    init = str(tmp_path / "base")

    def config(**given):
        return config_from_args(AutoencoderTrainConfig,
                                argparse.Namespace(init=init, out=str(tmp_path / "new"), **given))

    cfg = config()
    assert (cfg.latent_channels, cfg.channels, cfg.decoder_extra_blocks) == (8, (8, 8, 16), 1)
    assert "latent_channels=8" in capsys.readouterr().out
    assert config(decoder_extra_blocks=2).decoder_extra_blocks == 2  # grows a deeper decoder
    assert config(kl_weight=1e-3).kl_weight == 1e-3  # the objective is not architecture
    assert AutoencoderTrainConfig().latent_channels == 4  # without --init: the defaults
    warm = run(tmp_path / "warm", max_steps=1, init=init, warmup_steps=1,
               **{k: getattr(cfg, k) for k in AutoencoderTrainConfig.ARCHITECTURE})
    assert warm["steps"] == 1 and load_model(tmp_path / "warm").config.latent_channels == 8
    vae_run = tmp_path / "vae"  # a model of another kind lends no fields
    vae_run.mkdir()
    (vae_run / "config.json").write_text('{"kind": "vae", "channels": [4, 4]}')
    other = config_from_args(AutoencoderTrainConfig,
                             argparse.Namespace(init=str(vae_run), out=str(tmp_path / "x")))
    assert other.channels is None


def test_the_cli_trains_resumes_and_writes_metrics(tmp_path, capsys):
    out = tmp_path / "runs" / "ae"
    assert main(["autoencoder", *TINY_CLI, "--max-steps", "2", "--out", str(out)]) == 0
    assert main(["autoencoder", "--max-steps", "3", "--out", str(out), "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["n_test"] == 16
    assert metrics["latent_shape"] == [4, 16, 16]
    for key in ("psnr", "scale_factor", "train_seconds", "device"):
        assert key in metrics
    assert 5 < metrics["psnr"] < 60 and metrics["device"] == "cpu"
    config = json.loads((out / "config.json").read_text())
    assert config["scale_factor"] == pytest.approx(metrics["scale_factor"])
    assert config["channels"] == [8, 8, 16]  # the resumed run kept the checkpoint's settings
    assert load_train_state(out)[2]["global_step"] == 3
    assert main(["autoencoder", "--latent-size", "12", "--out", str(tmp_path / "x")]) == 2
    assert "power of two" in capsys.readouterr().err


def test_bf16_autocast_trains(tmp_path):
    metrics = run(tmp_path / "bf16", max_steps=2, amp="bf16")
    assert metrics["amp"] == "bf16" and math.isfinite(metrics["psnr"])
