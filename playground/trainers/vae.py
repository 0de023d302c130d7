"""Train a β-VAE: ``python -m playground.train vae --beta 4 [--minutes 30 | --epochs 10]``.

Objective per image (nats): BCE(x, decoder(z)) + β · KL(q(z|x) ‖ N(0, I)), z = μ + σ·ε.
Adam, a fixed global batch (split across DDP processes), a seeded permutation per epoch and
noise ε seeded by (seed, epoch, step): a resumed run replays exactly what an uninterrupted
run would have done, and a DDP run the same updates as one process with the same batch.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from playground.checkpoints import read_json, runs_dir, save_model
from playground.losses import bce_loss, beta_vae_loss, kl_normal
from playground.models.vae import BetaVAE, VAEConfig
from playground.training import (TRAIN_STATE_JSON, DistInfo, Every, GracefulStop, RunFolder,
                                 Stopwatch,
                                 all_reduce_sum, barrier, broadcast_flag, epoch_batches,
                                 image_source, load_train_state, mix_seed, open_dataset,
                                 optimizer_from_flat, progress_bar, save_train_state, shard,
                                 setup_distributed, steps_per_epoch, teardown_distributed)

HELP = "β-VAE on 64×64 faces (conv encoder → 128-d Gaussian z → deconv decoder)"

ACTIVE_KL = 0.01  # nats: a latent dimension with more average KL than this is "active"


@dataclass
class VAETrainConfig:
    """One β-VAE training run (saved in train_state.json as "args")."""

    beta: float = 4.0  # KL weight β (1 = plain VAE)
    dataset: str = "synthfaces"  # "synthfaces" (generated here) or "celeba" (your own copy)
    data_root: str | None = None  # CelebA: folder containing celeba/; SynthFaces: cache folder
    epochs: int | None = None  # stop after this many epochs (10 if no minutes/max_steps given)
    minutes: float | None = None  # stop after this much training time, summed over resumes
    max_steps: int | None = None  # stop after this many optimizer steps in total (quick runs)
    batch_size: int = 128  # global batch, split evenly across DDP processes
    lr: float = 1e-3  # Adam learning rate
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (CUDA if available)
    seed: int = 0  # initial weights, data order and ε noise
    train_size: int | None = None  # use the first N training images (None = the whole split)
    eval_size: int | None = 2048  # first N validation images for the val loss and metrics.json
    latent_dim: int = 128  # size of z
    channels: tuple[int, ...] = (32, 64, 128, 256)  # encoder widths (decoder mirrors them)
    checkpoint_minutes: float = 2.0  # also checkpoint this often within an epoch
    log_every: int = 20  # a "train" line in log.jsonl every N steps
    num_workers: int = 2  # DataLoader workers when images are read from files (CelebA)
    threads: int | None = None  # CPU threads for torch (None = torch's default, all cores)
    progress: bool = True  # tqdm progress bar
    out: str | None = None  # run folder (default: runs/vae-beta<β>-<dataset>)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        for name in ("batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "max_steps", "train_size", "eval_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def model_config(self) -> VAEConfig:
        return VAEConfig(latent_dim=self.latent_dim, channels=self.channels, beta=self.beta)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else runs_dir() / f"vae-beta{self.beta:g}-{self.dataset}"


# Changing these would make a resumed run a different run.
FIXED_ON_RESUME = ("beta", "dataset", "batch_size", "lr", "seed", "train_size", "latent_dim",
                   "channels")


# =========================================================================== evaluation
@torch.no_grad()
def _posterior_stats(model: BetaVAE, source, info: DistInfo, seed: int,
                     batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sum over (this rank's share of) the images of BCE and of the per-dimension KL.

    z is sampled (one ε per image, seeded), so recon + KL is a one-sample ELBO estimate.
    Returns (recon sum, KL sum per dimension (D,), image count), summed over ranks.
    """
    model.eval()
    device = next(model.parameters()).device
    n = len(source)
    indices = shard(torch.arange(n), info)
    batches = list(torch.split(indices, batch_size))
    recon = torch.zeros((), dtype=torch.float64, device=device)
    kl = torch.zeros(model.config.latent_dim, dtype=torch.float64, device=device)
    for i, x in enumerate(source.iterate(batches)):
        mu, logvar = model.encode(x)
        g = torch.Generator().manual_seed(mix_seed(seed, 0x5EED, info.rank, i))
        eps = torch.randn(mu.shape, generator=g).to(device)
        z = model.reparameterize(mu, logvar, eps=eps)
        recon += bce_loss(model.decode_logits(z), x).double() * x.shape[0]
        kl += kl_normal(mu, logvar).double().sum(dim=0)
    count = torch.tensor([float(indices.numel())], dtype=torch.float64, device=device)
    packed = all_reduce_sum(torch.cat([recon.view(1), kl, count]), info)
    return packed[0], packed[1:-1], int(packed[-1].item())


