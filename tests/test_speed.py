"""Speed options chosen by timing (playground.training.speed), warm starts and cumulative counters."""
from __future__ import annotations

import time

import pytest
import torch

from playground.store.checkpoints import load_model
from playground.training import (
    add_cumulative,
    cumulative_of_model,
    cumulative_of_run,
    load_train_state,
    read_log,
    speed,
)
from playground.training.trainers.vae import VAETrainConfig, train_vae
from tests.helpers import EXACT, RandomFaces
from tests.helpers import TINY_TRAIN as TINY


# ----------------------------------------------------------------------------- choosing
def test_bf16_is_not_timed_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    pairs, skipped = speed.candidates("auto", "auto", torch.device("cpu"))
    assert pairs == [("none", False), ("none", True)]
    assert "avx512_bf16" in skipped["bf16"]
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    pairs, skipped = speed.candidates("auto", "auto", torch.device("cpu"))
    assert len(pairs) == 4 and not skipped
    # an explicit choice is obeyed, even where it is slow
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    assert speed.candidates("bf16", "contiguous", torch.device("cpu"))[0] == [("bf16", False)]


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="amp must be one of"):
        speed.candidates("fp8", "auto", torch.device("cpu"))
    with pytest.raises(ValueError, match="layout must be one of"):
        speed.candidates("none", "nhwc", torch.device("cpu"))
    with pytest.raises(ValueError, match="amp must be one of"):
        VAETrainConfig(amp="fp16")


def test_choose_keeps_the_fastest_and_drops_a_trap_after_one_step(monkeypatch):
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    cost = {("none", False): 0.004, ("none", True): 0.002, ("bf16", False): 0.05,
            ("bf16", True): 0.003}
    calls: dict[tuple, int] = {}

    def run_step(amp, channels_last):
        calls[(amp, channels_last)] = calls.get((amp, channels_last), 0) + 1
        time.sleep(cost[(amp, channels_last)])

    choice = speed.choose(run_step, "auto", "auto", torch.device("cpu"), repeats=2)
    assert (choice.amp, choice.channels_last) == ("none", True)
    assert calls[("bf16", False)] == 2  # warm-up, then 25x the best: not repeated
    assert calls[("none", True)] == 3  # warm-up + 2 timed
    assert set(choice.seconds) == {speed.option_label(*k) for k in cost}
    assert "fp32+channels_last chosen" in choice.describe()


def test_a_single_candidate_is_not_timed():
    def run_step(amp, channels_last):
        raise AssertionError("nothing to choose: no step should run")

    choice = speed.choose(run_step, "none", "channels_last", torch.device("cpu"))
    assert (choice.amp, choice.channels_last, choice.seconds) == ("none", True, {})


# ----------------------------------------------------------------------------- in a run
def _run(out, resume=False, **overrides):
    cfg = VAETrainConfig(out=str(out), **{**TINY, **overrides})
    return train_vae(cfg, resume=resume, train_set=RandomFaces(48), val_set=RandomFaces(16, 1))


def test_an_auto_run_logs_its_choice_and_a_resume_keeps_it(tmp_path):
    metrics = _run(tmp_path / "run", max_steps=2, amp="auto", layout="auto")
    records = [r for r in read_log(tmp_path / "run") if r["type"] == "speed"]
    assert len(records) == 1 and records[0]["cpu_capability"]
    chosen = speed.option_label(records[0]["amp"], records[0]["channels_last"])
    assert metrics["speed_options"] == chosen and metrics["amp"] == records[0]["amp"]
    assert chosen in records[0]["seconds"]  # it was timed
    state = load_train_state(tmp_path / "run")[2]
    assert state["speed"]["amp"] == records[0]["amp"]
    _run(tmp_path / "run", resume=True, max_steps=3, amp="auto", layout="auto")
    records = [r for r in read_log(tmp_path / "run") if r["type"] == "speed"]
    assert len(records) == 2 and records[1]["seconds"] == {}  # kept, not re-timed


def test_channels_last_trains_the_same_model_as_contiguous(tmp_path):
    a = _run(tmp_path / "a", max_steps=3, amp="none", layout="contiguous")
    b = _run(tmp_path / "b", max_steps=3, amp="none", layout="channels_last")
    assert b["speed_options"] == "fp32+channels_last"
    wa, wb = load_model(tmp_path / "a").state_dict(), load_model(tmp_path / "b").state_dict()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5)
    assert a["recon_bce"] == pytest.approx(b["recon_bce"], rel=1e-4)


# ----------------------------------------------------------------------------- warm starts
def test_a_warm_start_begins_from_the_saved_weights_and_adds_up_the_counters(tmp_path):
    first = _run(tmp_path / "first", max_steps=4, threads=1)
    # lr so small that one step leaves the weights where the warm start put them
    second = _run(tmp_path / "second", max_steps=1, init=str(tmp_path / "first"), lr=1e-12,
                  threads=1)
    a = load_model(tmp_path / "first").state_dict()
    b = load_model(tmp_path / "second").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    assert first["cumulative"]["steps"] == 4 and first["cumulative"]["stretches"] == 1
    assert second["cumulative"]["steps"] == 5 and second["cumulative"]["stretches"] == 2
    assert second["cumulative"]["images"] == 5 * TINY["batch_size"]
    assert second["cumulative"]["cpu_hours"] > first["cumulative"]["cpu_hours"] > 0
    assert second["init"] == str(tmp_path / "first")
    # the warm-start counters survive a resume of the second run
    third = _run(tmp_path / "second", resume=True, max_steps=2, init=str(tmp_path / "first"),
                 lr=1e-12, threads=1)
    assert third["cumulative"]["steps"] == 6


def test_a_warm_start_from_another_architecture_is_refused(tmp_path):
    _run(tmp_path / "first", max_steps=1)
    with pytest.raises(ValueError, match="do not fit this model's architecture"):
        _run(tmp_path / "second", max_steps=1, init=str(tmp_path / "first"), latent_dim=16)


def test_the_lr_warms_up_after_a_warm_start_only(tmp_path):
    _run(tmp_path / "first", max_steps=2, **EXACT)
    _run(tmp_path / "second", max_steps=4, init=str(tmp_path / "first"), warmup_steps=4,
         **EXACT)
    # the VAE logs no lr; the Adam state holds the lr of the last step: 4/4 of the base
    state = load_train_state(tmp_path / "second")[2]
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(TINY.get("lr", 1e-3))


def test_cumulative_counters_of_a_model_from_before_they_were_recorded():
    legacy = {"steps": 100, "batch_size": 64, "train_seconds": 1800.0, "world_size": 2,
              "device": "cpu"}
    assert cumulative_of_run(legacy) == {"steps": 100, "images": 6400, "cpu_hours": 1.0,
                                         "gpu_hours": 0.0, "stretches": 1}
    gpu = {**legacy, "device": "cuda:0", "world_size": 1}
    assert cumulative_of_run(gpu)["gpu_hours"] == 0.5 and cumulative_of_run(gpu)["cpu_hours"] == 0
    assert cumulative_of_model({}) == {}
    chain = {"cumulative": {"steps": 7, "images": 70, "cpu_hours": 2.0, "gpu_hours": 0.1,
                            "stretches": 3}}
    total = add_cumulative(cumulative_of_model(chain), cumulative_of_run(legacy))
    assert total == {"steps": 107, "images": 6470, "cpu_hours": 3.0, "gpu_hours": 0.1,
                     "stretches": 4}
