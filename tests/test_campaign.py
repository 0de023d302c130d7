"""The campaign driver: plan, continue (resume / warm start / scratch), skip models at target."""
from __future__ import annotations

import json

import pytest

from playground.store.files import read_json
from playground.training import campaign

pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py

TINY_VAE = ["--channels", "8,8,8,8", "--latent-dim", "8", "--train-size", "32", "--eval-size",
            "16", "--batch-size", "16", "--max-steps", "2", "--amp", "none", "--layout",
            "contiguous", "--probe-minutes", "100"]


def _write_quality(tmp_path, name, key, value):
    folder = tmp_path / "trained" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "metrics.json").write_text(json.dumps({"quality": {"headline": key, "value": value}}))


def test_the_plan_follows_dependencies_and_skips_models_at_their_target(tmp_path):
    stages = campaign.plan(list(campaign.RECIPES), train_all=False)
    assert [names for _, names in stages] == [["autoencoder", "judge"],
                                             ["clip"], ["ldm"],
                                             ["vae-beta1", "vae-beta4", "vae-beta10"]]
    _write_quality(tmp_path, "judge", "attribute_acc", 0.98)
    _write_quality(tmp_path, "vae-beta1", "small_detail_acc", 0.9)
    _write_quality(tmp_path, "vae-beta10", "light_abs_r", 0.95)
    stages = campaign.plan(list(campaign.RECIPES), train_all=False)
    # β = 4 has no target of its own: it trains only beside another β-VAE
    assert [names for _, names in stages] == [["autoencoder"], ["clip"],
                                             ["ldm"]]
    assert len(campaign.plan(list(campaign.RECIPES), train_all=True)) == 4
    _write_quality(tmp_path, "clip", "zero_shot_auc", 0.65)  # measured, below target
    assert campaign.plan(["clip"], train_all=False)[0][1] == ["clip"]
    with pytest.raises(ValueError, match="unknown model"):
        campaign.plan(["teapot"], train_all=False)


def test_the_unet_is_at_target_only_when_its_samples_also_beat_the_vaes(tmp_path):
    _write_quality(tmp_path, "ldm", "prompt_acc", 1.0)
    assert not campaign.target_met("ldm")  # the FD table was never measured
    path = tmp_path / "trained" / "ldm" / "metrics.json"
    group, entry, _ = campaign.MEASURED_TARGETS["ldm"]
    for met, expected in ((False, False), (True, True)):
        metrics = read_json(path)
        metrics["targets"] = {group: {entry: {"ldm_fd": 9.0, "best_vae_fd": 14.0, "met": met}}}
        path.write_text(json.dumps(metrics))
        assert campaign.target_met("ldm") is expected
    _write_quality(tmp_path, "ldm", "prompt_acc", 0.5)  # the headline still counts
    metrics = read_json(path)
    metrics["targets"] = {group: {entry: {"met": True}}}
    path.write_text(json.dumps(metrics))
    assert not campaign.target_met("ldm")


def test_a_clip_mean_over_target_is_not_met_while_one_attribute_is_below_its_floor(tmp_path):
    from playground.training.curves import status_table

    _write_quality(tmp_path, "clip", "zero_shot_auc", 0.92)
    assert not campaign.target_met("clip")  # the per-attribute scores were never measured
    assert "per attribute: not measured" in status_table({"clip": []})
    path = tmp_path / "trained" / "clip" / "metrics.json"
    key, floor = campaign.ATTRIBUTE_FLOORS["clip"]
    for scores, expected in (({"Smiling": 0.99, "Arched_Eyebrows": 0.52, "Goatee": 0.74}, False),
                             ({"Smiling": 0.99, "Arched_Eyebrows": floor}, True)):
        metrics = read_json(path)
        metrics[key] = scores
        path.write_text(json.dumps(metrics))
        assert campaign.target_met("clip") is expected
        row = next(r for r in status_table({"clip": []}).splitlines() if r.startswith("| clip"))
        assert row.endswith("| 0.9, none below 0.75 | no (Arched_Eyebrows 0.52, Goatee 0.74) |"
                            if not expected else "| 0.9, none below 0.75 | yes |")


def test_the_unet_trains_on_the_campaigns_parts_and_ships_with_them(tmp_path, capsys):
    ldm = campaign.train_command("ldm", 1, 1, "cpu", [])
    assert ldm[ldm.index("--autoencoder") + 1] == "autoencoder"  # nothing continued: shipped
    (tmp_path / "runs" / "clip").mkdir(parents=True)
    (tmp_path / "runs" / "clip" / "model.safetensors").write_bytes(b"")
    ldm = campaign.train_command("ldm", 1, 1, "cpu", [])
    assert ldm[ldm.index("--clip") + 1] == str(tmp_path / "runs" / "clip")
    assert ldm[ldm.index("--autoencoder") + 1] == "autoencoder"
    assert "--chain" in campaign.after_commands("ldm", "judge")[0]
    assert "--if-better" in campaign.after_commands("clip", "judge")[0]  # no U-Net uses it yet
    (tmp_path / "trained" / "ldm").mkdir(parents=True)
    (tmp_path / "trained" / "ldm" / "config.json").write_text(json.dumps(
        {"kind": "unet", "autoencoder": "autoencoder", "text_encoder": "clip"}))
    assert campaign.after_commands("clip", "judge") == []  # waits for the U-Net
    assert "ships with the U-Net" in capsys.readouterr().out
    assert "--if-better" in campaign.after_commands("vae-beta1", "judge")[0]


