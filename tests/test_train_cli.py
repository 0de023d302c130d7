"""Training machinery and the β-VAE trainer: tiny runs, exact resume, crash safety, DDP."""
import argparse
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from playground.store import files
from playground.store.checkpoints import load_model
from playground.train import main
from playground.training import (
    DatasetImages,
    TensorImages,
    config_from_args,
    cosine_lr,
    epoch_batches,
    load_train_state,
    optimizer_from_flat,
    optimizer_to_flat,
    read_log,
)
from playground.training.trainers.vae import VAETrainConfig, kl_weight, train_vae
from tests.helpers import TINY_TRAIN as TINY
from tests.helpers import RandomFaces

REPO = Path(__file__).resolve().parent.parent
# fp32 and one layout: exact replay (resume, DDP) holds for fixed arithmetic, not across a
# timed choice that can differ between two runs
pytestmark = pytest.mark.usefixtures("isolated_run_env")  # tests/conftest.py


def run(out, resume=False, n=48, stop_event=None, **overrides):
    cfg = VAETrainConfig(out=str(out), **{**TINY, **overrides})
    return train_vae(cfg, resume=resume, train_set=RandomFaces(n), val_set=RandomFaces(16, seed=1),
                     stop_event=stop_event)


def weights(folder):
    return load_model(str(folder)).state_dict()


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_a_tiny_run_writes_a_loadable_model_logs_and_metrics(tmp_path):
    metrics = run(tmp_path / "run", max_steps=4, beta=2.0)  # 48 images / 16 = 3 steps per epoch
    files = sorted(os.listdir(tmp_path / "run"))
    assert files == ["config.json", "log.jsonl", "metrics.json", "model.safetensors",
                     "train_state.json", "train_state.safetensors"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved == metrics
    for key in ("beta", "recon_bce", "kl", "kl_per_dim", "active_dims", "elbo",
                "train_seconds", "device", "epochs"):
        assert key in saved
    assert saved["beta"] == 2.0 and saved["steps"] == 4 and saved["epochs"] == pytest.approx(4 / 3)
    assert len(saved["kl_per_dim"]) == 8 and saved["kl"] == pytest.approx(sum(saved["kl_per_dim"]))
    assert saved["elbo"] == pytest.approx(-(saved["recon_bce"] + saved["kl"]))
    assert saved["active_dims"] == sum(k > 0.01 for k in saved["kl_per_dim"])
    log = read_log(tmp_path / "run")
    assert [r["step"] for r in log if r["type"] == "train"] == [1, 2, 3, 4]
    assert [(r["epoch"], r["step"]) for r in log if r["type"] == "val"] == [(1, 3)]
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 1, 4)
    model = load_model(str(tmp_path / "run"))
    assert model.config.beta == 2.0 and not model.training


def test_kl_warm_up_raises_the_kl_weight_linearly_then_holds_beta(tmp_path):
    assert [kl_weight(4.0, step, 4) for step in range(6)] == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    assert kl_weight(4.0, 0, 0) == 4.0
    run(tmp_path / "run", max_steps=5, beta=4.0, kl_warmup_steps=4)
    lines = [r for r in read_log(tmp_path / "run") if r["type"] == "train"]  # one step each
    for r, weight in zip(lines, (1.0, 2.0, 3.0, 4.0, 4.0), strict=True):
        assert r["loss"] == pytest.approx(r["recon"] + weight * r["kl"], rel=1e-5)
    with pytest.raises(ValueError, match="kl_warmup_steps"):
        VAETrainConfig(kl_warmup_steps=-1)


def test_a_warm_start_anneals_the_kl_again_from_its_own_first_step(tmp_path):
    """`--init NAME --kl-warmup-steps N` re-opens a trained VAE's latent: the weight restarts at
    β/N however many steps the init had (its steps only carry over into metrics.json)."""
    run(tmp_path / "first", max_steps=6, beta=4.0)
    metrics = run(tmp_path / "again", max_steps=3, beta=4.0, kl_warmup_steps=2,
                  init=str(tmp_path / "first"), warmup_steps=1)
    lines = [r for r in read_log(tmp_path / "again") if r["type"] == "train"]
    for r, weight in zip(lines, (2.0, 4.0, 4.0), strict=True):
        assert r["loss"] == pytest.approx(r["recon"] + weight * r["kl"], rel=1e-5)
    assert metrics["cumulative"]["steps"] == 6 + 3


