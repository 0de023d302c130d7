"""The inversion tables (playground.evaluation.inversion) on a tiny pipeline: the edited
captions differ only by the edit, every cell is the pipeline's own deterministic output, and the
CLI writes both tables."""
import json

import numpy as np
import pytest
import torch

from playground.data.images import images_to_tensor
from playground.data.synthfaces import SynthFacesDataset
from playground.evaluation.inversion import edit_prompts, edit_table, inversion_table, main
from playground.evaluation.quality import judge_attributes
from playground.pipelines.inversion import invert
from playground.pipelines.latent_diffusion import load_pipeline
from playground.pipelines.prompts import named_attributes
from playground.store.checkpoints import load_model
from tests.helpers import save_tiny_pipeline

pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py


@pytest.fixture(scope="module")
def faces():
    return SynthFacesDataset("test", n=40)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    save_tiny_pipeline(tmp_path / "trained", judge=True)
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    return load_pipeline("ldm"), load_model("judge").eval()


def test_an_edited_caption_is_the_caption_with_the_attribute_added(faces):
    rows = np.flatnonzero(faces.attributes["Wearing_Hat"] == 0)[:5]
    sources, edited = edit_prompts(faces.attributes, rows, "Wearing_Hat")
    for source, new in zip(sources, edited):
        assert named_attributes(source).get("Wearing_Hat", 0) == 0  # absent, or "not wearing …"
        assert named_attributes(new).get("Wearing_Hat") == 1 and new != source
    assert edit_prompts(faces.attributes, rows, "Wearing_Hat") == (sources, edited)  # seeded


def test_edit_table_cells_are_the_pipelines_outputs(tiny, faces):
    pipe, judge = tiny
    rows = edit_table(pipe, judge, faces.images, faces.attributes, edits=("Eyeglasses",),
                      per_edit=3, guidance=(1.0, 3.0), steps=4)
    assert [(r["edit"], r["guidance"], r["n"]) for r in rows] == [("Eyeglasses", 1.0, 3),
                                                                   ("Eyeglasses", 3.0, 3)]
    # the w = 3 cell, recomputed by hand from the same pieces
    chosen = np.flatnonzero(faces.attributes["Eyeglasses"] == 0)[:3]
    sources, edited = edit_prompts(faces.attributes, chosen, "Eyeglasses")
    x_T = invert(pipe, faces.images[chosen], sources, 3.0, 4)
    kw = dict(guidance=3.0, sampler="ddim", steps=4, eta=0.0, x_T=x_T)
    back, changed = pipe.sample(sources, **kw), pipe.sample(edited, **kw)
    read = judge_attributes(judge, changed)
    assert rows[1]["success"] == pytest.approx(read["Eyeglasses"].mean())
    with torch.no_grad():
        gap = (judge.features(back) - judge.features(changed)).norm(dim=1).mean()
    assert rows[1]["distance"] == pytest.approx(float(gap), rel=1e-5)
    for r in rows:
        assert 0 <= r["success"] <= 1 and 0 <= r["kept"] <= 1 and r["distance"] >= 0


def test_round_trip_table_and_cli(tiny, faces, tmp_path):
    pipe, _ = tiny
    table = inversion_table(pipe, faces.images[:2], ["", ""], steps=(2, 4), guidance=(1.0,))
    original = images_to_tensor(faces.images[:2])
    assert [(r["steps"], r["guidance"]) for r in table] == [(2, 1.0), (4, 1.0)]
    assert table[0]["ceiling"] == table[1]["ceiling"] > 0
    from playground.models.autoencoder import psnr

    assert table[0]["ceiling"] == pytest.approx(
        float(psnr(pipe.decode(pipe.encode(original)), original).mean()))
    assert main(["ldm", "--faces", "2", "--only", "edits", "--steps", "4",
                 "--out", str(tmp_path)]) == 0
    edits = json.loads((tmp_path / "inversion_edits.json").read_text())
    assert {r["edit"] for r in edits} == {"Wearing_Hat", "Blond_Hair", "Eyeglasses", "Smiling"}
    assert all(r["n"] == 2 for r in edits)


def test_morph_table_scores_each_world_with_the_judge(tiny, faces, tmp_path):
    from playground.evaluation.inversion import morph_table
    from playground.pipelines.inversion import diffusion_morph, path_smoothness
    from playground.pipelines.latent_paths import morph
    from tests.helpers import save_tiny_vae

    pipe, judge = tiny
    vae = save_tiny_vae(tmp_path / "vae", beta=10.0).eval()
    table = morph_table(pipe, judge, {"vae": vae}, faces.images, pairs=2, frames=4, steps=3)
    scores = table["mean_step_in_judge_features"]
    assert (table["pairs"], table["frames"]) == (2, 4) and list(scores) == ["vae", "ldm (DDIM-3 inversion)"]
    by_hand = np.mean([path_smoothness(judge, morph(vae, faces.images[a], faces.images[a + 1], 4,
                                                    "slerp")) for a in (0, 2)])
    assert scores["vae"] == pytest.approx(by_hand, rel=1e-6)
    by_hand = np.mean([path_smoothness(judge, diffusion_morph(
        pipe, faces.images[a], faces.images[a + 1], frames=4, steps=3)) for a in (0, 2)])
    assert scores["ldm (DDIM-3 inversion)"] == pytest.approx(by_hand, rel=1e-5) and by_hand > 0
    with pytest.raises(ValueError, match="2 pairs need 4 faces"):
        morph_table(pipe, judge, {"vae": vae}, faces.images[:3], pairs=2)