def test_an_autoencoder_under_a_shipped_unet_trains_its_decoder_only_and_ships_alone(tmp_path):
    for name, config in (("autoencoder", {"kind": "autoencoder"}),
                         ("ldm", {"kind": "unet", "autoencoder": "autoencoder"})):
        (tmp_path / "trained" / name).mkdir(parents=True)
        (tmp_path / "trained" / name / "config.json").write_text(json.dumps(config))
    cmd = campaign.train_command("autoencoder", 5.0, 1, "cpu", [])
    assert cmd[cmd.index("--init") + 1] == "autoencoder" and "--freeze-encoder" in cmd
    assert "--decoder-extra-blocks" not in cmd
    assert "--freeze-encoder" not in campaign.train_command("clip", 5.0, 1, "cpu", [])
    run = tmp_path / "runs" / "autoencoder"
    run.mkdir(parents=True)
    (run / "train_state.json").write_text(json.dumps({"args": {"freeze_encoder": False}}))
    assert campaign.after_commands("autoencoder", "judge") == []  # its latents moved: --chain
    (run / "train_state.json").write_text(json.dumps({"args": {"freeze_encoder": True}}))
    assert "--if-better" in campaign.after_commands("autoencoder", "judge")[0]


def test_a_clip_under_a_shipped_unet_keeps_its_text_states_and_ships_alone(tmp_path):
    for name, config in (("clip", {"kind": "clip", "text_head_layers": 2}),
                         ("ldm", {"kind": "unet", "text_encoder": "clip"})):
        (tmp_path / "trained" / name).mkdir(parents=True)
        (tmp_path / "trained" / name / "config.json").write_text(json.dumps(config))
    cmd = campaign.train_command("clip", 5.0, 1, "cpu", [])
    assert "--freeze-text-states" in cmd  # its head's depth comes from --init (the trainer)
    run = tmp_path / "runs" / "clip"
    run.mkdir(parents=True)
    (run / "train_state.json").write_text(json.dumps({"args": {"freeze_text_states": False}}))
    assert campaign.after_commands("clip", "judge") == []  # its text states moved: --chain
    (run / "train_state.json").write_text(json.dumps({"args": {"freeze_text_states": True}}))
    assert "--if-better" in campaign.after_commands("clip", "judge")[0]


def test_a_model_continues_from_scratch_then_by_resume(tmp_path, capsys):
    assert campaign.main(["--minutes", "1", "--models", "vae-beta1", "--no-ship", "--cores", "1",
                          "--", *TINY_VAE]) == 0
    run = tmp_path / "runs" / "vae-beta1"
    assert read_json(run / "metrics.json")["steps"] == 2
    assert "--init" not in capsys.readouterr().out  # nothing shipped to start from
    # the second stretch resumes the run folder, with the earlier minutes added to the budget
    cmd = campaign.train_command("vae-beta1", 1.0, 1, "cpu", [])
    assert "--resume" in cmd and float(cmd[cmd.index("--minutes") + 1]) > 1.0
    tiny = [a if a != "2" else "3" for a in TINY_VAE]  # --max-steps 3
    assert campaign.main(["--minutes", "1", "--models", "vae-beta1", "--no-ship", "--cores", "1",
                          "--", *tiny]) == 0
    assert read_json(run / "metrics.json")["steps"] == 3


def test_a_shipped_model_is_the_warm_start_and_failures_are_reported(tmp_path, capsys):
    _write_quality(tmp_path, "vae-beta10", "light_abs_r", 0.5)
    cmd = campaign.train_command("vae-beta10", 5.0, 2, "cpu", ["--max-steps", "9"])
    assert cmd[cmd.index("--init") + 1] == "vae-beta10" and cmd[-2:] == ["--max-steps", "9"]
    assert campaign.main(["--minutes", "1", "--models", "vae-beta10", "--dry-run"]) == 0
    assert "--init vae-beta10" in capsys.readouterr().out
    # a trainer that fails (here: the fake shipped model has no weights) is reported
    assert campaign.main(["--minutes", "1", "--models", "vae-beta10", "--no-ship", "--",
                          *TINY_VAE]) == 1
    assert "training failed" in capsys.readouterr().out


