"""Saving and loading models: safetensors + config.json, safe names, atomic writes."""
import json
import os
import pickle
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import playground
from playground.models.vae import BetaVAE, VAEConfig
from playground.store import files
from playground.store.checkpoints import (
    ModelNotFoundError,
    list_models,
    load_config,
    load_metrics,
    load_model,
    resolve_model_dir,
    save_model,
)
from playground.store.files import atomic_write_bytes
from playground.store.model_kinds import register_kind

TINY = VAEConfig(latent_dim=8, channels=(8, 8, 8, 8), beta=4.0)


@pytest.fixture(autouse=True)
def model_dirs(tmp_path, monkeypatch):
    """trained/ and runs/ inside tmp_path; one thread for the tiny models."""
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return BetaVAE(TINY)


def probe(model):
    """Outputs that depend on every weight: encoder moments and decoded images."""
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        return mu, logvar, model.decode(z)


def test_save_then_load_gives_identical_outputs(model_dirs):
    model = tiny_model().eval()
    folder = save_model(model_dirs / "trained" / "vae-tiny", model, metrics={"beta": 4.0})
    assert sorted(os.listdir(folder)) == ["config.json", "metrics.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "vae" and config["channels"] == [8, 8, 8, 8] and config["beta"] == 4.0

    loaded = playground.load("vae-tiny")
    assert isinstance(loaded, BetaVAE) and not loaded.training
    assert loaded.config == TINY and loaded.checkpoint_dir == folder.resolve()
    for a, b in zip(probe(model), probe(loaded)):
        assert torch.equal(a, b)
    assert load_metrics("vae-tiny") == {"beta": 4.0}
    assert load_config("vae-tiny") == TINY


def test_fp16_weights_are_half_the_size_and_load_back_as_fp32(model_dirs):
    model = tiny_model().eval()
    full = save_model(model_dirs / "runs" / "full", model)
    folder = save_model(model_dirs / "runs" / "half", model, dtype=torch.float16)
    ratio = (folder / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.6
    stored = load_file(folder / "model.safetensors")
    assert all(t.dtype == torch.float16 for t in stored.values())
    loaded = load_model("half")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for a, b in zip(probe(model), probe(loaded)):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_names_resolve_to_trained_first_then_runs(model_dirs):
    save_model(model_dirs / "runs" / "both", tiny_model(1))
    save_model(model_dirs / "runs" / "only-run", tiny_model(2))
    save_model(model_dirs / "trained" / "both", tiny_model(3))
    assert resolve_model_dir("both") == (model_dirs / "trained" / "both").resolve()
    assert resolve_model_dir("only-run") == (model_dirs / "runs" / "only-run").resolve()
    listed = {(m["name"], m["source"]) for m in list_models()}
    assert listed == {("both", "trained"), ("only-run", "runs")}
    assert list_models(kind="unet") == []
    assert [m["kind"] for m in list_models(kind="vae")] == ["vae", "vae"]
    with pytest.raises(ModelNotFoundError, match="no model named 'missing'.*both"):
        load_model("missing")


def test_an_explicit_run_folder_path_loads(model_dirs):
    folder = save_model(model_dirs / "elsewhere" / "my-run", tiny_model())
    assert isinstance(load_model(str(folder)), BetaVAE)
    assert isinstance(load_model(folder), BetaVAE)  # a pathlib.Path too
    with pytest.raises(ValueError, match="invalid model name"):
        load_model(str(folder), allow_paths=False)  # e.g. a name typed into the UI


@pytest.mark.parametrize("name", ["../x", "/etc", "..", "a/../b", "trained/../../etc", "",
                                  ".hidden", "-rf", "name with space", "x\x00y"])
def test_unsafe_or_malformed_names_are_refused(name):
    with pytest.raises(ValueError):
        load_model(name)
    with pytest.raises(ValueError):
        load_model(name, allow_paths=False)


def test_a_symlink_out_of_trained_is_refused(model_dirs):
    outside = save_model(model_dirs / "outside" / "evil", tiny_model())
    (model_dirs / "trained").mkdir()
    (model_dirs / "trained" / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        load_model("evil")


class _Bomb:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_checkpoint_is_never_read(model_dirs, monkeypatch):
    folder = model_dirs / "runs" / "pickled"
    folder.mkdir(parents=True)
    marker = model_dirs / "unpickled"
    (folder / "config.json").write_text(json.dumps({"kind": "vae", "latent_dim": 8,
                                                    "channels": [8, 8, 8, 8]}))
    (folder / "model.pt").write_bytes(pickle.dumps(_Bomb(str(marker))))
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Bomb(str(marker))))

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", no_torch_load)
    with pytest.raises(ValueError, match="corrupt or truncated safetensors"):
        load_model("pickled")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model("pickled")
    assert not marker.exists()


def test_corrupt_files_give_clear_errors(model_dirs):
    folder = save_model(model_dirs / "runs" / "broken", tiny_model())
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(ValueError, match="corrupt or truncated safetensors file .*broken"):
        load_model("broken")
    (folder / "config.json").write_text('{"kind": "vae", "latent_dim": ')
    with pytest.raises(ValueError, match="corrupt JSON in .*config.json"):
        load_model("broken")
    (folder / "config.json").write_text('{"kind": "vae", "latent_dim": 8, "colour": "red"}')
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        load_model("broken")
    (folder / "config.json").write_text('{"kind": "teleporter"}')
    with pytest.raises(ValueError, match="unknown model kind 'teleporter'"):
        load_model("broken")
    (folder / "config.json").write_text('{"latent_dim": 8}')
    with pytest.raises(ValueError, match="no \"kind\""):
        load_model("broken")


def test_weights_that_do_not_fit_the_config_are_refused(model_dirs):
    folder = save_model(model_dirs / "runs" / "mismatch", tiny_model())
    config = json.loads((folder / "config.json").read_text())
    config["latent_dim"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit the vae model"):
        load_model("mismatch")


def test_incomplete_runs_are_not_listed(model_dirs):
    run = model_dirs / "runs" / "starting"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("")
    (model_dirs / "runs" / "bad name").mkdir()
    assert list_models() == []


@dataclass
class _LinearConfig:
    kind: ClassVar[str] = "test-linear"
    width: int = 3  # features in and out
    shape: tuple[int, ...] = (1, 2)  # a tuple field, to check the JSON list → tuple round trip


class _Linear(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.layer = nn.Linear(config.width, config.width)


def test_new_model_kinds_register_their_loader(model_dirs):
    register_kind("test-linear", _LinearConfig, _Linear)
    model = _Linear(_LinearConfig(width=5))
    save_model(model_dirs / "runs" / "lin", model)
    loaded = load_model("lin")
    assert isinstance(loaded, _Linear) and loaded.config == _LinearConfig(width=5)
    assert isinstance(loaded.config.shape, tuple)
    assert torch.equal(loaded.layer.weight, model.layer.weight)


def test_an_interrupted_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old contents")

    def crash(fd):
        raise KeyboardInterrupt("killed during fsync")

    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp file


def test_save_model_is_atomic_per_file(model_dirs, monkeypatch):
    folder = save_model(model_dirs / "runs" / "atomic", tiny_model(1))
    before = (folder / "model.safetensors").read_bytes()
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("model.safetensors"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_model(folder, tiny_model(2))
    assert (folder / "model.safetensors").read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    for a, b in zip(probe(tiny_model(1).eval()), probe(load_model("atomic"))):
        assert torch.equal(a, b)
