"""The LDM evaluation (playground.evaluation.ldm) on tiny real models saved to a temporary trained/:
each part writes its keys, merging keeps the others, FD of a set against itself is 0, the same
seed gives the same numbers, and the targets follow from the numbers."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from playground.data.captions import caption_from_attributes
from playground.diffusion import ScheduleConfig
from playground.evaluation.ldm import scores
from playground.evaluation.ldm.budget import (
    BUDGET_SHARES,
    StepCost,
    choose_counts,
    estimate_seconds,
)
from playground.evaluation.ldm.cli import main
from playground.evaluation.ldm.config import (
    GRID_PROMPTS,
    GUIDANCE_PROMPTS,
    MAX_SAMPLES,
    EvalConfig,
)
from playground.evaluation.ldm.guidance_sweep import guidance_targets
from playground.evaluation.ldm.model_comparisons import PIXEL_CLAIM, training_captions
from playground.evaluation.ldm.run import PARTS, evaluate, merge_into_metrics
from playground.evaluation.ldm.sampler_table import table1_targets
from playground.evaluation.ldm.scores import (
    fd_to_reference,
    mean_pairwise_distance,
    reference_stats,
)
from playground.evaluation.ldm.solver_frontier import (
    caption_adherence,
    fastest_at_reference,
    frontier_markdown,
)
from playground.models.autoencoder import AutoencoderConfig, KLAutoencoder
from playground.models.clip import CLIPConfig, TextImageCLIP
from playground.models.judge import Judge, JudgeConfig, judge_features
from playground.models.unet import LatentUNet, UNetConfig
from playground.models.vae import BetaVAE, VAEConfig
from playground.pipelines.latent_diffusion import load_pipeline
from playground.pipelines.prompts import named_attributes
from playground.store.checkpoints import load_model, save_model, trained_dir
from playground.training import mix_seed

pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py

TINY_CLIP = CLIPConfig(embed_dim=16, patch_size=16, vision_width=16, vision_layers=1,
                       vision_head_width=8, text_width=16, text_heads=2, text_layers=1)
TINY_AE = AutoencoderConfig(latent_size=8, channels=(8, 8, 8, 8))  # 4×8×8 latents
TINY_UNET = UNetConfig(sample_size=8, channels=(8, 16), attention_levels=(1,), head_dim=8,
                       context_dim=16, autoencoder="ae-tiny", text_encoder="clip-tiny",
                       schedule=ScheduleConfig(num_timesteps=100))
TINY_JUDGE = JudgeConfig(channels=(8, 8, 16, 16), feature_dim=16)
TINY_VAE = dict(latent_dim=8, channels=(8, 8, 16, 16))
# Small but complete: both samplers, guidance on and off, two prompts (one with 3 targets).
SMALL = dict(samples=6, guidance_samples=3, batch_size=8, table_steps=(2, 4), fast_steps=4,
             guidance_scales=(0.0, 1.0, 7.5), reference_n=24, grid_seeds=2,
             grid_prompts=GRID_PROMPTS[:2], progress=False,
             guidance_prompts=(GUIDANCE_PROMPTS[0], GUIDANCE_PROMPTS[5]), ceiling_faces=48)


def _jitter(model, seed, scale=0.1):
    """Random weights everywhere (the zero-initialised output layers too), so the text and the
    timestep change the prediction as in a trained model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


@pytest.fixture
def tiny_trained(isolated_run_env):
    """trained/{ldm, ae-tiny, clip-tiny, judge, vae-beta1, vae-beta4, vae-beta10}: tiny models,
    in the test's own trained/ (asking for isolated_run_env first, so that whatever order the
    fixtures are named in, they never overwrite the shipped models)."""
    root = trained_dir()
    torch.manual_seed(0)
    save_model(root / "ae-tiny", KLAutoencoder(TINY_AE))
    save_model(root / "clip-tiny", TextImageCLIP(TINY_CLIP))
    save_model(root / "ldm", _jitter(LatentUNet(TINY_UNET), 1))
    save_model(root / "judge", _jitter(Judge(TINY_JUDGE), 2, 0.05))
    for beta in (1.0, 4.0, 10.0):
        save_model(root / f"vae-beta{beta:g}", BetaVAE(VAEConfig(beta=beta, **TINY_VAE)))
    return root


