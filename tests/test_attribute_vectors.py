"""Attribute vectors of a β-VAE: the mean-difference direction, its cache, and the judged edits."""
import numpy as np
import pytest
import torch

from playground.data.synthfaces import SynthFacesDataset
from playground.pipelines import attribute_vectors as av
from playground.pipelines import vae as ops
from tests.helpers import save_tiny_vae


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    save_tiny_vae(tmp_path / "trained" / "vae-tiny", beta=1.0, seed=3)
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(av, "_memory", {})
    ops.clear_model_cache()
    yield tmp_path
    ops.clear_model_cache()


def test_a_vector_is_the_mean_difference_and_is_cached_outside_trained(tiny):
    vectors = av.attribute_vectors("vae-tiny", n=96)
    faces = SynthFacesDataset("train", n=96)
    mu = ops.encode_mean(ops.get_model("vae-tiny"), faces.images)
    has = np.asarray(faces.attributes["Smiling"]).astype(bool)
    np.testing.assert_allclose(vectors["Smiling"], mu[has].mean(0) - mu[~has].mean(0), atol=1e-6)
    files = list((tiny / "cache" / "attribute-vectors").glob("vae-tiny-*.npz"))
    assert len(files) == 1 and not list((tiny / "trained").rglob("*.npz"))
    av._memory.clear()  # a fresh process reads the file, and gets the same numbers
    again = av.attribute_vectors("vae-tiny", n=96)
    assert set(again) == set(vectors)
    np.testing.assert_array_equal(again["Smiling"], vectors["Smiling"])


class BrightJudge(torch.nn.Module):
    """Reads every attribute as present on bright faces: an edit that brightens 'adds' it."""

    def predict_attributes(self, images, hard=True):
        bright = images.mean(dim=(1, 2, 3)) > 0.5
        return {name: bright for name in ("Smiling", "Eyeglasses", "Blond_Hair")}


def test_edit_scores_count_successes_and_what_else_changed(tiny):
    scores = av.edit_scores("vae-tiny", BrightJudge(), attributes=("Smiling", "Eyeglasses"),
                            alphas=(1.0,), n=32)
    for entry in scores.values():
        assert 0 <= entry["faces"] <= 32
        if entry["faces"]:
            r = entry["alpha=1"]
            assert 0 <= r["success"] <= 1
            # this judge reads all attributes alike: the others change exactly when a does
            assert r["kept"] == pytest.approx(1 - r["success"])
    table = av.edit_table({"vae-tiny": scores}, alphas=(1.0,))
    assert table.splitlines()[0].startswith("| model | attribute | faces | success α=1")