def validation_loss(model: BetaVAE, source, beta: float, info: DistInfo | None = None,
                    seed: int = 0) -> dict[str, float]:
    """Mean recon (BCE), KL and β-VAE loss per image on a validation source (all ranks join)."""
    recon, kl_dims, n = _posterior_stats(model, source, info or DistInfo(), seed)
    recon, kl = recon.item() / n, kl_dims.sum().item() / n
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}


def final_metrics(model: BetaVAE, dataset, *, beta: float, device: str | torch.device = "cpu",
                  seed: int = 0, num_workers: int = 2) -> dict[str, Any]:
    """Metrics of a trained β-VAE on `dataset` (the validation split) for metrics.json.

    Returns ``beta``, ``recon_bce`` and ``kl`` (nats per image), ``kl_per_dim`` (list of D),
    ``active_dims`` (dimensions with average KL > 0.01 nats), ``elbo`` (= −(recon_bce + kl),
    nats per image, higher is better), ``loss`` (recon_bce + β·kl) and ``n_eval``.

    Disentanglement and latent-map scores (MIG, per-factor r, Smiling kNN accuracy) need the
    dataset's factors; they belong in `playground.evaluate` and can be merged in here.
    """
    device = torch.device(device)
    source = image_source(dataset, device, num_workers)
    recon, kl_dims, n = _posterior_stats(model, source, DistInfo(), seed)
    kl_per_dim = (kl_dims / n).tolist()
    recon_bce, kl = recon.item() / n, float(sum(kl_per_dim))
    return {
        "beta": float(beta),
        "recon_bce": recon_bce,
        "kl": kl,
        "kl_per_dim": kl_per_dim,
        "active_dims": int(sum(k > ACTIVE_KL for k in kl_per_dim)),
        "elbo": -(recon_bce + kl),
        "loss": recon_bce + beta * kl,
        "n_eval": n,
    }


# =========================================================================== training
def _open_on_all_ranks(info: DistInfo, name: str, split: str, n: int | None, root: str | None):
    """Open a dataset on rank 0 first (it may build a cache), then on the other ranks."""
    dataset = open_dataset(name, split, n, root) if info.is_main else None
    barrier(info)
    return dataset if info.is_main else open_dataset(name, split, n, root)


def _check_resume_args(cfg: VAETrainConfig, saved: dict[str, Any]) -> None:
    current = dataclasses.asdict(cfg)
    diffs = []
    for key in FIXED_ON_RESUME:
        if key not in saved:
            continue
        old = tuple(saved[key]) if isinstance(saved[key], list) else saved[key]
        if old != current[key]:
            diffs.append(f"{key}: checkpoint {old!r}, now {current[key]!r}")
    if diffs:
        raise ValueError("cannot resume with different settings (" + "; ".join(diffs) +
                         "); leave them out to keep the checkpoint's values, or use a new --out")