def small_config(tmp_path, **overrides):
    return EvalConfig(**{**SMALL, "grid_path": str(tmp_path / "grid.png"), **overrides})


def numbers(result):
    """The sample-dependent numbers of a result (wall times left out)."""
    return {
        "fd": [r["fd"] for r in result.get("ddim_table", [])],
        "acc": [r["accuracy"] for r in result.get("guidance_sweep", [])],
        "div": [r["diversity"] for r in result.get("guidance_sweep", [])],
        "vae": result.get("fd_by_model"),
    }


# ----------------------------------------------------------------------------- prompts
def test_sweep_prompts_are_training_captions_and_agree_with_the_prompt_parser():
    for p in GUIDANCE_PROMPTS:
        captions = {caption_from_attributes(p.attributes, seed) for seed in range(400)}
        assert p.prompt in captions, p.prompt  # the text encoder was trained on this very text
        assert named_attributes(p.prompt).items() <= p.attributes.items(), p.prompt
    assert len({p.prompt for p in GUIDANCE_PROMPTS}) == len(GUIDANCE_PROMPTS)



def test_training_captions_describe_seeded_training_faces_without_rendering_them():
    from playground.data.synthfaces import (
        SPLIT_SEEDS,
        SPLIT_SIZES,
        attributes_from_factors,
        generate_factors,
    )

    captions = training_captions(6, seed=3)
    assert len(captions) == 6 and len(set(captions)) == 6
    assert training_captions(6, seed=3) == captions and training_captions(6, seed=4) != captions
    # caption i names only what training face rows[i] has (read back by the prompt parser)
    rows = np.random.default_rng(mix_seed(3, 5)).choice(SPLIT_SIZES["train"], 6, replace=False)
    attributes = attributes_from_factors(generate_factors(int(rows.max()) + 1,
                                                          SPLIT_SEEDS["train"]))
    named = [named_attributes(c) for c in captions]
    assert sum(len(n) for n in named) >= 6
    for row, said in zip(rows, named):
        assert all(int(attributes[a][row]) == v for a, v in said.items()), (row, said)
    with pytest.raises(ValueError, match="training faces"):
        training_captions(0, seed=0)

# ----------------------------------------------------------------------------- numbers
def test_fd_of_a_set_against_itself_is_zero_and_the_reference_is_cached(tiny_trained):
    judge = Judge(TINY_JUDGE).eval()
    ref = reference_stats(judge, "test", 24)
    assert reference_stats(judge, "test", 24) is ref  # computed once
    from playground.data.synthfaces import SynthFacesDataset

    feats = judge_features(judge, SynthFacesDataset("test", n=24).images)
    assert fd_to_reference(feats, ref) == pytest.approx(0.0, abs=1e-8)
    assert fd_to_reference(feats + 1.0, ref) == pytest.approx(16.0, rel=1e-6)  # ‖Δμ‖² = 16·1²
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])) == \
        pytest.approx((5 + 0 + 5) / 3)


def test_targets_are_computed_from_the_numbers():
    def rows(ddim_fd, ddpm_fd, full_fd, fast_s, full_s):
        out = [{"sampler": "DDIM", "eta": 0.0, "steps": s, "method": "ddim", "fd": f,
                "seconds": fast_s * s / 50} for s, f in zip((10, 50), ddim_fd)]
        out += [{"sampler": "DDPM", "eta": 1.0, "steps": s, "method": "ddim", "fd": f,
                 "seconds": fast_s * s / 50} for s, f in zip((10, 50), ddpm_fd)]
        return out + [{"sampler": "DDPM", "eta": 1.0, "steps": 1000, "method": "ddpm",
                       "fd": full_fd, "seconds": full_s}]

    good = table1_targets(rows((5.0, 2.0), (9.0, 3.0), 1.8, 1.0, 19.0))
    assert good["ddim_beats_ddpm"]["met"] and good["ddim50_fd_within_20pct_of_ddpm1000"]["met"]
    assert good["ddpm1000_over_ddim50_time"]["ratio"] == pytest.approx(19.0)
    assert good["ddpm1000_over_ddim50_time"]["met"]
    bad = table1_targets(rows((5.0, 4.0), (9.0, 3.0), 1.8, 1.0, 17.0))
    assert not bad["ddim_beats_ddpm"]["met"] and bad["ddim_beats_ddpm"]["per_steps"]["10"]["ddim_better"]
    assert bad["ddim50_fd_within_20pct_of_ddpm1000"]["ratio"] == pytest.approx(4.0 / 1.8)
    assert not bad["ddim50_fd_within_20pct_of_ddpm1000"]["met"]
    assert not bad["ddpm1000_over_ddim50_time"]["met"]

    sweep = [{"w": w, "accuracy": a, "diversity": d} for w, a, d in
             ((0.0, 0.3, 9.0), (1.0, 0.5, 8.0), (3.0, 0.8, 7.0), (7.5, 0.95, 6.0), (10.0, 0.96, 5.0))]
    g = guidance_targets(sweep)
    assert g["accuracy_at_7.5"]["met"] and g["accuracy_rising_1_to_7.5"]["met"]
    assert g["accuracy_rising_1_to_7.5"]["monotone"] and g["diversity_falling"]["met"]
    sweep[3] = {"w": 7.5, "accuracy": 0.45, "diversity": 8.5}
    g = guidance_targets(sweep)
    assert not g["accuracy_at_7.5"]["met"] and not g["accuracy_rising_1_to_7.5"]["met"]
    assert not g["diversity_falling"]["met"] and g["diversity_falling"]["last_below_first"]


