"""The browser benchmark of diffusion-run waits: its parsing and summary, and (slow) a real run
in chromium on tiny models, served as `python app.py` serves them (worker processes)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from playground.bench import browser_runs
from tests.helpers import save_tiny_pipeline, save_tiny_vae

ROOT = Path(__file__).resolve().parents[1]


def test_the_compute_is_read_from_each_runs_final_text():
    ddim = ("DDIM, 50 steps, η = 0: 0.95 s of sampling for 4 face(s) (19.0 ms per step, 50 "
            "U-Net evaluations of the batch). The run took 1.10 s on the server")
    prompt = "Seed 0, w = 7.5, DPM++ 50 steps, 4 faces by ldm: 1.58 s. The sampler reached"
    assert browser_runs.compute_seconds("ddim", ddim) == 0.95
    assert browser_runs.compute_seconds("prompt", prompt) == 1.58
    with pytest.raises(ValueError, match="no compute time"):
        browser_runs.compute_seconds("ddpm", "DDPM, step 101/1000 · 2.0 s so far")


def test_the_summary_gives_medians_budgets_and_the_speed_up_felt_against_the_sampled():
    report = browser_runs.summary({"ddim": [(1.2, 1.0), (1.0, 0.9), (5.0, 1.1)],
                                   "ddpm": [(24.0, 20.0)]})
    assert report["ddim"]["wait_s"] == 1.2 and report["ddim"]["compute_s"] == 1.0
    assert report["ddim"]["within_budget"] and not report["ddpm"]["within_budget"]
    speed_up = report["ddpm_over_ddim"]
    assert speed_up["felt"] == pytest.approx(20.0) and speed_up["sampled"] == pytest.approx(20.0)
    assert "| ddim | 1.20 s | 1.00 s | 1.20 |" in browser_runs.table(report)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromium") and not Path("/usr/bin/chromium").exists(),
                    reason="chromium not installed")
def test_the_browser_bench_times_every_run_in_chromium(tmp_path):
    trained = tmp_path / "trained"
    for beta in (1, 4, 10):
        save_tiny_vae(trained / f"vae-beta{beta}", beta=beta)
    save_tiny_pipeline(trained, judge=True, num_timesteps=50)
    env = {**os.environ, "PLAYGROUND_TRAINED": str(trained), "PLAYGROUND_RUNS": str(tmp_path),
           "PLAYGROUND_CACHE": str(tmp_path / "cache"), "PLAYGROUND_UNET_COMPILE": "off"}
    out = subprocess.run([sys.executable, "-m", "playground.bench", "--browser", "--runs", "1",
                          "--no-sliders", "--json"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout)["runs"]
    for kind in ("ddim", "ddpm", "prompt"):
        assert runs[kind]["n"] == 1
        assert runs[kind]["wait_s"] >= runs[kind]["compute_s"] > 0  # the wait holds the compute
    assert runs["ddpm_over_ddim"]["sampled"] > 0
