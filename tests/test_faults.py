"""Faults: a training process killed with SIGKILL, a save that fails (no permission, disk
full), an app started with a missing or corrupt checkpoint.

- kill -9 mid-epoch → ``--resume`` continues from the last checkpoint on disk and finishes
  with exactly the planned number of steps, each logged once; a watcher reading the run folder
  while the process trains and dies never finds a partial checkpoint file.
- `playground.training.ship` with a failing disk gives a one-line error and leaves trained/ as it was.
- the app starts with a corrupt and a missing model: both are named as unavailable at the top
  of the β-VAE tabs, the good model works, the broken one gives a clear error.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from playground.pipelines import vae as ops
from playground.store import checkpoints, files
from playground.training import TRAIN_STATE_JSON, TRAIN_STATE_TENSORS, read_log
from tests.helpers import save_tiny_vae

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py

# A tiny β-VAE on SynthFaces: 128 faces, batches of 16 → 8 steps per epoch, 8 epochs; a
# checkpoint after every step (every 0.6 ms of wall time: on a quiet machine the whole run
# takes about a second, and the test must catch it mid-epoch) and after each epoch.
EPOCHS = 8
TINY_RUN = ["--train-size", "128", "--eval-size", "16", "--batch-size", "16", "--channels",
            "8,8,8,8", "--latent-dim", "8", "--epochs", str(EPOCHS), "--checkpoint-minutes",
            "0.00001", "--log-every", "1", "--threads", "1", "--no-progress", "--amp", "none",
            "--layout", "contiguous"]
STEPS_PER_EPOCH = 8
CHECKPOINT_FILES = ("model.safetensors", TRAIN_STATE_TENSORS, "config.json", TRAIN_STATE_JSON)


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "playground.train", "vae", "--beta", "4", "--out", str(out),
            *TINY_RUN, *extra]


def _check_whole(folder: Path) -> list[str]:
    """Read every checkpoint file in `folder`; → descriptions of the partial ones."""
    partial = []
    for name in CHECKPOINT_FILES:
        path = folder / name
        try:
            if name.endswith(".safetensors"):
                files.read_safetensors(path)
            else:
                files.read_json(path)
        except FileNotFoundError:
            continue  # not written yet
        except ValueError as err:
            partial.append(f"{name}: {err}")
    return partial


class Watcher(threading.Thread):
    """Reads the run folder's checkpoint files over and over while a run trains and dies."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.stop, self.reads, self.partial = folder, threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            self.partial += _check_whole(self.folder)
            self.reads += 1


def _saved_step(folder: Path) -> int:
    """global_step of the checkpoint a resume starts from (the safetensors file's metadata)."""
    _, metadata = files.read_safetensors(folder / TRAIN_STATE_TENSORS)
    return json.loads(metadata["train_state"])["global_step"]