def test_a_deeper_decoder_warm_starts_as_the_plain_vae_and_its_blocks_train(tmp_path):
    """`--init NAME --decoder-extra-blocks 1` adds a residual block at each decoder resolution
    that starts as the identity: the grown VAE decodes exactly as its init, then trains them."""
    from playground.models.vae import BetaVAE
    from playground.training.warm_start import warm_start

    run(tmp_path / "plain", max_steps=3)
    plain = load_model(str(tmp_path / "plain"))
    deeper = BetaVAE(dataclasses.replace(plain.config, decoder_extra_blocks=1))
    assert len(deeper.decoder_extra) == 4  # 4×4, 8×8, 16×16, 32×32
    assert set(plain.state_dict()) < set(deeper.state_dict())  # the old names are all there
    warm_start(deeper, str(tmp_path / "plain"), verbose=False)
    z = torch.randn(3, plain.config.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(deeper.decode_logits(z), plain.decode_logits(z), rtol=0, atol=1e-5)
    run(tmp_path / "deeper", max_steps=2, init=str(tmp_path / "plain"), warmup_steps=1,
        decoder_extra_blocks=1)
    grown = load_model(str(tmp_path / "deeper"))
    assert grown.config.decoder_extra_blocks == 1
    assert all(float(stack[0].block[-1].weight.detach().abs().sum()) > 0
               for stack in grown.decoder_extra)
    again = config_from_args(VAETrainConfig, argparse.Namespace(
        init=str(tmp_path / "deeper"), out=str(tmp_path / "again")))
    assert again.decoder_extra_blocks == 1  # a warm start from it keeps the depth
    with pytest.raises(ValueError, match="decoder_extra_blocks"):
        dataclasses.replace(plain.config, decoder_extra_blocks=-1)


def test_fine_blocks_grow_only_the_two_finest_decoder_levels_from_a_deeper_decoder(tmp_path):
    """`--decoder-fine-blocks 1` on a VAE that already has extra blocks everywhere adds one more
    at 16×16 and 32×32 only: it decodes exactly as its init, then they train."""
    from playground.models.vae import BetaVAE
    from playground.training.warm_start import warm_start

    run(tmp_path / "deeper", max_steps=2, decoder_extra_blocks=1)
    deeper = load_model(str(tmp_path / "deeper"))
    finer = BetaVAE(dataclasses.replace(deeper.config, decoder_fine_blocks=1))
    sizes = []  # the spatial size each fine stack runs at
    for stack in finer.decoder_fine:
        stack.register_forward_hook(lambda _m, inputs, _out: sizes.append(inputs[0].shape[-1]))
    widths = [stack[0].block[-1].out_channels for stack in finer.decoder_fine]
    assert widths == [deeper.config.channels[1], deeper.config.channels[0]]
    added = sum(p.numel() for p in finer.parameters()) - sum(p.numel() for p in deeper.parameters())
    assert added == sum(p.numel() for p in finer.decoder_fine.parameters()) < 100_000
    warm_start(finer, str(tmp_path / "deeper"), verbose=False)
    z = torch.randn(3, deeper.config.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(finer.decode_logits(z), deeper.decode_logits(z), rtol=0, atol=1e-5)
    assert sizes == [16, 32]
    grow = config_from_args(VAETrainConfig, argparse.Namespace(  # as the command line builds it
        init=str(tmp_path / "deeper"), decoder_fine_blocks=1, out=str(tmp_path / "finer")))
    assert (grow.decoder_extra_blocks, grow.decoder_fine_blocks) == (1, 1)
    run(tmp_path / "finer", max_steps=2, init=str(tmp_path / "deeper"), warmup_steps=1,
        decoder_extra_blocks=1, decoder_fine_blocks=1)
    grown = load_model(str(tmp_path / "finer"))
    assert (grown.config.decoder_extra_blocks, grown.config.decoder_fine_blocks) == (1, 1)
    assert all(float(stack[0].block[-1].weight.detach().abs().sum()) > 0
               for stack in grown.decoder_fine)
    with pytest.raises(ValueError, match="decoder_fine_blocks"):
        dataclasses.replace(deeper.config, decoder_fine_blocks=-1)


def test_a_full_resolution_head_warm_starts_as_a_no_op_and_then_trains(tmp_path):
    """`--init NAME --full-res-channels 8` adds a 64×64 head whose projection starts at zero:
    the VAE decodes exactly as its init, then training moves the head, and a warm start from
    the grown model keeps it."""
    from playground.models.vae import BetaVAE
    from playground.training.warm_start import warm_start

    run(tmp_path / "plain", max_steps=3)
    plain = load_model(str(tmp_path / "plain"))
    assert plain.full_res_head is None
    headed = BetaVAE(dataclasses.replace(plain.config, full_res_channels=8))
    warm_start(headed, str(tmp_path / "plain"), verbose=False)
    z = torch.randn(3, plain.config.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(headed.decode_logits(z), plain.decode_logits(z), rtol=0, atol=1e-5)
    features = torch.randn(2, plain.config.channels[0], 32, 32)  # the last 32×32 features
    assert headed.full_res_head(features).shape == (2, 3, 64, 64)
    run(tmp_path / "headed", max_steps=2, init=str(tmp_path / "plain"), warmup_steps=1,
        full_res_channels=8)
    grown = load_model(str(tmp_path / "headed"))
    assert grown.config.full_res_channels == 8
    assert float(grown.full_res_head.project.weight.detach().abs().sum()) > 0
    assert not torch.allclose(grown.decode_logits(z), plain.decode_logits(z))
    again = config_from_args(VAETrainConfig, argparse.Namespace(
        init=str(tmp_path / "headed"), out=str(tmp_path / "again")))
    assert again.full_res_channels == 8
    with pytest.raises(ValueError, match="full_res_channels"):
        dataclasses.replace(plain.config, full_res_channels=12)  # not a multiple of 8 groups


def test_the_cosine_schedule_decays_the_lr_over_the_budget(tmp_path):
    run(tmp_path / "run", max_steps=5, lr=1e-3, lr_schedule="cosine", lr_min_ratio=0.1)
    lrs = [r["lr"] for r in read_log(tmp_path / "run") if r["type"] == "train"]  # one step each
    assert lrs == pytest.approx([cosine_lr(1e-3, step / 5, 0.1) for step in range(5)])
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] < 0.2e-3
    assert VAETrainConfig().lr_schedule == "cosine"  # the A/B's choice (README)
    run(tmp_path / "flat", max_steps=3, lr=1e-3, lr_schedule="constant")
    assert {r["lr"] for r in read_log(tmp_path / "flat") if r["type"] == "train"} == {1e-3}
    with pytest.raises(ValueError, match="lr_schedule"):
        run(tmp_path / "run", resume=True, max_steps=6, lr_schedule="constant")
    # a run checkpointed before the schedule existed trained at a constant lr: it resumes so
    state = tmp_path / "run" / "train_state.json"
    saved = json.loads(state.read_text())
    del saved["args"]["lr_schedule"]
    state.write_text(json.dumps(saved))
    args = argparse.Namespace(out=str(tmp_path / "run"), resume=True)
    assert config_from_args(VAETrainConfig, args).lr_schedule == "constant"
    assert config_from_args(VAETrainConfig, argparse.Namespace(out="x")).lr_schedule == "cosine"


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(tmp_path):
    run(tmp_path / "straight", max_steps=7)
    run(tmp_path / "resumed", max_steps=4)  # stops mid-epoch 2
    metrics = run(tmp_path / "resumed", resume=True, max_steps=7)
    assert metrics["steps"] == 7
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    # optimizer state too
    _, opt_a, state_a = load_train_state(tmp_path / "straight")
    _, opt_b, state_b = load_train_state(tmp_path / "resumed")
    assert all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a) and opt_a.keys() == opt_b.keys()
    assert state_a["global_step"] == state_b["global_step"] == 7
    # the resumed log has each step once
    steps = [r["step"] for r in read_log(tmp_path / "resumed") if r["type"] == "train"]
    assert steps == list(range(1, 8))


def test_a_crash_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    run(tmp_path / "straight", max_steps=4)
    run(tmp_path / "run", max_steps=2)
    real_replace = os.replace

    def crash_on_state(src, dst):
        if str(dst).endswith("train_state.safetensors"):
            raise OSError("killed while saving")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", crash_on_state)
    with pytest.raises(OSError, match="killed while saving"):
        run(tmp_path / "run", resume=True, max_steps=4)
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    _, _, state = load_train_state(tmp_path / "run")
    assert state["global_step"] == 2  # the old checkpoint, whole
    run(tmp_path / "run", resume=True, max_steps=4)
    assert_same_weights(tmp_path / "straight", tmp_path / "run")


def test_a_run_is_not_overwritten_and_resume_keeps_its_settings(tmp_path):
    run(tmp_path / "run", max_steps=1)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        run(tmp_path / "run", max_steps=2)
    with pytest.raises(ValueError, match="beta: checkpoint 4.0, now 10.0"):
        run(tmp_path / "run", resume=True, max_steps=2, beta=10.0)


def test_the_time_budget_stops_training(tmp_path):
    metrics = run(tmp_path / "run", minutes=0.01, log_every=1000)  # 0.6 s
    steps = metrics["steps"]
    assert steps >= 1 and 0.6 <= metrics["train_seconds"] < 10
    assert load_train_state(tmp_path / "run")[2]["global_step"] == steps
    # the budget counts the time of earlier sessions: resuming with it spent trains no more
    assert run(tmp_path / "run", resume=True, minutes=0.01, log_every=1000)["steps"] == steps
    # ... and with time left (0.6 s past what is spent, however long a busy machine took) it does
    spent = load_train_state(tmp_path / "run")[2]["elapsed_seconds"]
    more = run(tmp_path / "run", resume=True, minutes=spent / 60 + 0.01, log_every=1000)
    assert more["steps"] > steps


def test_a_stop_request_ends_the_run_with_a_checkpoint(tmp_path):
    event = threading.Event()
    timer = threading.Timer(0.5, event.set)
    timer.start()
    metrics = run(tmp_path / "run", epochs=10_000, log_every=1000, stop_event=event)
    timer.join()
    assert 1 <= metrics["steps"] < 10_000 * 3
    assert load_train_state(tmp_path / "run")[2]["global_step"] == metrics["steps"]


def test_ctrl_c_stops_gracefully_once_and_restores_the_handler(tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    metrics = run(tmp_path / "run", epochs=10_000, log_every=1000)  # no KeyboardInterrupt
    timer.join()
    assert metrics["steps"] >= 1 and (tmp_path / "run" / "metrics.json").is_file()
    assert signal.getsignal(signal.SIGINT) is handler


def test_epochs_are_shuffled_reproducibly_and_loaders_give_the_same_batches():
    a, b = epoch_batches(50, 16, seed=3, epoch=0), epoch_batches(50, 16, seed=3, epoch=0)
    assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(50, 16, seed=3, epoch=1)))
    assert len(set(torch.cat(a).tolist())) == 48  # no image twice in an epoch
    data = RandomFaces(50)
    fast = list(TensorImages(data.images, torch.device("cpu")).iterate(a))
    slow = list(DatasetImages(RandomFaces(50, expose_images=False), torch.device("cpu"),
                              num_workers=0).iterate(a))
    assert all(torch.equal(x, y) for x, y in zip(fast, slow))
    assert fast[0].shape == (16, 3, 64, 64) and fast[0].dtype == torch.float32


