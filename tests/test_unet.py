"""The latent U-Net: shapes, masking, conditioning, save/load, and the EMA update."""
import pytest
import torch

from playground.diffusion.schedule import ScheduleConfig
from playground.models.unet import LatentUNet, UNetConfig, timestep_embedding
from playground.store.checkpoints import load_config, load_model, save_model
from playground.training.ema import EMA
from playground.training.trainers.ldm_throughput import measure_train_throughput

TINY = dict(in_channels=4, sample_size=8, channels=(8, 16), attention_levels=(1,), head_dim=8,
            context_dim=12)


def tiny_unet(seed=0, **overrides):
    torch.manual_seed(seed)
    model = LatentUNet(UNetConfig(**{**TINY, **overrides})).eval()
    # the output conv (and each residual branch's last layer) start at zero: randomise them so
    # that every input actually reaches the output in these tests
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.2)
    return model


def inputs(b=3, length=5, seed=1, c=4, size=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, size, size, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    context = torch.randn(b, length, 12, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, 3:] = False
    mask[1, 1:] = False
    return x, t, context, mask


def test_output_shape_and_dtype():
    model = tiny_unet()
    x, t, context, mask = inputs()
    eps = model(x, t, context, mask)
    assert eps.shape == x.shape and eps.dtype == torch.float32
    assert torch.isfinite(eps).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eps_bf16 = model(x, t, context, mask)
    assert eps_bf16.shape == x.shape and eps_bf16.dtype == torch.float32
    # a freshly built network predicts ε = 0 (zero-initialised output conv)
    fresh = LatentUNet(UNetConfig(**TINY))
    assert fresh(x, t, context, mask).abs().max() == 0


def test_pixel_shaped_inputs_work():
    model = tiny_unet(in_channels=3, sample_size=16)
    x, t, context, mask = inputs(c=3, size=16)
    assert model(x, t, context, mask).shape == (3, 3, 16, 16)


def test_padded_tokens_are_ignored():
    model = tiny_unet()
    x, t, context, mask = inputs()
    before = model(x, t, context, mask)
    changed = context.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 12) * 10  # only padding positions
    after = model(x, t, changed, mask)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    # without the mask the same change does change the output
    assert (model(x, t, changed, None) - model(x, t, context, None)).abs().max() > 1e-3


def test_context_and_timestep_change_the_output():
    model = tiny_unet()
    x, t, context, mask = inputs()
    base = model(x, t, context, mask)
    other = model(x, t, context + torch.randn_like(context), mask)
    assert (other - base).abs().max() > 1e-3
    later = model(x, (t + 100) % 1000, context, mask)
    assert (later - base).abs().max() > 1e-3


def test_a_fully_masked_row_gives_finite_output():
    model = tiny_unet()
    x, t, context, mask = inputs()
    mask[2] = False
    eps = model(x, t, context, mask)
    assert torch.isfinite(eps).all()
    # that row then ignores the context entirely
    changed = context.clone()
    changed[2] += 5
    torch.testing.assert_close(model(x, t, changed, mask)[2], eps[2], rtol=0, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    model = tiny_unet()
    x, t, context, mask = inputs()
    with pytest.raises(ValueError, match="x_t"):
        model(x[:, :3], t, context, mask)
    with pytest.raises(ValueError, match="context"):
        model(x, t, context[..., :5], mask)
    with pytest.raises(ValueError, match="context_mask"):
        model(x, t, context, mask.float())
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(channels=(12, 16))
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channels=(8, 16), attention_levels=(2,))


def test_timestep_embedding_is_sinusoidal():
    emb = timestep_embedding(torch.tensor([0, 5]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    torch.testing.assert_close(emb[1, 0], torch.cos(torch.tensor(5.0)))


def test_save_load_round_trip_keeps_outputs_and_pipeline_fields(tmp_path):
    schedule = ScheduleConfig(num_timesteps=500, kind="cosine")
    model = tiny_unet(autoencoder="autoencoder", text_encoder="clip", schedule=schedule)
    save_model(tmp_path / "unet", model)
    loaded = load_model(str(tmp_path / "unet"))
    assert isinstance(loaded, LatentUNet)
    x, t, context, mask = inputs()
    torch.testing.assert_close(loaded(x, t, context, mask), model(x, t, context, mask),
                               rtol=0, atol=0)
    cfg = load_config(str(tmp_path / "unet"))
    assert cfg.autoencoder == "autoencoder" and cfg.text_encoder == "clip"
    assert cfg.schedule == schedule and cfg.channels == (8, 16)


def test_ema_update_math():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # n = 0: d = min(0.9, 1/10) = 0.1
    expected = 0.1 * start["weight"] + 0.9 * model.weight
    torch.testing.assert_close(ema.model.weight, expected)
    assert ema.num_updates == 1
    n = 100
    ema.num_updates = n
    assert ema.current_decay() == 0.9  # (1+100)/(110) > 0.9: the cap applies
    before = ema.model.weight.clone()
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, 0.9 * before + 0.1 * model.weight)
    # state round trip
    other = EMA(torch.nn.Linear(3, 2), decay=0.9)
    other.load_state_tensors(ema.state_tensors())
    assert other.num_updates == ema.num_updates
    torch.testing.assert_close(other.model.weight, ema.model.weight, rtol=0, atol=0)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_measure_train_throughput_runs():
    cfg = UNetConfig(**TINY)
    img_s = measure_train_throughput(cfg, (4, 8, 8), (5, 12), batch_size=4, steps=1, amp="bf16")
    assert img_s > 0