def test_curves_draw_every_model_with_a_curve(tmp_path):
    from PIL import Image

    from playground.training import curves

    folder = tmp_path / "trained" / "vae-beta1"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    points = [{"source": "shipped", "cpu_hours": 1.2, "small_detail_acc": 0.66},
              {"source": "probe", "cpu_hours": 1.5, "small_detail_acc": 0.7},
              {"source": "shipped", "cpu_hours": 2.0, "small_detail_acc": 0.75}]
    (folder / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    out = tmp_path / "curves.png"
    assert curves.main(["--out", str(out)]) == 0
    assert Image.open(out).size[0] > 200
    (folder / "curve.jsonl").unlink()
    assert curves.main(["--out", str(out)]) == 1  # nothing to draw: said, not a blank picture


def test_a_chain_retrained_from_scratch_is_not_joined_to_the_old_one():
    import math

    from playground.training.curves import chain_lines

    points = [{"cpu_hours": h, "light_abs_r": r} for h, r in
              ((1.0, 0.57), (4.0, 0.61), (0.1, 0.37), (0.9, 0.82), (2.4, 0.94))]
    xs, ys = chain_lines(points, "light_abs_r")
    assert xs[:2] == [1.0, 4.0] and xs[3:] == [0.1, 0.9, 2.4] and ys[3:] == [0.37, 0.82, 0.94]
    assert math.isnan(xs[2]) and math.isnan(ys[2])  # one gap, where the hours fell
    assert chain_lines(points[2:], "light_abs_r") == ([0.1, 0.9, 2.4], [0.37, 0.82, 0.94])


def test_the_unet_panel_draws_its_second_number_on_its_own_axis(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from playground.training import curves

    folder = tmp_path / "trained" / "ldm"
    folder.mkdir(parents=True)
    group, entry, _ = campaign.MEASURED_TARGETS["ldm"]
    (folder / "metrics.json").write_text(json.dumps(
        {"targets": {group: {entry: {"ldm_fd": 15.1, "best_vae_fd": 14.4, "met": False}}}}))
    points = [{"source": "shipped", "cpu_hours": 6.5, "prompt_acc": 1.0, "caption_fd": 15.1},
              {"source": "probe", "cpu_hours": 6.7, "prompt_acc": 1.0, "probe_caption_fd": 30.0},
              {"source": "shipped", "cpu_hours": 8.0, "prompt_acc": 1.0, "caption_fd": 12.0}]
    fig, ax = plt.subplots()
    curves.second_number_axis(ax, "ldm", points, "caption_fd")
    twin = fig.axes[1]
    drawn = {line.get_label(): list(line.get_ydata()) for line in twin.get_lines()}
    plt.close(fig)
    assert drawn["caption_fd, shipped (n = 1,000)"] == [15.1, 12.0]
    assert [30.0] in drawn.values() and [14.4, 14.4] in drawn.values()  # probe; best β-VAE
    fig, ax = plt.subplots()
    curves.second_number_axis(ax, "ldm", points[:0], "caption_fd")  # nothing measured: no axis
    assert len(fig.axes) == 1
    plt.close(fig)


def test_an_ab_runs_its_arms_side_by_side_and_tables_them(tmp_path, monkeypatch, capsys):
    from playground.evaluation import quality
    from playground.training import ab

    def fake_measure(path, judge="judge", n=0):  # the judge is not what is tested here
        steps = read_json(f"{path}/metrics.json")["steps"]
        return {"kind": "vae", "headline": "small_detail_acc", "value": 0.5 + steps / 100}

    monkeypatch.setattr(quality, "measure", fake_measure)
    base = "vae " + " ".join(a for a in TINY_VAE if a not in ("--max-steps", "2"))
    assert ab.main(["--name", "tiny", "--minutes", "1", "--base", base,
                    "--arm", "short=--max-steps 2", "--arm", "long=--max-steps 3"]) == 0
    out = capsys.readouterr().out
    assert "| short | 0.5200 |" in out and "| long | 0.5300 |" in out
    report = read_json(tmp_path / "runs" / "ab-tiny" / "ab.json")
    assert report["results"]["long"]["steps"] == 3 and report["arms"]["short"] == "--max-steps 2"
    # a failing arm is reported, not tabled
    assert ab.main(["--name", "bad", "--minutes", "1", "--base", base,
                    "--arm", "broken=--lr -1"]) == 1


def test_the_campaigns_clip_recipe_trains_with_its_head_and_negatives(tmp_path):
    tiny = ["--embed-dim", "8", "--patch-size", "16", "--vision-width", "16", "--vision-layers",
            "1", "--vision-head-width", "8", "--text-width", "16", "--text-heads", "2",
            "--text-layers", "1", "--train-size", "32", "--eval-size", "16", "--test-size", "16",
            "--batch-size", "16", "--max-steps", "2", "--amp", "none", "--layout", "contiguous",
            "--probe-minutes", "100"]
    assert campaign.main(["--minutes", "1", "--models", "clip", "--no-ship", "--cores", "1",
                          "--", *tiny]) == 0
    run = tmp_path / "runs" / "clip"
    assert read_json(run / "metrics.json")["steps"] == 2
    args = read_json(run / "train_state.json")["args"]
    assert (args["attribute_weight"], args["negatives_per_image"], args["negative_pool"]) == (
        4.0, 4, "all")
