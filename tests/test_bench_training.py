"""The training-speed benchmark: `python -m playground.bench --training` on tiny β-VAE runs,
a broken arm reported as such, and the command lines it builds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from playground.bench import training as bt

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_vae_benchmark_reports_each_arm(tmp_path):
    env = {**os.environ, "PLAYGROUND_RUNS": str(tmp_path / "runs"),
           "PLAYGROUND_TRAINED": str(tmp_path / "trained"), "PLAYGROUND_CACHE": str(tmp_path / "cache")}
    out_file = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "playground.bench", "--training", "--quick", "--trainers", "vae",
         "--arms", "shipped,channels_last", "--train-size", "64", "--batch-size", "16",
         "--eval-size", "16", "--json", "--out", str(out_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert json.loads(out_file.read_text()) == result
    assert result["config"]["steps"] == 3 and result["config"]["rounds"] == 1
    assert result["machine"]["cpu_capability"]
    arms = result["trainers"]["vae"]
    assert list(arms) == ["shipped", "channels_last"]
    for res in arms.values():
        assert res["status"] == "ok", res
        assert res["img_per_s"] > 0 and len(res["runs"]) == 1
    assert arms["shipped"]["ratio"] == 1.0
    assert arms["shipped"]["speed_options"] == "fp32+contiguous"
    assert arms["channels_last"]["speed_options"] == "fp32+channels_last"
    assert arms["channels_last"]["change"] == "--layout channels_last"
    text = bt.table(result)
    assert "CPU capability" in text and "| vae | shipped | (as shipped) |" in text
    assert "| 1.00 | fp32+contiguous |" in text
    assert "vae: auto not measured" in text


def test_broken_arm_is_reported_and_the_benchmark_goes_on(monkeypatch, capsys):
    monkeypatch.setitem(bt.ARMS, "bogus_amp", lambda o: {**o, "--amp": "bogus"})
    monkeypatch.setitem(bt.ARMS, "no_option", lambda o: {**o, "--no-such-option": None})
    assert bt.main(["--quick", "--trainers", "vae", "--arms", "bogus_amp,no_option"]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| vae | bogus_amp |"))
    assert "broken: exit 2:" in row and "invalid choice: 'bogus'" in row
    assert "not available: the trainer has no --no-such-option" in text


def test_command_lines():
    cfg = bt.Config()
    vae = bt.shipped_options("vae", cfg)
    assert vae == {"--amp": "none", "--layout": "contiguous", "--batch-size": "128", "--threads": "2"}
    assert bt.ARMS["amp"](dict(vae))["--amp"] == "bf16"
    assert bt.ARMS["amp"](bt.shipped_options("ldm", cfg))["--amp"] == "none"
    assert bt.ARMS["batch2"](dict(vae))["--batch-size"] == "256"
    ddp = bt.ARMS["ddp"](bt.shipped_options("ldm", cfg))
    cmd = bt.command("ldm", ddp, cfg, Path("/tmp/x"), bt.trainer_options("ldm"))
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[cmd.index("--threads") + 1] == "1" and "--autoencoder" in cmd and "--test-size" not in cmd
    assert bt.describe_change(bt.shipped_options("ldm", cfg), ddp) == \
        "torchrun --nproc_per_node 2, --threads 1"
    clip = bt.command("clip", bt.shipped_options("clip", cfg), cfg, Path("/tmp/x"),
                      bt.trainer_options("clip"))
    assert clip[3] == "clip" and "--test-size" in clip and "--compile" not in clip


def test_error_line_skips_torchrun_decoration():
    torchrun = ("Traceback (most recent call last):\n  File \"x.py\"\nRuntimeError: boom\n"
                "=====\ntorch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
                "=====\nplayground.train FAILED\n-----\n")
    assert bt.error_line(torchrun) == "RuntimeError: boom"
    assert bt.error_line("usage: ...\nprog vae: error: argument --amp: invalid") == \
        "prog vae: error: argument --amp: invalid"
    assert bt.error_line("just a line\n====\n") == "just a line"
    assert bt.error_line("") == "no output"


def test_clip_continuation_arms_run_from_the_shipped_clip_and_only_for_clip(capsys):
    """The two CLIP-only arms: the campaign's continuation of the shipped CLIP, and the same
    with --freeze-words; other trainers lack their options and say so."""
    if not (bt.ROOT / "trained" / "clip" / "model.safetensors").is_file():
        pytest.skip("no shipped CLIP")
    assert bt.ARMS["words_frozen"]({})["--freeze-words"] is None
    assert bt.main(["--quick", "--trainers", "clip,vae", "--arms", "continue,words_frozen",
                    "--batch-size", "8", "--train-size", "32", "--eval-size", "16"]) == 0
    text = capsys.readouterr().out
    for arm in ("continue", "words_frozen"):
        row = next(line for line in text.splitlines() if line.startswith(f"| clip | {arm} |"))
        assert "--init clip" in row and "--freeze-text-states" in row and "broken" not in row
        assert ("--freeze-words" in row) == (arm == "words_frozen")
        vae = next(line for line in text.splitlines() if line.startswith(f"| vae | {arm} |"))
        assert "not available: the trainer has no" in vae