def _kill_mid_epoch(out: Path, after_step: int) -> int:
    """Start a run, SIGKILL it once a mid-epoch checkpoint past `after_step` exists; → the
    step of the checkpoint left on disk."""
    proc = subprocess.Popen(_train_cmd(out), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                state = json.loads((out / TRAIN_STATE_JSON).read_text())
            except (FileNotFoundError, ValueError):
                state = None
            if state and state["step_in_epoch"] > 0 and state["global_step"] > after_step:
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the run ended before it could be killed:\n" + \
            proc.communicate()[0][-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _saved_step(out)


def _resume(out: Path, capsys) -> str:
    """``python -m playground.train vae ... --resume``, in this process (saves a start-up)."""
    from playground.train import main

    capsys.readouterr()
    assert main(_train_cmd(out, "--resume")[3:]) == 0
    return capsys.readouterr().out


def _check_finished(out: Path) -> None:
    total = STEPS_PER_EPOCH * EPOCHS
    state = json.loads((out / TRAIN_STATE_JSON).read_text())
    assert state["global_step"] == total and state["epoch"] == EPOCHS
    metrics = files.read_json(out / "metrics.json")
    assert metrics["steps"] == total
    steps = [r["step"] for r in read_log(out) if r["type"] == "train"]
    assert steps == list(range(1, total + 1))  # every step once: no gap, no duplicate
    assert [r["epoch"] for r in read_log(out) if r["type"] == "val"] == list(range(1, EPOCHS + 1))
    model = checkpoints.load_model(str(out))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not list(out.glob(".*.tmp"))  # a resume removes temporaries of the killed save


def test_kill_9_mid_epoch_then_resume_finishes_the_run(tmp_path, capsys):
    out = tmp_path / "runs" / "killed"
    out.mkdir(parents=True)
    watcher = Watcher(out)
    watcher.start()
    try:
        saved = _kill_mid_epoch(out, after_step=STEPS_PER_EPOCH + 1)  # in epoch 2 or later
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.reads > 10 and not watcher.partial, watcher.partial[:3]
    assert not _check_whole(out)
    assert STEPS_PER_EPOCH < saved < STEPS_PER_EPOCH * EPOCHS
    stdout = _resume(out, capsys)
    epoch = saved // STEPS_PER_EPOCH + 1
    assert f"resuming {out} at epoch {epoch}, step {saved}" in stdout, stdout[-1000:]
    _check_finished(out)


@pytest.mark.slow
def test_three_kills_at_different_moments_lose_nothing(tmp_path, capsys):
    out = tmp_path / "runs" / "killed-thrice"
    out.mkdir(parents=True)
    saved = 0
    for after in (2, 12, 20):
        if (out / TRAIN_STATE_TENSORS).is_file():
            cmd_out = out  # the next kill happens in a resumed process
            proc_saved = _kill_resumed(cmd_out, after)
        else:
            proc_saved = _kill_mid_epoch(out, after)
        assert proc_saved >= saved and not _check_whole(out)
        saved = proc_saved
    _resume(out, capsys)
    _check_finished(out)


def _kill_resumed(out: Path, after_step: int) -> int:
    proc = subprocess.Popen(_train_cmd(out, "--resume"), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                state = json.loads((out / TRAIN_STATE_JSON).read_text())
            except (FileNotFoundError, ValueError):
                state = None
            if state and state["global_step"] > after_step:
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the resumed run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _saved_step(out)


# ------------------------------------------------------------------------------ failed saves
def _tree(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under `folder` (hidden temporaries included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def shipped_and_run(tmp_path):
    """trained/vae-tiny (an older model, with a cached map) and a newer run to ship over it."""
    trained = checkpoints.trained_dir()
    save_tiny_vae(trained / "vae-tiny", beta=4.0, seed=1)
    (trained / "vae-tiny" / "latent_map_pca_100.npz").write_bytes(b"old cache")
    run = tmp_path / "runs" / "vae-new"
    save_tiny_vae(run, beta=4.0, seed=2)
    (run / "latent_map_pca_100.npz").write_bytes(b"new cache")
    return trained, run


def _fail_on(monkeypatch, target: str, err: OSError, after: int = 0, times: int = 10**9):
    """Make `os.<target>` raise `err` on calls after + 1 … after + times (then work again)."""
    real = getattr(os, target)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if after < calls["n"] <= after + times:
            raise err
        return real(*args, **kwargs)

    monkeypatch.setattr(os, target, failing)
    return calls


DISK_FULL = OSError(errno.ENOSPC, "No space left on device")
NO_PERMISSION = PermissionError(errno.EACCES, "Permission denied")


# os.replace calls of a ship: 1 weights, 2 config.json, 3 metrics.json, 4 the .npz cache,
# 5 the old folder aside, 6 the new folder in (7 would put the old one back)
@pytest.mark.parametrize("target,err,after,times", [
    ("fsync", DISK_FULL, 0, None),  # the first file written
    ("fsync", DISK_FULL, 2, None),  # after the weights: config.json fails
    ("replace", NO_PERMISSION, 0, None),
    ("replace", NO_PERMISSION, 3, None),  # the cache file
    ("replace", NO_PERMISSION, 4, None),  # the old folder cannot be moved aside
    ("replace", NO_PERMISSION, 5, 1),  # the new folder cannot be moved in: the old goes back
    ("mkdir", NO_PERMISSION, 0, None),
], ids=["disk-full-first", "disk-full-config", "no-permission-first", "no-permission-cache",
        "no-permission-aside", "no-permission-swap", "no-permission-mkdir"])
def test_a_failed_ship_leaves_trained_untouched(shipped_and_run, capsys, target,
                                                err, after, times):
    from playground.training import ship

    trained, run = shipped_and_run
    before = _tree(trained)
    with pytest.MonkeyPatch.context() as mp:  # (not `monkeypatch`: it holds the test's env)
        calls = _fail_on(mp, target, err, after, times or 10**9)
        assert ship.main([str(run), "vae-tiny"]) == 1
    assert calls["n"] > after  # the failure did happen
    message = capsys.readouterr().err.strip()
    assert message.startswith("error:") and "\n" not in message, message
    assert err.strerror in message and "vae-tiny" in message, message
    assert _tree(trained) == before  # same files, same bytes, no temporaries left
    assert checkpoints.load_model("vae-tiny") is not None


def test_a_ship_that_succeeds_replaces_the_model_whole(shipped_and_run, capsys):
    from playground.training import ship

    trained, run = shipped_and_run
    assert ship.main([str(run), "vae-tiny"]) == 0
    assert (trained / "vae-tiny" / "latent_map_pca_100.npz").read_bytes() == b"new cache"
    assert sorted(p.name for p in trained.iterdir()) == ["vae-tiny"]  # no backups left over
    new = checkpoints.load_model("vae-tiny")
    ref = checkpoints.load_model(str(run))
    for (k, a), b in zip(new.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=2e-3), k  # fp16 copy of the run


# ------------------------------------------------------------------------------ broken models
@pytest.fixture
def broken_models():
    """trained/: vae-beta1 whole, vae-beta4 with truncated weights, vae-beta10 without weights,
    vae-beta2 with a corrupt config.json."""
    trained = checkpoints.trained_dir()
    for beta in (1, 4, 10, 2):
        save_tiny_vae(trained / f"vae-beta{beta}", beta=float(beta), seed=beta)
    weights = trained / "vae-beta4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a copy that stopped early
    (trained / "vae-beta10" / "model.safetensors").unlink()
    (trained / "vae-beta2" / "config.json").write_text('{"kind": "vae", "latent_dim": ')
    ops.clear_model_cache()
    yield trained
    ops.clear_model_cache()


def test_model_problem_names_what_is_wrong(broken_models):
    problem = {name: checkpoints.model_problem(broken_models / name)
               for name in ("vae-beta1", "vae-beta4", "vae-beta10", "vae-beta2")}
    assert problem["vae-beta1"] is None
    assert "truncated" in problem["vae-beta4"]
    assert "no model.safetensors" in problem["vae-beta10"]
    assert "config.json" in problem["vae-beta2"]


def test_the_app_starts_with_broken_models_and_the_rest_works(broken_models, monkeypatch):
    gradio_client = pytest.importorskip("gradio_client")
    import httpx

    import app
    from playground.app import common

    monkeypatch.setattr(ops, "REFERENCE_SIZE", 64)
    assert common.model_names() == ["vae-beta1"]
    assert [name for name, _ in common.unavailable_models()] == [
        "vae-beta10", "vae-beta2", "vae-beta4"]
    demo = app.build_app()
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True))
    try:
        config = httpx.get(demo.local_url + "config", timeout=30).json()
        texts = [c["props"].get("value") or "" for c in config["components"]
                 if c.get("type") == "markdown"]
        notices = [t for t in texts if "unavailable" in t.lower()]
        assert len(notices) >= 3  # Traverse, Morph, Latent map
        for name in ("vae-beta4", "vae-beta10", "vae-beta2"):
            assert name in notices[0]
        dropdowns = [c["props"] for c in config["components"] if c.get("type") == "dropdown"
                     and c["props"].get("label") == "β-VAE model"]
        assert dropdowns and all([ch[0] for ch in d["choices"]] == ["vae-beta1"]
                                 for d in dropdowns)

        client = gradio_client.Client(demo.local_url, verbose=False)
        face, decoded, *_ = client.predict("vae-beta1", "random", 0, 0, None,
                                           api_name="/traverse_encode")
        assert Path(decoded).is_file()
        grid, notice = client.predict("random", 0, 0, None, "random", 1, 0, None, 0, 2,
                                      api_name="/compare_betas")
        assert Path(grid).is_file() and "vae-beta1" in notice
        for name, expected in (("vae-beta4", "truncated"), ("vae-beta10", "no weights|no model"),
                               ("vae-beta2", "config.json|no model named")):
            with pytest.raises(gradio_client.exceptions.AppError, match=expected):
                client.predict(name, "random", 0, 0, None, api_name="/traverse_encode")
        assert client.predict("vae-beta1", 100, 8, api_name="/latent_map_point")
    finally:
        demo.close()