def train_vae(cfg: VAETrainConfig, *, resume: bool = False, train_set=None, val_set=None,
              stop_event=None) -> dict[str, Any] | None:
    """Train (or, with `resume`, continue) a β-VAE in ``cfg.out_dir()``.

    Runs under torchrun as one DDP process per rank. `train_set` / `val_set` replace the named
    dataset (any Dataset with image items, or an object with ``.images`` uint8 (N, 64, 64, 3)).
    Ctrl-C / SIGTERM, or setting `stop_event` (a ``threading.Event``), stops the run after the
    current step with a checkpoint and metrics.json; ``--resume`` continues it.
    Returns:
        the metrics written to metrics.json (on rank 0; None on other ranks).
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    info, device = setup_distributed(cfg.device)
    try:
        with GracefulStop(stop_event) as stop:
            return _train(cfg, info, device, resume, train_set, val_set, stop)
    finally:
        teardown_distributed(info)


def _train(cfg, info, device, resume, train_set, val_set, stop: GracefulStop):
    out = RunFolder(cfg.out_dir(), is_main=info.is_main)
    has_checkpoint = out.has_checkpoint()
    barrier(info)  # every rank has looked before rank 0 writes anything
    if has_checkpoint and not resume:
        raise ValueError(f"{out.path} already holds a checkpoint: pass --resume to continue "
                         "it, or choose another --out")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # ---------------------------------------------------------------- data
    if train_set is None:
        train_set = _open_on_all_ranks(info, cfg.dataset, "train", cfg.train_size, cfg.data_root)
    if val_set is None:
        val_set = _open_on_all_ranks(info, cfg.dataset, "val", cfg.eval_size, cfg.data_root)
    train_source = image_source(train_set, device, cfg.num_workers)
    val_source = image_source(val_set, device, cfg.num_workers)
    n = len(train_source)
    if cfg.train_size is not None and n > cfg.train_size:
        raise ValueError(f"the training set has {n} images, more than train_size={cfg.train_size}")
    spe = steps_per_epoch(n, cfg.batch_size)
    batch = min(cfg.batch_size, n)
    if batch < info.world_size:
        raise ValueError(f"batch of {batch} images cannot be split over {info.world_size} processes")
    epochs = cfg.epochs if cfg.epochs is not None else (
        None if cfg.minutes is not None or cfg.max_steps is not None else 10)

    # ---------------------------------------------------------------- model, optimizer, state
    torch.manual_seed(cfg.seed)
    model = BetaVAE(cfg.model_config()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    epoch, start_step, global_step, elapsed = 0, 0, 0, 0.0
    if resume and has_checkpoint:
        model_state, opt_tensors, state = load_train_state(out.path)
        _check_resume_args(cfg, state.get("args", {}))
        model.load_state_dict(model_state)
        optimizer_from_flat(optimizer, opt_tensors, state["optimizer"])
        epoch, start_step = state["epoch"], state["step_in_epoch"]
        global_step, elapsed = state["global_step"], state["elapsed_seconds"]
        if state.get("steps_per_epoch") not in (None, spe):
            raise ValueError(f"the checkpoint has {state['steps_per_epoch']} steps per epoch, "
                             f"this data {spe}: was the dataset changed?")
        out.truncate_log(global_step)
        out.remove_stale_temp_files()
        if info.is_main:
            print(f"resuming {out.path} at epoch {epoch + 1}, step {global_step}")
    elif resume and info.is_main:
        print(f"nothing to resume in {out.path}: starting a new run")
    barrier(info)  # all ranks have read the checkpoint before it is overwritten
    net = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    stopwatch = Stopwatch(elapsed)
    saver = Every(cfg.checkpoint_minutes * 60 if cfg.checkpoint_minutes else None)
    args_json = {**dataclasses.asdict(cfg), "channels": list(cfg.channels)}

    def checkpoint(epoch_: int, step_in_epoch: int) -> None:
        if not info.is_main:
            return
        state = {"epoch": epoch_, "step_in_epoch": step_in_epoch, "global_step": global_step,
                 "steps_per_epoch": spe, "elapsed_seconds": stopwatch.elapsed(),
                 "rng": {"seed": cfg.seed, "scheme": "order and noise seeded by (seed, epoch, step)"},
                 "world_size": info.world_size, "device": str(device), "args": args_json}
        save_train_state(out.path, model, optimizer, state)
        save_model(out.path, model)
        saver.reset()

    def should_stop() -> bool:
        """Same answer on every rank: step limit, or rank 0's time budget / stop request."""
        if cfg.max_steps is not None and global_step >= cfg.max_steps:
            return True
        out_of_time = cfg.minutes is not None and stopwatch.elapsed() >= cfg.minutes * 60
        return broadcast_flag(out_of_time or stop.requested, info, device)

    # ---------------------------------------------------------------- loop
    step_seconds, session_steps = 0.0, 0
    window = torch.zeros(3, device=device)  # running sums of loss, recon, kl
    window_steps, window_start = 0, time.perf_counter()
    stopped = should_stop()
    while not stopped and (epochs is None or epoch < epochs):
        batches = epoch_batches(n, cfg.batch_size, cfg.seed, epoch)
        desc = f"epoch {epoch + 1}" + (f"/{epochs}" if epochs else "")
        bar = progress_bar(spe, start_step, desc, enabled=info.is_main and cfg.progress)
        done = start_step
        images = train_source.iterate(shard(b, info) for b in batches[start_step:])
        for step_in_epoch, x in enumerate(images, start=start_step):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, step_in_epoch))
            eps = shard(torch.randn(batch, cfg.latent_dim, generator=g), info).to(device)
            model.train()
            logits, mu, logvar, _ = net(x, eps=eps)
            losses = beta_vae_loss(logits, x, mu, logvar, cfg.beta)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            global_step += 1
            done = step_in_epoch + 1
            window += torch.stack([losses["loss"], losses["recon"], losses["kl"]]).detach()
            window_steps += 1
            step_seconds += time.perf_counter() - t0
            session_steps += 1
            bar.update(1)
            if global_step % cfg.log_every == 0:
                loss, recon, kl = (window / window_steps).tolist()
                img_s = window_steps * batch / (time.perf_counter() - window_start)
                out.log({"type": "train", "step": global_step, "epoch": global_step / spe,
                         "loss": loss, "recon": recon, "kl": kl, "img_per_s": img_s,
                         "elapsed": stopwatch.elapsed()})
                bar.set_postfix(loss=f"{loss:.1f}", recon=f"{recon:.1f}", kl=f"{kl:.1f}",
                                img_s=f"{img_s:.0f}")
                window.zero_()
                window_steps, window_start = 0, time.perf_counter()
            stopped = should_stop()
            if stopped:
                break
            if saver.due() and done < spe:
                checkpoint(epoch, done)
        bar.close()
        if done < spe:  # stopped mid-epoch
            checkpoint(epoch, done)
            break
        val = validation_loss(model, val_source, cfg.beta, info, cfg.seed)
        epoch, start_step = epoch + 1, 0
        out.log({"type": "val", "step": global_step, "epoch": epoch, **val,
                 "elapsed": stopwatch.elapsed()})
        if info.is_main:
            print(f"epoch {epoch}: val loss {val['loss']:.2f}  recon {val['recon']:.2f}  "
                  f"kl {val['kl']:.2f} nats/image", flush=True)
        checkpoint(epoch, 0)
        stopped = stopped or should_stop()

    # ---------------------------------------------------------------- final metrics
    metrics = None
    if info.is_main:
        if not out.has_checkpoint():  # e.g. limits already reached before the first step
            checkpoint(epoch, start_step)
        metrics = final_metrics(model, val_set, beta=cfg.beta, device=device, seed=cfg.seed,
                                num_workers=cfg.num_workers)
        metrics.update({
            "train_seconds": stopwatch.elapsed(),
            "device": str(device),
            "world_size": info.world_size,
            "epochs": global_step / spe,
            "steps": global_step,
            "dataset": cfg.dataset,
            "train_size": n,
            "batch_size": batch,
            "lr": cfg.lr,
            "train_img_per_s": session_steps * batch / step_seconds if step_seconds else None,
        })
        save_model(out.path, model, metrics=metrics)
        print(f"done: {global_step} steps, recon {metrics['recon_bce']:.2f}, "
              f"kl {metrics['kl']:.2f} nats/image, {metrics['active_dims']} active dims → {out.path}")
    barrier(info)
    return metrics


