"""Test-session settings: one torch thread (tiny models run faster that way on 2 busy cores),
the `isolated_run_env` fixture the training tests share, `small_sets`, the faces the tiny
CLIPs learn from, and a guard that no test changes the shipped models."""
import hashlib
import os
from pathlib import Path

import pytest
import torch

from playground.data.synthfaces import SynthFacesDataset

torch.set_num_threads(1)
# no background U-Net compiles (tens of seconds of CPU each) in tests or the apps they start;
# tests/test_compiled_unet.py turns it on where it is the subject
os.environ["PLAYGROUND_UNET_COMPILE"] = "off"

SHIPPED = Path(__file__).resolve().parents[1] / "trained"


def _shipped_files() -> dict[str, str]:
    """sha256 of every file under the repository's trained/, by relative path."""
    return {str(p.relative_to(SHIPPED)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(SHIPPED.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def shipped_models_untouched():
    """Fails the session when a test wrote into the real trained/ (a fixture that saves tiny
    models before `isolated_run_env` redirects PLAYGROUND_TRAINED would overwrite them)."""
    before = _shipped_files()
    yield
    after = _shipped_files()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests changed the shipped models in {SHIPPED}: {changed[:5]}"


@pytest.fixture
def isolated_run_env(tmp_path, monkeypatch):
    """Runs, trained models and dataset caches under tmp_path; no torchrun variables; one
    torch thread (tiny models: as fast, and robust to a busy CPU). Training tests use it with
    ``pytestmark = pytest.mark.usefixtures("isolated_run_env")``."""
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_sets():
    """96 train and 64 validation SynthFaces: enough for a tiny CLIP's few steps."""
    return SynthFacesDataset("train", n=96), SynthFacesDataset("val", n=64)
