"""Shipping a run: fp16 weights, same config and metrics, outputs close to the run's."""
import torch

from playground.models.vae import BetaVAE, VAEConfig
from playground.store.checkpoints import load_model, save_model
from playground.store.files import read_json
from playground.training.ship import ship


def test_ship_writes_fp16_model_close_to_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    torch.manual_seed(0)
    config = VAEConfig(latent_dim=8, channels=(8, 16, 16, 16), beta=4.0)
    run = save_model(tmp_path / "run", BetaVAE(config), metrics={"beta": 4.0, "kl": 1.5})
    out, gap = ship(run, "vae-tiny")
    assert out == tmp_path / "trained" / "vae-tiny"
    assert 0.0 < gap < 5e-3  # fp16 rounding is visible but small
    metrics = read_json(out / "metrics.json")
    assert metrics["kl"] == 1.5 and metrics["shipped_dtype"] == "float16"
    assert (out / "model.safetensors").stat().st_size < (run / "model.safetensors").stat().st_size * 0.6
    assert load_model("vae-tiny").config == load_model(run).config