# =========================================================================== command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m playground.train vae``. Unset options keep the checkpoint's
    values on --resume (and the defaults shown otherwise)."""
    d = VAETrainConfig()
    S = argparse.SUPPRESS
    p.add_argument("--beta", type=float, default=S, help=f"KL weight β, 1 = plain VAE (default {d.beta:g})")
    p.add_argument("--dataset", choices=("synthfaces", "celeba"), default=S,
                   help=f"training data (default {d.dataset})")
    p.add_argument("--data-root", dest="data_root", default=S,
                   help="CelebA: the folder that contains celeba/ (required); SynthFaces: its cache folder")
    p.add_argument("--epochs", type=int, default=S,
                   help="total epochs (default 10 unless --minutes or --max-steps is given)")
    p.add_argument("--minutes", type=float, default=S,
                   help="training-time budget in minutes, summed over resumed sessions")
    p.add_argument("--max-steps", dest="max_steps", type=int, default=S,
                   help="stop after this many optimizer steps in total")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=S,
                   help=f"global batch size, split over DDP processes (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=S, help=f"Adam learning rate (default {d.lr:g})")
    p.add_argument("--device", default=S,
                   help="cpu, cuda, cuda:N, or auto = CUDA if available (default cpu)")
    p.add_argument("--seed", type=int, default=S, help=f"random seed (default {d.seed})")
    p.add_argument("--train-size", dest="train_size", type=int, default=S,
                   help="use only the first N training images")
    p.add_argument("--eval-size", dest="eval_size", type=int, default=S,
                   help=f"validation images for the val loss and metrics (default {d.eval_size})")
    p.add_argument("--latent-dim", dest="latent_dim", type=int, default=S,
                   help=f"size of z (default {d.latent_dim})")
    p.add_argument("--channels", type=_int_tuple, default=S,
                   help="encoder widths, comma separated (default 32,64,128,256)")
    p.add_argument("--checkpoint-minutes", dest="checkpoint_minutes", type=float, default=S,
                   help=f"checkpoint at least this often (default {d.checkpoint_minutes:g})")
    p.add_argument("--log-every", dest="log_every", type=int, default=S,
                   help=f"train-loss line in log.jsonl every N steps (default {d.log_every})")
    p.add_argument("--num-workers", dest="num_workers", type=int, default=S,
                   help=f"DataLoader workers for file-based data (default {d.num_workers})")
    p.add_argument("--threads", type=int, default=S,
                   help="CPU threads (default: all cores; 1 keeps a busy machine responsive)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=S,
                   help="no progress bar")
    p.add_argument("--out", default=S, help="run folder (default runs/vae-beta<β>-<dataset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> VAETrainConfig:
    """Options given on the command line, over the checkpoint's args when resuming."""
    known = {f.name for f in dataclasses.fields(VAETrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in known}
    cfg = VAETrainConfig(**given)
    if args.resume:
        state_file = cfg.out_dir() / TRAIN_STATE_JSON
        if state_file.is_file():
            saved = dict(read_json(state_file).get("args", {}))
            saved = {k: v for k, v in saved.items() if k in known}
            cfg = VAETrainConfig(**{**saved, **given, "out": str(cfg.out_dir())})
    return cfg


def main(args: argparse.Namespace) -> int:
    train_vae(config_from_args(args), resume=args.resume)
    return 0
