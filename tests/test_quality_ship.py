"""Headline numbers (playground.evaluation.quality), training probes, and ship --if-better with its curve."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from playground.data.images import images_to_tensor
from playground.data.synthfaces import SynthFacesDataset
from playground.evaluation import quality
from playground.models.judge import Judge, JudgeConfig
from playground.models.vae import VAEConfig
from playground.store.checkpoints import load_model
from playground.store.files import read_json
from playground.training import read_log
from playground.training import ship as ship_module
from playground.training.trainers.vae import VAETrainConfig, train_vae
from tests.helpers import TINY_TRAIN as TINY
from tests.helpers import RandomFaces


class Identity(torch.nn.Module):
    """A perfect autoencoder."""

    def reconstruct(self, x):
        return x


@pytest.fixture(scope="module")
def faces():
    test = SynthFacesDataset("test", n=64)
    return images_to_tensor(test.images), test.attributes, test.factors


def test_a_perfect_reconstruction_scores_what_the_judge_scores_on_the_originals(faces):
    x, attributes, _ = faces
    torch.manual_seed(0)
    judge = Judge(JudgeConfig(channels=(8, 8, 16, 16), feature_dim=16)).eval()
    direct = quality.attribute_accuracy(judge, x, attributes)
    probe = quality.reconstruction_probe(Identity(), judge, x, attributes)
    assert probe["small_detail_acc"] == direct["acc"]
    assert set(probe["small_detail_per_attribute"]) == set(quality.SMALL_DETAILS)
    assert probe["psnr"] == pytest.approx(100.0)  # mse clamped at 1e-10
    # accuracy is the share of faces where the judge agrees with the truth
    predicted = quality.judge_attributes(judge, x)
    smiling = (predicted["Smiling"] == np.asarray(attributes["Smiling"]).astype(bool)).mean()
    assert direct["per_attribute"]["Smiling"] == pytest.approx(smiling)


def test_the_headline_follows_the_kind_and_beta():
    assert quality.headline_key("vae", VAEConfig(beta=1.0)) == "small_detail_acc"
    assert quality.headline_key("vae", VAEConfig(beta=10.0)) == "light_abs_r"
    assert quality.headline_key("clip", None) == "zero_shot_auc"
    assert quality.headline_key("unet", None) == "prompt_acc"
    with pytest.raises(ValueError, match="no headline"):
        quality.headline_key("teapot", None)


def test_a_headline_at_its_ceiling_lets_its_second_number_decide():
    def unet(prompt_acc, caption_fd):
        return {"headline": "prompt_acc", "value": prompt_acc, "prompt_acc": prompt_acc,
                "caption_fd": caption_fd}

    noise = quality.SECOND_NUMBERS["prompt_acc"][2]
    assert quality.improves(unet(1.0, 12.0), unet(1.0, 15.0))  # both at the ceiling: FD decides
    assert not quality.improves(unet(1.0, 15.0), unet(1.0, 12.0))
    assert quality.improves(unet(1.0 - noise, 12.0), unet(1.0, 15.0))  # within the noise
    assert not quality.improves(unet(0.9, 5.0), unet(1.0, 15.0))  # a real loss of prompts
    assert quality.improves(unet(1.0, 30.0), unet(0.8, 15.0))  # a real gain of prompts
    # a headline without a second number (or scores without it): the headline alone
    vae = {"headline": "small_detail_acc"}
    assert quality.improves({**vae, "value": 0.85}, {**vae, "value": 0.84})
    assert not quality.improves({**vae, "value": 0.84}, {**vae, "value": 0.84})
    assert not quality.improves({"headline": "prompt_acc", "value": 1.0}, unet(1.0, 15.0))


def test_factor_scores_find_a_dimension_that_copies_light(faces):
    x, _, factors = faces

    class LightCode(torch.nn.Module):  # μ_0 = the light factor itself, the rest noise
        def encode(self, images):
            n = images.shape[0]
            mu = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
            mu[:, 0] = torch.as_tensor(np.asarray(factors["light"][:n]), dtype=torch.float32)
            return mu, torch.zeros_like(mu)

    scores = quality.vae_factor_scores(LightCode(), x, factors)
    assert scores["light_abs_r"] == pytest.approx(1.0)
    assert 0 <= scores["mig"] <= 1


# ----------------------------------------------------------------------------- ship --if-better
def _tiny_run(folder, steps: int):
    cfg = VAETrainConfig(out=str(folder), max_steps=steps, probe_minutes=0.0001, probe_judge=None,
                         **TINY)
    return train_vae(cfg, train_set=RandomFaces(48), val_set=RandomFaces(16, 1))


def test_runs_log_quality_probes_with_cumulative_counters(tmp_path):
    _tiny_run(tmp_path / "run", 3)
    probes = [r for r in read_log(tmp_path / "run") if r["type"] == "probe"]
    assert probes[0]["step"] == 0 and probes[-1]["step"] == 3
    assert all("psnr" in p and "probe_kl" in p and p["cpu_hours"] >= 0 for p in probes)
    assert [p["steps"] for p in probes] == sorted(p["steps"] for p in probes)


def test_ship_if_better_keeps_the_better_model_and_its_curve(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    _tiny_run(tmp_path / "first", 2)
    _tiny_run(tmp_path / "second", 3)
    scores = {"first": 0.5, "second": 0.6, "vae-tiny": None}

    def fake_measure(path, judge="judge", n=0):  # the headline's plumbing, not the judge
        name = path.rstrip("/").split("/")[-1]
        value = scores[name] if scores.get(name) is not None else scores["current"]
        return {"kind": "vae", "headline": "small_detail_acc", "value": value,
                "small_detail_acc": value, "n": 8}

    monkeypatch.setattr(ship_module, "measure", fake_measure)
    first = ship_module.ship_if_better(tmp_path / "first", "vae-tiny")
    assert first["shipped"] and first["old"] is None
    scores["current"] = 0.5
    second = ship_module.ship_if_better(tmp_path / "second", "vae-tiny")
    assert second["shipped"] and second["old"]["value"] == 0.5
    shipped = tmp_path / "trained" / "vae-tiny"
    assert read_json(shipped / "metrics.json")["quality"]["value"] == 0.6
    curve = ship_module.read_curve(shipped)
    assert [p["source"] for p in curve].count("shipped") == 2  # one point per shipped model
    assert any(p["source"] == "probe" for p in curve)
    assert curve[-1]["steps"] == 3 and curve[-1]["small_detail_acc"] == 0.6
    before = (shipped / "model.safetensors").read_bytes()
    # a worse run is measured and refused; the CLI says so and trained/ is untouched
    scores["current"], scores["first"] = 0.6, 0.55
    assert ship_module.main([str(tmp_path / "first"), "vae-tiny", "--if-better"]) == 0
    assert "0.6000 -> 0.5500" in capsys.readouterr().out
    assert (shipped / "model.safetensors").read_bytes() == before
    assert load_model("vae-tiny").config.channels == TINY["channels"]


# ----------------------------------------------------------------------------- ship --chain
def _pipeline_runs(runs, tag: int):
    """Run folders of a tiny autoencoder, CLIP and a U-Net that names them (as a trainer
    writes it: bare names of folders in runs/)."""
    from playground.models.autoencoder import AutoencoderConfig, KLAutoencoder
    from playground.models.clip import CLIPConfig, TextImageCLIP
    from playground.models.unet import LatentUNet, UNetConfig
    from playground.store.checkpoints import save_model

    torch.manual_seed(tag)
    save_model(runs / f"ae-{tag}", KLAutoencoder(AutoencoderConfig(latent_size=16,
                                                                   channels=(8, 8, 16))))
    save_model(runs / f"clip-{tag}", TextImageCLIP(CLIPConfig(
        embed_dim=8, patch_size=16, vision_width=16, vision_layers=1, vision_head_width=8,
        context_length=24, text_width=16, text_heads=2, text_layers=1)))
    unet = UNetConfig(in_channels=4, sample_size=16, channels=(8, 16), attention_levels=(1,),
                      head_dim=8, context_dim=16, space="latent", autoencoder=f"ae-{tag}",
                      text_encoder=f"clip-{tag}")
    save_model(runs / f"ldm-{tag}", LatentUNet(unet))
    return runs / f"ldm-{tag}"


def test_a_pipeline_ships_as_a_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    first, second = _pipeline_runs(tmp_path / "runs", 1), _pipeline_runs(tmp_path / "runs", 2)
    scores = {"ldm-1": 0.5, "ldm-2": 0.6, "ae-1": 0.7, "ae-2": 0.8, "clip-1": 0.6, "clip-2": 0.65}
    shipped_as = {}  # trained/<name> → the run now there

    def fake_measure(path, judge="judge", n=0):  # the plumbing, not the judge
        name = path.rstrip("/").split("/")[-1]
        value = scores[shipped_as.get(name, name)]
        return {"headline": "h", "value": value, "h": value, "n": 8}

    def remember(run_dir, name, *args, **kwargs):
        shipped_as[name] = Path(run_dir).name
        return real_ship(run_dir, name, *args, **kwargs)

    real_ship = ship_module.ship
    monkeypatch.setattr(ship_module, "measure", fake_measure)
    monkeypatch.setattr(ship_module, "ship", remember)
    assert ship_module.ship_chain(first, "ldm")["shipped"]  # nothing shipped yet
    trained = tmp_path / "trained"
    config = read_json(trained / "ldm" / "config.json")
    assert (config["autoencoder"], config["text_encoder"]) == ("autoencoder", "clip")
    assert sorted(p.name for p in trained.iterdir()) == ["autoencoder", "clip", "ldm"]
    # the shipped pipeline loads from trained/ alone, with the weights of its runs
    from playground.pipelines.latent_diffusion import load_pipeline
    pipeline = load_pipeline("ldm")
    ae_run = load_model(tmp_path / "runs" / "ae-1")
    for a, b in zip(pipeline.autoencoder.state_dict().values(), ae_run.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)  # fp16 on disk
    # a part alone is refused while the U-Net uses it
    with pytest.raises(ValueError, match="trained/ldm uses trained/autoencoder"):
        ship_module.ship_if_better(tmp_path / "runs" / "ae-2", "autoencoder")
    # a worse pipeline changes nothing; a better one replaces all three, each with its curve
    before = {p: (trained / p / "model.safetensors").read_bytes() for p in shipped_as}
    scores["ldm-2"] = 0.4
    assert ship_module.main([str(second), "ldm", "--chain"]) == 0
    assert "not shipped" in capsys.readouterr().out
    assert all((trained / p / "model.safetensors").read_bytes() == b for p, b in before.items())
    scores["ldm-2"] = 0.6
    assert ship_module.ship_chain(second, "ldm")["shipped"]
    assert shipped_as == {"autoencoder": "ae-2", "clip": "clip-2", "ldm": "ldm-2"}
    assert read_json(trained / "ldm" / "config.json")["autoencoder"] == "autoencoder"
    curve = ship_module.read_curve(trained / "autoencoder")
    assert [p["h"] for p in curve] == [0.7, 0.8]  # the old part's point, then the new one's
    assert read_json(trained / "clip" / "metrics.json")["quality"]["value"] == 0.65


def test_a_text_encoder_with_the_same_text_states_ships_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    from playground.store.checkpoints import save_model

    runs = tmp_path / "runs"
    monkeypatch.setattr(ship_module, "measure", lambda path, judge="judge", n=0: {
        "headline": "h", "value": 0.9 if "tuned" in path else 0.5, "n": 8})
    assert ship_module.ship_chain(_pipeline_runs(runs, 1), "ldm")["shipped"]
    shipped = load_model("clip")
    # the image side and the projections moved, the text states did not (fp16 on disk → fp32)
    tuned = load_model("clip")
    with torch.no_grad():
        tuned.clip.visual.proj.add_(0.1)
        tuned.clip.text_projection.add_(0.1)
    save_model(runs / "clip-tuned", tuned)
    assert ship_module.same_conditioning(runs / "clip-tuned", tmp_path / "trained" / "clip")
    assert ship_module.ship_if_better(runs / "clip-tuned", "clip")["shipped"]
    tokens = shipped.tokenize(["a person with glasses"])
    torch.testing.assert_close(load_model("clip").encode_text_tokens(tokens),
                               shipped.encode_text_tokens(tokens), rtol=0, atol=0)
    # one text weight changed: the U-Net's conditioning would change, so it is refused
    with torch.no_grad():
        tuned.clip.ln_final.bias.add_(1e-3)
    save_model(runs / "clip-tuned-text", tuned)
    assert not ship_module.same_conditioning(runs / "clip-tuned-text",
                                             tmp_path / "trained" / "clip")
    with pytest.raises(ValueError, match="trained/ldm uses trained/clip"):
        ship_module.ship_if_better(runs / "clip-tuned-text", "clip")


def test_an_autoencoder_with_the_same_encoder_ships_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    from playground.store.checkpoints import save_model

    runs, trained = tmp_path / "runs", tmp_path / "trained"
    monkeypatch.setattr(ship_module, "measure", lambda path, judge="judge", n=0: {
        "headline": "h", "value": 0.9 if "tuned" in path else 0.5, "n": 8})
    assert ship_module.ship_chain(_pipeline_runs(runs, 1), "ldm")["shipped"]
    tuned = load_model("autoencoder")  # the decoder moved, the encoder did not
    with torch.no_grad():
        next(tuned.decoder.parameters()).add_(0.1)
    save_model(runs / "ae-tuned", tuned)
    assert ship_module.same_conditioning(runs / "ae-tuned", trained / "autoencoder")
    # another scale factor or one encoder weight changed: other latents, refused
    tuned.config.scale_factor *= 1.001
    save_model(runs / "ae-tuned-scale", tuned)
    tuned.config.scale_factor /= 1.001
    with torch.no_grad():
        next(tuned.encoder.parameters()).add_(1e-3)
    save_model(runs / "ae-tuned-encoder", tuned)
    for refused in ("ae-tuned-scale", "ae-tuned-encoder"):
        assert not ship_module.same_conditioning(runs / refused, trained / "autoencoder")
        with pytest.raises(ValueError, match="trained/ldm uses trained/autoencoder"):
            ship_module.ship_if_better(runs / refused, "autoencoder")
    assert ship_module.ship_if_better(runs / "ae-tuned", "autoencoder")["shipped"]
    assert torch.equal(load_model("autoencoder").decoder.state_dict()[
        next(iter(tuned.decoder.state_dict()))], next(tuned.decoder.parameters()).half().float())
