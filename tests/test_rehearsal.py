"""The rehearsal of the hidden re-measurement (playground.evaluation.rehearsal) on tiny models:
its numbers are the headline numbers, measured on other faces and prompts, and its chunks
split them without changing them."""
import numpy as np
import pytest
import torch

from playground.data.images import images_to_tensor
from playground.data.synthfaces import SynthFacesDataset
from playground.evaluation import quality, rehearsal
from playground.evaluation.ldm.config import GUIDANCE_PROMPTS, HELD_OUT_PROMPTS
from playground.evaluation.ldm.model_comparisons import training_captions
from playground.models.clip import TextImageCLIP
from playground.pipelines.prompts import named_attributes
from tests.test_evaluate_ldm import (
    TINY_CLIP,
    tiny_trained,  # noqa: F401 (a fixture: tiny models in trained/)
)

pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py


def test_held_out_prompts_are_new_sentences_in_caption_words():
    sweep = {p.prompt for p in GUIDANCE_PROMPTS}
    vocabulary = {w for caption in training_captions(3000, seed=0)
                  for w in caption.replace(",", "").split()}
    assert len({p.prompt for p in HELD_OUT_PROMPTS}) == len(HELD_OUT_PROMPTS)
    for p in HELD_OUT_PROMPTS:
        assert p.prompt not in sweep, p.prompt
        # what the prompt parser reads agrees with what the judge is asked to find
        assert named_attributes(p.prompt).items() <= p.attributes.items(), p.prompt
        # the text encoder has read every word in training captions
        assert set(p.prompt.replace(",", "").split()) <= vocabulary, p.prompt
    assert sum(len(p.targets) == 2 for p in HELD_OUT_PROMPTS) >= 5  # pairs, not only synonyms


@pytest.mark.usefixtures("tiny_trained")
def test_the_rehearsal_measures_the_headlines_on_test_and_unseen_faces(capsys):
    rows = rehearsal.rehearse(("vae-beta1", "vae-beta10", "judge", "ldm"), seeds=(5,), faces=40,
                              chunk=20, prompt_samples=1)
    by = {(r["model"], r["number"], r["faces"]): r for r in rows}
    assert {f for _, _, f in by} == {"test", "unseen-5", "sweep prompts", "held-out prompts"}
    # on the test faces, the numbers are quality.measure's (the ship-time headline)
    measured = quality.measure("vae-beta1", n=40)
    assert by["vae-beta1", "small_detail_acc", "test"]["value"] == pytest.approx(
        measured["small_detail_acc"])
    beta10 = quality.measure("vae-beta10", n=40)
    for key in ("light_abs_r", "mig"):
        assert by["vae-beta10", key, "test"]["value"] == pytest.approx(beta10[key])
    assert by["vae-beta10", "mig", "test"]["target"] == 0.2
    # the judge on the unseen faces themselves, and two chunks of 20 that average to the whole
    unseen = SynthFacesDataset.unseen(40, 5)
    judge_row = by["judge", "attribute_acc", "unseen-5"]
    judge = quality.load_judge("judge", torch.device("cpu"))
    from playground.data.synthfaces import ATTRIBUTE_NAMES

    x = images_to_tensor(unseen.images)
    halves = [quality.attribute_accuracy(judge, x[i:i + 20], {k: np.asarray(v)[i:i + 20] for k, v
                                                              in unseen.attributes.items()},
                                         tuple(ATTRIBUTE_NAMES))["acc"] for i in (0, 20)]
    assert judge_row["chunks"] == 2
    assert (judge_row["chunk_min"], judge_row["chunk_max"]) == pytest.approx(
        (min(halves), max(halves)))
    assert judge_row["value"] == pytest.approx(np.mean(halves))
    assert judge_row["met"] == (judge_row["value"] >= 0.97)
    # the U-Net on both prompt sets, one row per set, each prompt's share kept
    held = by["ldm", "prompt_acc", "held-out prompts"]
    assert set(held["per_prompt"]) == {p.prompt for p in HELD_OUT_PROMPTS}
    assert held["n"] == len(HELD_OUT_PROMPTS)
    assert held["value"] == pytest.approx(np.mean(list(held["per_prompt"].values())))
    table = rehearsal.markdown(rows, 20)
    assert table.count("\n") == len(rows) + 2 and "unseen-5" in table
    assert "vae-beta1" in capsys.readouterr().out  # progress, one line per model and face set


def test_clip_readings_give_the_mean_and_the_lowest_attribute():
    torch.manual_seed(0)
    clip = TextImageCLIP(TINY_CLIP)
    unseen = SynthFacesDataset.unseen(40, 9)
    mean, lowest = rehearsal.clip_readings(clip, unseen, 20, target=0.9, floor=0.75)
    from playground.evaluation.clip import evaluate_clip

    whole = evaluate_clip(clip, unseen)
    assert mean["value"] == pytest.approx(whole["zero_shot_auc"])
    per = whole["zero_shot_auc_per_attribute"]
    assert lowest["value"] == pytest.approx(min(per.values()))
    assert per[lowest["attribute"]] == pytest.approx(lowest["value"])
    assert f"zero_shot_auc_lowest ({lowest['attribute']})" in rehearsal.markdown(
        [{"model": "clip", "faces": "unseen-9", "n": 40, **lowest}], 20)
    assert mean["chunks"] == lowest["chunks"] == 2 and lowest["target"] == 0.75


@pytest.mark.usefixtures("tiny_trained")
def test_the_command_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(rehearsal, "OUT", tmp_path / "bench" / "rehearsal")
    assert rehearsal.main(["vae-beta1", "--faces", "30", "--chunk", "10", "--seeds", "8",
                           "--write"]) == 0
    from playground.store.files import read_json

    saved = read_json(tmp_path / "bench" / "rehearsal.json")
    assert [r["faces"] for r in saved["rows"]] == ["test", "unseen-8"]
    assert all(r["chunks"] == 3 for r in saved["rows"])
    assert "| vae-beta1 | small_detail_acc | unseen-8 | 30 |" in (
        tmp_path / "bench" / "rehearsal.md").read_text()
    with pytest.raises(SystemExit):
        rehearsal.main(["--chunk", "0"])
