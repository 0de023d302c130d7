"""The benchmark CLI: `python -m playground.bench --quick --json` on a tiny β-VAE."""
import json
import os
import subprocess
import sys

import pytest

from playground import bench
from playground import latent_map as lm
from playground import vae_ops as ops
from tests.test_vae_ops import save_tiny_vae

FAST_ROWS = "traverse_decode_ms,traverse_decode_handler_ms,morph_ms,latent_map_s," \
            "synthfaces_img_s_1proc,vae_train_img_s"


@pytest.fixture
def model_env(tmp_path):
    save_tiny_vae(tmp_path / "trained" / "vae-beta10", beta=10.0, seed=10)
    env = {**os.environ, "PLAYGROUND_TRAINED": str(tmp_path / "trained"),
           "PLAYGROUND_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    return env


def _bench(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "playground.bench", "--quick", *args],
                         env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _check_report(report: dict, measured: set[str]) -> None:
    """Every row is there; a number is positive, a null has a note; `ok` follows the budget."""
    for key in bench.ROWS:
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
    for key in bench.DIFFUSION_ROWS:
        assert report[key] is None and report["notes"][key] == "no diffusion model yet"
    machine = report["machine"]
    assert machine["cores"] >= 1 and len(machine["load_avg_start"]) == 3
    assert machine["torch_threads"] >= 1 and report["quick"] is True and report["repeats"] == 1


def test_quick_json_has_every_row_with_numbers_or_notes(model_env, tmp_path):
    out = _bench(model_env, "--json", "--only", FAST_ROWS)
    report = json.loads(out.stdout)  # stdout holds only the JSON object
    _check_report(report, set(FAST_ROWS.split(",")))
    assert report["model"] == "vae-beta10"
    assert report["notes"]["traverse_decode_client_ms"] == "not measured (--only)"
    assert "2.96M parameters" in report["notes"]["vae_train_img_s"]  # the real config
    # timing the latent map left its cache next to the model (what the tab would do)
    assert (tmp_path / "trained" / "vae-beta10" / "latent_map_pca_100.npz").is_file()


@pytest.mark.slow
def test_quick_json_measures_every_row_that_exists_today(model_env):
    report = json.loads(_bench(model_env, "--json").stdout)
    measured = set(bench.ROWS) - set(bench.DIFFUSION_ROWS) - {"synthfaces_img_s",
                                                              "data_vs_train_ratio"}
    _check_report(report, measured)
    assert report["app_start_s"] > 1  # a fresh python with torch and gradio


def test_without_models_the_model_rows_are_null_with_the_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    ops.clear_model_cache()
    report = bench.run(quick=True, only={"traverse_decode_ms", "morph_ms", "latent_map_s"})
    for key in ("traverse_decode_ms", "morph_ms", "latent_map_s"):
        assert report[key] is None and "no β-VAE models found" in report["notes"][key]
        assert report["ok"][key] is None
    assert report["model"] is None


def test_budget_check():
    assert bench.meets(29.9, {"max": 30}) is True and bench.meets(30.1, {"max": 30}) is False
    assert bench.meets(3.0, {"min": 3}) is True and bench.meets(2.9, {"min": 3}) is False
    assert bench.meets(None, {"max": 1}) is None


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


def teardown_module():
    lm.clear_cache()
    ops.clear_model_cache()
