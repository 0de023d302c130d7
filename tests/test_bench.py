"""The benchmark CLI: `python -m playground.bench --quick --json` on a tiny β-VAE."""
import json
import os
import re
import subprocess
import sys

import pytest

from playground.bench import diffusion_rows, speed, vae_rows
from playground.pipelines import latent_map as lm
from playground.pipelines import vae as ops
from tests.helpers import save_tiny_vae

FAST_ROWS = "traverse_decode_ms,traverse_decode_handler_ms,morph_ms,latent_map_s," \
            "synthfaces_img_s_1proc,vae_train_img_s,traverse_overhead_ratio"
OVERHEAD_ROWS = {"traverse_overhead_ratio", "traverse_encode_overhead_ratio",
                 "morph_overhead_ratio", "latent_map_overhead_ratio", "synthfaces_overhead_ratio"}
DIFFUSERS_ROWS = {"ours_ddim50_s", "diffusers_ddim50_s", "ddim_vs_diffusers_ratio",
                  "ours_ddpm_s", "diffusers_ddpm_s", "ddpm_vs_diffusers_ratio",
                  "ddim_loop_vs_diffusers_ratio", "ddpm_loop_vs_diffusers_ratio"}


@pytest.fixture
def model_env(tmp_path):
    save_tiny_vae(tmp_path / "trained" / "vae-beta10", beta=10.0, seed=10)
    env = {**os.environ, "PLAYGROUND_TRAINED": str(tmp_path / "trained"),
           "PLAYGROUND_RUNS": str(tmp_path / "runs"), "PLAYGROUND_CACHE": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    return env


def _bench(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "playground.bench", "--quick", *args],
                         env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _check_report(report: dict, measured: set[str], pipeline: bool = False) -> None:
    """Every row is there; a number is positive, a null has a note; `ok` follows the budget."""
    for key in speed.ROWS:
        assert key in report, key
        value = report[key]
        if key in measured:
            assert isinstance(value, float) and value > 0, (key, value, report["notes"].get(key))
        else:
            assert value is None and report["notes"][key], key
        budget = report["budget"].get(key)
        if budget is not None:
            expected = (None if value is None else
                        value <= budget["max"] if "max" in budget else value >= budget["min"])
            assert report["ok"][key] is expected, key
    if not pipeline:
        for key in speed.PIPELINE_ROWS:
            assert report[key] is None and report["notes"][key] == "no diffusion model yet"
    for key in OVERHEAD_ROWS & measured:
        handler, core = (float(v) for v in re.findall(r"([\d.]+) ms", report["notes"][key]))
        assert report[key] == pytest.approx(handler / core, rel=0.1, abs=0.06), key
    machine = report["machine"]
    assert machine["cores"] >= 1 and len(machine["load_avg_start"]) == 3
    assert machine["torch_threads"] >= 1 and report["quick"] is True and report["repeats"] == 1


def test_quick_json_has_every_row_with_numbers_or_notes(model_env, tmp_path):
    out = _bench(model_env, "--json", "--only", FAST_ROWS)
    report = json.loads(out.stdout)  # stdout holds only the JSON object
    _check_report(report, set(FAST_ROWS.split(",")) | OVERHEAD_ROWS)
    assert report["model"] == "vae-beta10"
    assert report["notes"]["traverse_decode_client_ms"] == "not measured (--only)"
    assert "2.96M parameters" in report["notes"]["vae_train_img_s"]  # the real config
    # timing the latent map left its cache where the tab would: the cache folder, not trained/
    assert (tmp_path / "cache" / "latent-maps" / "vae-beta10" / "latent_map_pca_100.npz").is_file()
    assert not list((tmp_path / "trained").rglob("latent_map_*"))


@pytest.mark.slow
def test_quick_json_measures_every_row_that_exists_today(model_env):
    report = json.loads(_bench(model_env, "--json").stdout)
    measured = set(speed.ROWS) - set(speed.PIPELINE_ROWS) - {"synthfaces_img_s",
                                                             "data_vs_train_ratio"}
    if report["notes"]["opentsne_s"] == vae_rows.NO_OPENTSNE:
        measured.discard("opentsne_s")
    _check_report(report, measured)
    assert report["umap_vs_tsne_ratio"] == pytest.approx(
        report["umap_s"] / report["tsne_s"], rel=0.02)
    assert "300 points" in report["notes"]["tsne_s"] and "kNN" in report["notes"]["umap_s"]
    assert report["app_start_s"] > 1  # a fresh python with torch and gradio


def test_without_models_the_model_rows_are_null_with_the_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    ops.clear_model_cache()
    report = speed.run(quick=True, only={"traverse_decode_ms", "morph_ms", "latent_map_s"})
    for key in ("traverse_decode_ms", "morph_ms", "latent_map_s"):
        assert report[key] is None and "no β-VAE models found" in report["notes"][key]
        assert report["ok"][key] is None
    assert report["model"] is None


def test_budget_check():
    assert speed.meets(29.9, {"max": 30}) is True and speed.meets(30.1, {"max": 30}) is False
    assert speed.meets(3.0, {"min": 3}) is True and speed.meets(2.9, {"min": 3}) is False
    assert speed.meets(None, {"max": 1}) is None


@pytest.mark.parametrize("args,message", [
    (["--only", "warp_drive_s"], "unknown rows \\['warp_drive_s'\\]"),
    (["--model", "vae-beta7"], "no β-VAE model named 'vae-beta7' \\(available: vae-beta10\\)"),
    (["--repeats", "0"], "--repeats must be >= 1"),
])
def test_bad_arguments_are_refused_clearly(model_env, args, message):
    out = _bench(model_env, *args, check=False)
    assert out.returncode == 2
    import re

    assert re.search(message, out.stderr), out.stderr[-500:]


@pytest.fixture
def pipeline_env(model_env, tmp_path):
    from tests.helpers import save_tiny_pipeline

    save_tiny_pipeline(tmp_path / "trained")
    return model_env


def test_quick_json_measures_the_diffusion_rows_on_a_tiny_pipeline(pipeline_env):
    """Budgets, the Denoise / Prompt overhead and ours vs diffusers, on a tiny U-Net (T = 20)."""
    pytest.importorskip("diffusers")
    report = json.loads(_bench(pipeline_env, "--json", "--only",
                               "ddim50_s,ours_ddim50_s").stdout)
    measured = set(speed.PIPELINE_ROWS)
    _check_report(report, measured, pipeline=True)
    assert report["diffusion_model"] == "ldm"
    for kind, prefix in (("ddim", "ddim50"), ("ddpm", "ddpm")):
        ratio = report[f"ours_{prefix}_s"] / report[f"diffusers_{prefix}_s"]
        assert report[f"{kind}_vs_diffusers_ratio"] == pytest.approx(ratio, rel=0.02, abs=0.002)
        gap = float(re.search(r"max \|x_0 ours − diffusers\| = ([\d.e+-]+)",
                              report["notes"][f"{kind}_vs_diffusers_ratio"]).group(1))
        assert gap < 1e-3  # the same computation is timed on both sides
    assert report["ddpm_first_frame_s"] < report["ddpm1000_s"]
    assert "µs/step" in report["notes"]["ddim_loop_vs_diffusers_ratio"]


@pytest.mark.slow  # DDPM over 1000 steps of the real-size U-Net: ~30 s
def test_untrained_diffusion_times_the_shipped_architectures(model_env):
    """No U-Net trained: --untrained-diffusion builds the trainers' default architectures with
    random weights and says so in every diffusion note."""
    pytest.importorskip("diffusers")
    report = json.loads(_bench(model_env, "--json", "--only", "ddim50_s",
                               "--untrained-diffusion").stdout)
    assert report["diffusion_model"] == diffusion_rows.UNTRAINED and report["untrained_diffusion"]
    for key in ("ddim50_s", "prompt_s", "ddpm1000_s", "prompt_overhead_ratio"):
        assert report[key] > 0 and report["notes"][key].startswith("UNTRAINED weights"), key
    assert "50 steps" in report["notes"]["ddim50_s"]  # the real schedule: T = 1000
    assert "20 steps" in report["notes"]["ddpm1000_s"]


def test_without_diffusers_the_rows_say_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers → ImportError
    values, notes = diffusion_rows.bench_vs_diffusers("ldm", 1)
    assert values == {} and set(notes) == DIFFUSERS_ROWS
    assert all(n == diffusion_rows.NO_DIFFUSERS and "not installed" in n for n in notes.values())


def teardown_module():
    lm.clear_cache()
    ops.clear_model_cache()