def test_auto_counts_fit_the_budget_and_given_counts_are_kept():
    cost = StepCost(batch_size=100, overhead=0.5, per_step=0.3)  # 3 ms per sample and step
    cfg = EvalConfig(minutes=25)
    n, k = choose_counts(PARTS, cfg, cost, cost, 1000)
    shares = BUDGET_SHARES
    table_budget = (25 * 60 * (shares["table1"] + shares["frontier"] + shares["vae"])
                    / sum(shares.values()))
    assert estimate_seconds("table1", cfg, n, k, cost, cost, 1000) <= table_budget
    assert estimate_seconds("table1", cfg, n + 10, k, cost, cost, 1000) > table_budget
    guidance_budget = 25 * 60 * shares["guidance"] / sum(shares.values())
    assert estimate_seconds("guidance", cfg, n, k, cost, cost, 1000) <= guidance_budget
    assert estimate_seconds("guidance", cfg, n, k + 1, cost, cost, 1000) > guidance_budget
    assert 20 <= n < MAX_SAMPLES and n % 10 == 0 and k >= 4
    fast = StepCost(batch_size=100, overhead=0.0, per_step=1e-6)
    assert choose_counts(PARTS, cfg, fast, fast, 1000) == (1000, 1000 // 12)
    given = dataclasses.replace(cfg, samples=7, guidance_samples=5)
    assert choose_counts(PARTS, given, cost, cost, 1000) == (7, 5)


# ----------------------------------------------------------------------------- the parts
def test_parts_write_their_keys_merge_and_repeat_exactly(tiny_trained, tmp_path):
    folder = tiny_trained / "ldm"
    (folder / "metrics.json").write_text(json.dumps(
        {"train_loss": 0.1, "samples": {"other": 1}, "targets": {"other": True}}))
    pipe = load_pipeline("ldm")
    judge = load_model("judge")
    cfg = small_config(tmp_path)

    first = evaluate(pipe, judge, ["table1", "guidance", "vae"], cfg)
    merge_into_metrics(folder, first)
    table = first["ddim_table"]
    assert [(r["sampler"], r["steps"], r["method"]) for r in table] == [
        ("DDIM", 2, "ddim"), ("DDIM", 4, "ddim"), ("DDPM", 2, "ddim"), ("DDPM", 4, "ddim"),
        ("DDPM", 100, "ddpm")]
    assert all(r["n"] == 6 and r["fd"] >= 0 and r["seconds"] > 0 and r["cpu_seconds"] > 0
               for r in table)
    assert table[0]["eta"] == 0.0 and table[2]["eta"] == 1.0
    assert first["targets"]["ddim_table"] == table1_targets(table, 4)
    assert first["targets"]["guidance_sweep"] == guidance_targets(first["guidance_sweep"])
    assert [r["w"] for r in first["guidance_sweep"]] == [0.0, 1.0, 7.5]
    per_prompt = first["guidance_per_prompt"]
    assert [p["targets"] for p in per_prompt] == [{"Smiling": 1},
                                                  {"No_Beard": 0, "Mustache": 0, "Goatee": 0}]
    for j, row in enumerate(first["guidance_sweep"]):
        assert row["accuracy"] == pytest.approx(np.mean([p["accuracy"][j] for p in per_prompt]))
        assert row["diversity"] > 0 and row["n"] == 6
    # the autoencoder ceiling: counted on the test faces that have each prompt's attributes
    ceiling = first["guidance_ceiling"]
    from playground.data.synthfaces import SynthFacesDataset

    faces = SynthFacesDataset("test", n=cfg.ceiling_faces)
    assert ceiling["n_test_faces"] == cfg.ceiling_faces
    smiling = [r for r in ceiling["per_prompt"] if r["prompt"] == "a smiling person"][0]
    assert smiling["faces"] == int(faces.attributes["Smiling"].sum())
    assert all(0 <= r["reconstructed"] <= 1 and 0 <= r["original"] <= 1
               for r in ceiling["per_prompt"])
    # text matters in the tiny model: guided samples differ from unguided ones
    assert per_prompt[0]["diversity"][0] != per_prompt[0]["diversity"][2]
    # the LDM row of the VAE table is the table's DDIM-4 set (same x_T, same samples)
    assert first["fd_by_model"]["ldm"] == table[1]["fd"]
    assert set(first["fd_by_model"]) == {"vae-beta1", "vae-beta4", "vae-beta10", "ldm",
                                         "ldm (training captions)"}
    vae_fds = [v for name, v in first["fd_by_model"].items() if not name.startswith("ldm")]
    for key, model in (("ldm_below_every_vae", "ldm"),
                       ("ldm_below_every_vae_with_training_captions", "ldm (training captions)")):
        check = first["targets"]["vae_vs_ldm"][key]
        assert check["ldm_fd"] == first["fd_by_model"][model]
        assert check["met"] == all(first["fd_by_model"][model] < v for v in vae_fds)
    # the captioned set is another sample set from the same x_T (the prompts reach the U-Net)
    assert first["fd_by_model"]["ldm (training captions)"] != first["fd_by_model"]["ldm"]
    assert [r.get("condition") for r in first["vae_vs_ldm"] if r["kind"] == "ldm"] == [
        "unprompted", "training captions"]
    assert first["samples"]["ddim_table"]["n"] == 6 and "note" in first["samples"]["ddim_table"]
    assert first["samples"]["guidance_sweep"]["per_prompt_per_w"] == 3

    # the VAE table alone, in a "new process" (no shared cache), gives the same numbers, and
    # its merge keeps the other parts' keys
    scores._REFERENCE_CACHE.clear()
    second = evaluate(pipe, judge, ["vae"], cfg)
    assert second["fd_by_model"] == pytest.approx(first["fd_by_model"], rel=1e-6, abs=1e-9)
    # ship --if-better's second number for a U-Net is this table's captioned row
    from playground.evaluation.quality import ldm_caption_fd

    assert ldm_caption_fd(pipe, judge, 6, cfg) == pytest.approx(
        first["fd_by_model"]["ldm (training captions)"], rel=1e-6)
    merged = merge_into_metrics(folder, second)
    assert merged["train_loss"] == 0.1 and merged["ddim_table"] == json.loads(json.dumps(table))
    assert merged["samples"]["other"] == 1 and merged["targets"]["other"] is True
    assert {"ddim_table", "guidance_sweep", "vae_vs_ldm"} <= set(merged["samples"])
    assert {"ddim_table", "guidance_sweep", "vae_vs_ldm"} <= set(merged["targets"])

    # same seed, same numbers; another seed, other numbers
    again = evaluate(pipe, judge, ["table1", "guidance"], cfg)
    assert numbers(again)["fd"] == pytest.approx(numbers(first)["fd"], rel=1e-6)
    assert numbers(again)["acc"] == numbers(first)["acc"]
    assert numbers(again)["div"] == pytest.approx(numbers(first)["div"], rel=1e-6)
    other = evaluate(pipe, judge, ["table1"], dataclasses.replace(cfg, seed=1))
    assert numbers(other)["fd"] != pytest.approx(numbers(first)["fd"], rel=1e-6)


def test_fastest_sampler_is_the_fewest_evaluations_at_ddim50s_fd():
    def row(sampler, steps, fd):
        return {"sampler": sampler, "steps": steps, "nfe": steps, "fd": fd}

    rows = [row("DDIM", 10, 9.0), row("DDIM", 20, 6.0), row("DDIM", 50, 5.0),
            row("DPM++ 2M", 10, 5.5), row("DPM++ 2M", 20, 4.9), row("DPM++ 2M", 50, 4.8),
            row("DDPM", 20, 5.0), row("DDPM", 50, 4.0)]
    marks = fastest_at_reference(rows, 50)
    assert marks["reference"] == rows[2]
    # DDPM-20 ties DDIM-50's FD at the same NFE as DPM++-20, whose FD is lower: DPM++-20 wins
    assert marks["fastest"] == {**rows[4], "saving": 2.5}
    worse = [r if r["sampler"] == "DDIM" else {**r, "fd": r["fd"] + 10} for r in rows]
    assert fastest_at_reference(worse, 50)["fastest"] == {**rows[2], "saving": 1.0}
    with pytest.raises(ValueError, match="DDIM-100"):
        fastest_at_reference(rows, 100)
    # with adherence, a lower FD that follows the prompt less does not qualify
    prompted = [{**r, "adherence": 0.9} for r in rows]
    prompted[4]["adherence"] = 0.7  # DPM++-20
    prompted[2]["adherence"] = 0.8  # DDIM-50, the reference
    assert fastest_at_reference(prompted, 50)["fastest"] == {**prompted[6], "saving": 2.5}
    assert caption_adherence({"Smiling": np.array([1, 0]), "Bald": np.array([0, 0])},
                             [{"Smiling": 1, "Bald": 1}, {"Smiling": 1}]) == pytest.approx(1 / 3)
    for r in rows + worse:
        r["n"] = 40
    text = frontier_markdown({"unconditional": {"guidance": 1.0, "rows": rows, **marks},
                              "captioned": {"guidance": 7.5, "rows": worse,
                                            **fastest_at_reference(worse, 50)}})
    assert "| NFE | DDPM | DDIM | DPM++ 2M |" in text and "FD-judge of 40 samples" in text
    assert "| 10 | – | 9.00 | 5.50 |" in text and "| 50 | 4.00 | 5.00 | 4.80 |" in text
    assert "**DPM++ 2M with 20 steps** reaches DDIM-50's FD (4.90 vs 5.00) with 2.5×" in text
    assert "*Captioned* (w = 7.5" in text
    assert "No sampler reaches DDIM-50's FD with fewer evaluations" in text
    assert "--only frontier --write" in frontier_markdown(None, "ldm")


def test_frontier_reuses_the_tables_rows_and_measures_the_rest(tiny_trained, tmp_path):
    pipe = load_pipeline("ldm")
    judge = load_model("judge")
    cfg = dataclasses.replace(small_config(tmp_path), frontier_steps=(2, 4),
                              frontier_path=str(tmp_path / "frontier.png"))
    both = evaluate(pipe, judge, ["table1", "frontier"], cfg)
    table = {(r["method"], r["eta"], r["steps"]): r["fd"] for r in both["ddim_table"]}
    plain, captioned = both["solver_frontier"]["unconditional"], both["solver_frontier"]["captioned"]
    assert [(r["sampler"], r["steps"]) for r in plain["rows"]] == [
        ("DDPM", 2), ("DDPM", 4), ("DDIM", 2), ("DDIM", 4), ("DPM++ 2M", 2), ("DPM++ 2M", 4)]
    assert [(r["sampler"], r["steps"], r["nfe"]) for r in captioned["rows"]] == [
        ("DDIM", 2, 4), ("DDIM", 4, 8), ("DPM++ 2M", 2, 4), ("DPM++ 2M", 4, 8)]
    assert plain["guidance"] == 1.0 and captioned["guidance"] == cfg.grid_guidance
    assert all(0 <= r["adherence"] <= 1 for r in captioned["rows"])
    assert not any("adherence" in r for r in plain["rows"])
    for r in plain["rows"]:
        assert r["nfe"] == r["steps"] and r["n"] == 6 and r["fd"] >= 0
        if r["method"] == "ddim":  # taken from the table (same x_T, same noise seed)
            assert r["fd"] == table[(r["method"], r["eta"], r["steps"])]
    for part in (plain, captioned):
        assert part == {"guidance": part["guidance"], "rows": part["rows"],
                        **fastest_at_reference(part["rows"], 4)}
    # guidance and captions change the samples: other numbers than unconditionally
    assert captioned["rows"][0]["fd"] != pytest.approx(plain["rows"][2]["fd"])
    assert (tmp_path / "frontier.png").stat().st_size > 0
    # measured alone, the frontier samples every row itself and finds the same numbers: the
    # reuse is sound
    alone = evaluate(pipe, judge, ["frontier"], cfg)["solver_frontier"]["unconditional"]
    assert [r["fd"] for r in alone["rows"]] == pytest.approx(
        [r["fd"] for r in plain["rows"]], rel=1e-6)
    dpm = [r for r in plain["rows"] if r["method"] == "dpm++"]
    ddim = [r for r in plain["rows"] if r["sampler"] == "DDIM"]
    assert [r["fd"] for r in dpm] != pytest.approx([r["fd"] for r in ddim])  # another solver


def test_cli_pixel_and_grid_parts(tiny_trained, tmp_path, capsys):
    folder = tiny_trained / "ldm"
    (folder / "metrics.json").write_text(json.dumps({"ddim_table": [{"kept": True}]}))
    grid = tmp_path / "grid.png"
    assert main(["ldm", "--judge", "judge", "--only", "pixel", "grid", "--write",
                    "--grid-out", str(grid), "--pixel-batch-size", "2", "--pixel-steps", "1",
                    "--batch-size", "8", "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith("{"), out  # only the JSON on stdout
    printed = json.loads(out)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["ddim_table"] == [{"kept": True}]  # other keys survive
    pv = metrics["pixel_vs_latent"]
    assert pv["pixel_shape"] == [3, 64, 64] and pv["latent_shape"] == [4, 8, 8]
    assert pv["latent_img_s"] > 0 and pv["pixel_img_s"] > 0
    assert pv["ratio"] == pytest.approx(pv["latent_img_s"] / pv["pixel_img_s"])
    assert metrics["targets"]["pixel_vs_latent"]["met"] == (pv["ratio"] >= PIXEL_CLAIM)
    assert pv["context_shape"][1] == 16 and 3 <= pv["context_shape"][0] <= 77
    image = Image.open(grid)
    assert image.size[1] > len(GRID_PROMPTS) * 128  # one 2×-scaled row of faces per prompt
    assert metrics["prompt_grid"]["prompts"] == list(GRID_PROMPTS)
    assert metrics["prompt_grid"]["columns"] == 8 and printed["prompt_grid"] == metrics["prompt_grid"]
    assert set(metrics["samples"]) == {"pixel_vs_latent", "prompt_grid"}
    assert len(metrics["samples"]["prompt_grid"]["ldm_weights_sha256"]) == 64


def test_cli_refuses_unknown_models(tiny_trained, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-ldm", "--judge", "judge", "--only", "grid"])
    assert exc.value.code == 2 and "no-such-ldm" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ldm", "--judge", "judge", "--samples", "1"])


def test_word_sensitivity_is_zero_for_a_unet_that_ignores_the_text(tiny_trained):
    from playground.evaluation.ldm.word_sensitivity import word_sensitivity
    from playground.training.trainers.clip_captions import NEGATIVE_POOLS

    pipe = load_pipeline("ldm")
    result = word_sensitivity(pipe, faces=12, batch_size=8)["word_sensitivity"]
    assert result["n"] == 12 and result["timesteps"] == [20, 50, 80]
    assert set(result["per_attribute"]) == set(NEGATIVE_POOLS["all"])
    assert result["empty"] != 0  # the jittered U-Net reads its context
    assert any(v != 0 for v in result["per_attribute"].values())
    for name, per_t in result["per_timestep"].items():
        assert result["per_attribute"][name] == pytest.approx(np.mean(per_t))
    assert word_sensitivity(pipe, faces=12, batch_size=8)["word_sensitivity"] == result
    with torch.no_grad():  # values of zero: cross-attention adds the same bias whatever the text
        for name, p in pipe.unet.named_parameters():
            if name.endswith("cross_attn.to_v.weight"):
                p.zero_()
    deaf = word_sensitivity(pipe, faces=12, batch_size=8)["word_sensitivity"]
    assert deaf["empty"] == 0 and set(deaf["per_attribute"].values()) == {0.0}