def test_optimizer_state_round_trips_through_flat_tensors_and_json():
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    tensors, meta = optimizer_to_flat(opt)
    meta = json.loads(json.dumps(meta))  # it must survive JSON
    assert "optimizer.state.0.exp_avg" in tensors
    fresh = torch.optim.Adam(model.parameters(), lr=0.5)
    optimizer_from_flat(fresh, tensors, meta)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for key, value in a["state"][pid].items():
            assert torch.equal(value, b["state"][pid][key])


def _synthfaces_available():
    try:
        from playground.data.synthfaces import SynthFacesDataset  # noqa: F401
    except ImportError:
        return False
    return True


needs_synthfaces = pytest.mark.skipif(not _synthfaces_available(),
                                      reason="playground.data.synthfaces.SynthFacesDataset not there yet")
CLI_TINY = ["--train-size", "32", "--eval-size", "16", "--batch-size", "16", "--channels",
            "8,8,8,8", "--latent-dim", "8", "--no-progress", "--log-every", "1", "--amp", "none",
            "--layout", "contiguous"]


@needs_synthfaces
def test_cli_trains_on_synthfaces_then_resumes(tmp_path, capsys):
    out = tmp_path / "runs" / "cli-run"
    assert main(["vae", "--beta", "2", "--max-steps", "2", "--out", str(out), *CLI_TINY]) == 0
    assert json.loads((out / "train_state.json").read_text())["global_step"] == 2
    # unset options come from the checkpoint (beta 2, tiny channels, ...)
    assert main(["vae", "--out", str(out), "--resume", "--max-steps", "3", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["beta"] == 2.0 and metrics["dataset"] == "synthfaces"
    assert "resuming" in capsys.readouterr().out
    assert main(["vae", "--out", str(out), "--max-steps", "4", *CLI_TINY]) == 2
    assert main(["vae", "--out", str(out), "--resume", "--beta", "5", "--max-steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "already holds a checkpoint" in err and "beta: checkpoint 2.0, now 5.0" in err


def test_cli_trains_on_a_celeba_folder_through_a_dataloader(tmp_path, capsys):
    from tests.test_celeba import write_fake_celeba

    write_fake_celeba(tmp_path / "data")  # 3 train, 2 val images
    out = tmp_path / "runs" / "celeba"
    args = ["vae", "--dataset", "celeba", "--max-steps", "2", "--batch-size", "2", "--eval-size",
            "2", "--num-workers", "1", "--channels", "8,8,8,8", "--latent-dim", "8",
            "--no-progress", "--out", str(out)]
    assert main(args) == 2
    assert "CelebA needs --data-root" in capsys.readouterr().err
    assert main([*args, "--data-root", str(tmp_path / "data")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "celeba" and metrics["steps"] == 2 and metrics["n_eval"] == 2
    assert main(["vae", "--dataset", "celeba", "--data-root", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "runs" / "x")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_cli_reports_bad_options_without_a_traceback(tmp_path, capsys):
    assert main(["vae", "--batch-size", "0", "--out", str(tmp_path / "x")]) == 2
    assert "batch_size must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["vae", "--dataset", "imagenet"])


# ----------------------------------------------------------------------------- DDP
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    run(out, max_steps=4)
    # the run has left DDP and written its files: skip the interpreter's teardown, where a
    # gloo thread can still abort the process ("terminate called without an active
    # exception", seen once in a full test run under load) after the work is done
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_ddp_with_two_gloo_processes_matches_one_process(tmp_path):
    """Two processes, each with half of every batch, make the same updates as one process."""
    run(tmp_path / "single", max_steps=4)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp")),
                                nprocs=2, join=True)
    state = json.loads((tmp_path / "ddp" / "train_state.json").read_text())
    assert state["world_size"] == 2 and state["global_step"] == 4
    single, ddp = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-5, msg=k)
    steps = [r["step"] for r in read_log(tmp_path / "ddp") if r["type"] == "train"]
    assert steps == [1, 2, 3, 4]  # only rank 0 logs


@pytest.mark.slow
@needs_synthfaces
def test_torchrun_cli_with_two_processes(tmp_path):
    out = tmp_path / "runs" / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port", str(_free_port()), "-m", "playground.train", "vae",
           "--max-steps", "2", "--out", str(out), *CLI_TINY]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=300)
    state = json.loads((out / "train_state.json").read_text())
    assert state["world_size"] == 2 and state["global_step"] == 2
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2


@pytest.mark.parametrize("module, cls", [
    ("playground.training.trainers.vae", "VAETrainConfig"),
    ("playground.training.trainers.autoencoder", "AutoencoderTrainConfig"),
    ("playground.training.trainers.judge", "JudgeTrainConfig"),
    ("playground.training.trainers.clip_config", "CLIPTrainConfig"),
    ("playground.training.trainers.ldm_config", "LDMTrainConfig"),
])
@pytest.mark.parametrize("option, value, message", [
    ("lr", 0.0, "lr must be > 0"),
    ("batch_size", 0, "batch_size must be >= 1"),
    ("minutes", -1.0, "minutes must be > 0"),
    ("max_steps", 0, "max_steps must be >= 1"),
    ("threads", 0, "threads must be >= 1"),
])
def test_every_trainer_config_refuses_bad_shared_options(module, cls, option, value, message):
    import importlib

    config_cls = getattr(importlib.import_module(module), cls)
    config_cls()  # the defaults are valid
    with pytest.raises(ValueError, match=message):
        config_cls(**{option: value})


def test_every_trainer_names_an_architecture_its_model_config_has():
    """A warm start rebuilds these fields from the init's config.json (`init_architecture`):
    each must be a trainer option and a field of the model's config, under the same name."""
    from playground.store.model_kinds import get_kind
    from playground.training.trainers.autoencoder import AutoencoderTrainConfig
    from playground.training.trainers.clip_config import CLIPTrainConfig
    from playground.training.trainers.judge import JudgeTrainConfig
    from playground.training.trainers.ldm_config import LDMTrainConfig

    for cls in (VAETrainConfig, AutoencoderTrainConfig, JudgeTrainConfig, CLIPTrainConfig,
                LDMTrainConfig):
        model_fields = {f.name for f in dataclasses.fields(get_kind(cls.MODEL_KIND).config_cls)}
        trainer_fields = {f.name for f in dataclasses.fields(cls)}
        assert cls.ARCHITECTURE and set(cls.ARCHITECTURE) <= model_fields & trainer_fields, cls
