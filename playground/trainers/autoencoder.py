"""Train the first-stage autoencoder of latent diffusion:
``python -m playground.train autoencoder [--latent-size 16] [--minutes 30 | --epochs 10]``.

Objective per batch (every term averaged per element, so kl_weight reads the same for any size):

    L = mean |x − D(z)|  (or mean (x − D(z))²)  +  kl_weight · mean KL(q(z | x) ‖ N(0, I)),
    z = μ + σ·ε,  ε seeded by (seed, epoch, step)

Adam with a cosine learning-rate decay over the run's budget (steps, epochs or minutes, summed
over resumes), a fixed global batch split across DDP processes and a seeded permutation per
epoch: a resumed run replays the batches an uninterrupted one would have seen. Optional bf16
autocast (about 1.8× faster on a CPU with avx512_bf16, measured on this project's 2-core box).

After training, ``scale_factor`` = 1 / std(z) over the (sampled) latents of the first
`scale_sample` training images is stored in config.json, so `KLAutoencoder.encode` hands the
diffusion model latents of about unit variance. metrics.json holds the test-split PSNR.

The helpers `open_on_all_ranks`, `check_resume_args`, `config_from_args` and `cosine_lr` are
generic over the trainer's config dataclass (the judge trainer uses them too).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from playground.checkpoints import read_json, runs_dir, save_model
from playground.losses import kl_normal
from playground.models.autoencoder import AutoencoderConfig, KLAutoencoder, psnr
from playground.training import (TRAIN_STATE_JSON, DistInfo, Every, GracefulStop, RunFolder,
                                 Stopwatch, all_reduce_sum, barrier, broadcast_flag,
                                 epoch_batches, image_source, load_train_state, mix_seed,
                                 open_dataset, optimizer_from_flat, progress_bar,
                                 save_train_state, setup_distributed, shard, steps_per_epoch,
                                 teardown_distributed)

HELP = ("first-stage autoencoder for latent diffusion (64×64 faces ↔ a spatial latent, "
        "e.g. 16×16×4)")

RECON_LOSSES = ("l1", "mse")
AMP_MODES = ("none", "bf16")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class AutoencoderTrainConfig:
    """One autoencoder training run (saved in train_state.json as "args")."""

    latent_size: int = 16  # side of the latent: 16 → 16×16×4, 8 → 8×8×4
    latent_channels: int = 4  # channels of the latent
    channels: tuple[int, ...] | None = None  # width per level, 64×64 first (None = by latent size)
    num_res_blocks: int = 1  # residual blocks per level below 64×64
    kl_weight: float = 1e-6  # weight of the per-element KL against the per-element recon loss
    recon_loss: str = "l1"  # "l1" (sharper edges) or "mse" (what PSNR measures)
    dataset: str = "synthfaces"  # "synthfaces" (generated here) or "celeba" (your own copy)
    data_root: str | None = None  # CelebA: folder containing celeba/; SynthFaces: cache folder
    epochs: int | None = None  # stop after this many epochs (10 if no minutes/max_steps given)
    minutes: float | None = None  # stop after this much training time, summed over resumes
    max_steps: int | None = None  # stop after this many optimizer steps in total (quick runs)
    batch_size: int = 64  # global batch, split evenly across DDP processes
    lr: float = 1e-3  # Adam learning rate (peak of the cosine schedule)
    lr_schedule: str = "cosine"  # "cosine" (to lr_min_ratio · lr at the end of the budget) or "constant"
    lr_min_ratio: float = 0.05  # final learning rate of the cosine schedule, as a fraction of lr
    amp: str = "none"  # "bf16": autocast to bfloat16 (faster on CPUs with avx512_bf16 and GPUs)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (CUDA if available)
    seed: int = 0  # initial weights, data order and ε noise
    train_size: int | None = None  # use the first N training images (None = the whole split)
    eval_size: int | None = 1024  # first N validation images for the per-epoch val PSNR
    test_size: int | None = None  # first N test images for metrics.json (None = the whole split)
    scale_sample: int = 2048  # training images whose latents set scale_factor = 1 / std(z)
    checkpoint_minutes: float = 2.0  # also checkpoint this often within an epoch
    log_every: int = 20  # a "train" line in log.jsonl every N steps
    num_workers: int = 2  # DataLoader workers when images are read from files (CelebA)
    threads: int | None = None  # CPU threads for torch (None = torch's default, all cores)
    progress: bool = True  # tqdm progress bar
    out: str | None = None  # run folder (default: runs/autoencoder-<h>x<w>x<C>-<dataset>)

    def __post_init__(self):
        if self.channels is not None:
            self.channels = tuple(int(c) for c in self.channels)
        for name in ("batch_size", "log_every", "scale_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "max_steps", "train_size", "eval_size", "test_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.lr_min_ratio <= 1:
            raise ValueError(f"lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        for name, allowed in (("recon_loss", RECON_LOSSES), ("amp", AMP_MODES),
                              ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        self.model_config()  # validates latent_size / channels now, with a clear message

    def model_config(self) -> AutoencoderConfig:
        return AutoencoderConfig(latent_channels=self.latent_channels,
                                 latent_size=self.latent_size, channels=self.channels,
                                 num_res_blocks=self.num_res_blocks, kl_weight=self.kl_weight)

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        s, c = self.latent_size, self.latent_channels
        return runs_dir() / f"autoencoder-{s}x{s}x{c}-{self.dataset}"


# Changing these would make a resumed run a different run.
FIXED_ON_RESUME = ("latent_size", "latent_channels", "channels", "num_res_blocks", "kl_weight",
                   "recon_loss", "dataset", "batch_size", "seed", "train_size")


# =========================================================================== loss
def autoencoder_loss(recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor,
                     logvar: torch.Tensor, kl_weight: float,
                     recon_loss: str = "l1") -> dict[str, torch.Tensor]:
    """Reconstruction + kl_weight · KL, each averaged per element.

    Args:
        recon: decoder output (N, 3, H, W) (unclamped), x: targets (N, 3, H, W) in [0, 1].
        mean, logvar: posterior moments (N, C, h, w).
    Returns:
        dict of scalars: ``loss``, ``recon`` (mean |x − x̂| or (x − x̂)²), ``kl`` (nats per
        latent element, not multiplied by kl_weight).
    """
    if recon.shape != x.shape:
        raise ValueError(f"reconstruction {tuple(recon.shape)} and images {tuple(x.shape)} "
                         "differ in shape")
    diff = recon.float() - x.float()
    if recon_loss == "l1":
        rec = diff.abs().mean()
    elif recon_loss == "mse":
        rec = diff.pow(2).mean()
    else:
        raise ValueError(f"recon_loss must be one of {', '.join(RECON_LOSSES)}, got {recon_loss!r}")
    kl = kl_normal(mean.flatten(1), logvar.flatten(1)).mean()
    return {"loss": rec + kl_weight * kl, "recon": rec, "kl": kl}


def cosine_lr(base: float, progress: float, min_ratio: float) -> float:
    """Cosine decay from `base` (progress 0) to ``min_ratio · base`` (progress ≥ 1)."""
    p = min(max(progress, 0.0), 1.0)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def budget_progress(cfg, global_step: int, spe: int, elapsed: float, epochs: int | None) -> float:
    """How far along the run is, 0…1: the largest fraction of any limit it has (steps, epochs,
    minutes), so the schedule ends when the first limit is reached."""
    fractions = [0.0]
    if cfg.max_steps is not None:
        fractions.append(global_step / cfg.max_steps)
    if epochs is not None:
        fractions.append(global_step / (epochs * spe))
    if cfg.minutes is not None:
        fractions.append(elapsed / (cfg.minutes * 60))
    return max(fractions)


def autocast(device: torch.device, amp: str):
    """bf16 autocast context (a no-op for amp="none")."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


# =========================================================================== evaluation
@torch.no_grad()
def reconstruction_stats(model: KLAutoencoder, source, info: DistInfo | None = None,
                         batch_size: int = 128, amp: str = "none") -> dict[str, float]:
    """Reconstruct every image through the posterior mean and average the errors.

    Returns:
        ``psnr`` (dB, mean of per-image PSNR), ``psnr_std`` (its spread over images),
        ``mse`` and ``l1`` (per element, clamped reconstruction), ``kl`` (nats per latent
        element), ``n``. Summed over DDP ranks (each takes a share of the images).
    """
    info = info or DistInfo()
    model.eval()
    device = next(model.parameters()).device
    indices = shard(torch.arange(len(source)), info)
    sums = torch.zeros(6, dtype=torch.float64, device=device)  # psnr, psnr², mse, l1, kl, n
    for x in source.iterate(torch.split(indices, batch_size)):
        with autocast(device, amp):
            mean, logvar = model.encode_moments(x)
            recon = model.decode_unscaled(mean)
        recon = recon.float().clamp(0, 1)
        p = psnr(recon, x).double()
        sums += torch.stack([
            p.sum(), p.pow(2).sum(),
            (recon - x).pow(2).sum().double() / x[0].numel(),
            (recon - x).abs().sum().double() / x[0].numel(),
            kl_normal(mean.float().flatten(1), logvar.float().flatten(1)).mean(dim=1).sum().double(),
            torch.tensor(float(x.shape[0]), dtype=torch.float64, device=device),
        ])
    sums = all_reduce_sum(sums, info)
    n = max(sums[5].item(), 1.0)
    mean_psnr = sums[0].item() / n
    var = max(sums[1].item() / n - mean_psnr ** 2, 0.0)
    return {"psnr": mean_psnr, "psnr_std": math.sqrt(var), "mse": sums[2].item() / n,
            "l1": sums[3].item() / n, "kl": sums[4].item() / n, "n": int(sums[5].item())}


@torch.no_grad()
def latent_statistics(model: KLAutoencoder, source, n: int, seed: int = 0,
                      batch_size: int = 256) -> dict[str, Any]:
    """Statistics of sampled latents z ~ q(z | x) (unscaled) of the first `n` images.

    Returns:
        ``scale_factor`` = 1 / std(z) over all elements (what LDM calls the scale factor),
        ``std``, ``mean``, per-channel ``channel_mean`` / ``channel_std`` and ``n``.
    """
    model.eval()
    device = next(model.parameters()).device
    indices = torch.arange(min(n, len(source)))
    zs = []
    for i, x in enumerate(source.iterate(torch.split(indices, batch_size))):
        mean, logvar = model.encode_moments(x)
        g = torch.Generator().manual_seed(mix_seed(seed, 0x5CA1E, i))
        eps = torch.randn(mean.shape, generator=g).to(device)
        zs.append(model.reparameterize(mean, logvar, eps=eps).double().cpu())
    z = torch.cat(zs)  # (n, C, h, w)
    std = z.std().item()
    if not std > 0 or not math.isfinite(std):
        raise ValueError(f"the latents have std {std}: cannot set a scale factor")
    return {"scale_factor": 1.0 / std, "std": std, "mean": z.mean().item(),
            "channel_mean": z.mean(dim=(0, 2, 3)).tolist(),
            "channel_std": z.std(dim=(0, 2, 3)).tolist(), "n": int(z.shape[0])}


def set_scale_factor(model: KLAutoencoder, source, n: int, seed: int = 0) -> dict[str, Any]:
    """Measure the latent statistics on `n` images and store 1 / std in ``model.config``."""
    stats = latent_statistics(model, source, n, seed)
    model.config.scale_factor = stats["scale_factor"]
    return stats


# =========================================================================== generic helpers
def open_on_all_ranks(info: DistInfo, name: str, split: str, n: int | None, root: str | None):
    """Open a dataset on rank 0 first (it may build a cache), then on the other ranks."""
    dataset = open_dataset(name, split, n, root) if info.is_main else None
    barrier(info)
    return dataset if info.is_main else open_dataset(name, split, n, root)


def check_resume_args(cfg, saved: dict[str, Any], fixed: tuple[str, ...]) -> None:
    """Refuse to resume when a setting in `fixed` differs from the checkpoint's."""
    current = dataclasses.asdict(cfg)
    diffs = []
    for key in fixed:
        if key not in saved:
            continue
        old = tuple(saved[key]) if isinstance(saved[key], list) else saved[key]
        if old != current[key]:
            diffs.append(f"{key}: checkpoint {old!r}, now {current[key]!r}")
    if diffs:
        raise ValueError("cannot resume with different settings (" + "; ".join(diffs) +
                         "); leave them out to keep the checkpoint's values, or use a new --out")


def config_from_args(config_cls, args: argparse.Namespace):
    """Options given on the command line, over the checkpoint's args when resuming."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    given = {k: v for k, v in vars(args).items() if k in known}
    cfg = config_cls(**given)
    if getattr(args, "resume", False):
        state_file = cfg.out_dir() / TRAIN_STATE_JSON
        if state_file.is_file():
            saved = dict(read_json(state_file).get("args", {}))
            saved = {k: v for k, v in saved.items() if k in known}
            cfg = config_cls(**{**saved, **given, "out": str(cfg.out_dir())})
    return cfg


def json_args(cfg) -> dict[str, Any]:
    """The config as JSON-able args (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


# =========================================================================== training
def train_autoencoder(cfg: AutoencoderTrainConfig, *, resume: bool = False, train_set=None,
                      val_set=None, test_set=None, stop_event=None) -> dict[str, Any] | None:
    """Train (or, with `resume`, continue) a `KLAutoencoder` in ``cfg.out_dir()``.

    Runs under torchrun as one DDP process per rank. `train_set` / `val_set` / `test_set`
    replace the named dataset's splits (a given `val_set` also serves as the test set unless
    `test_set` is given). Ctrl-C / SIGTERM or `stop_event` stop after the current step with a
    checkpoint and metrics.json; ``--resume`` continues.
    Returns:
        the metrics written to metrics.json (on rank 0; None on other ranks).
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    info, device = setup_distributed(cfg.device)
    try:
        with GracefulStop(stop_event) as stop:
            return _train(cfg, info, device, resume, train_set, val_set, test_set, stop)
    finally:
        teardown_distributed(info)


def _train(cfg: AutoencoderTrainConfig, info: DistInfo, device: torch.device, resume: bool,
           train_set, val_set, test_set, stop: GracefulStop):
    out = RunFolder(cfg.out_dir(), is_main=info.is_main)
    has_checkpoint = out.has_checkpoint()
    barrier(info)
    if has_checkpoint and not resume:
        raise ValueError(f"{out.path} already holds a checkpoint: pass --resume to continue "
                         "it, or choose another --out")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # ---------------------------------------------------------------- data
    if test_set is None and val_set is not None:
        test_set = val_set
    if train_set is None:
        train_set = open_on_all_ranks(info, cfg.dataset, "train", cfg.train_size, cfg.data_root)
    if val_set is None:
        val_set = open_on_all_ranks(info, cfg.dataset, "val", cfg.eval_size, cfg.data_root)
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
    model = KLAutoencoder(cfg.model_config()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    epoch, start_step, global_step, elapsed = 0, 0, 0, 0.0
    if resume and has_checkpoint:
        model_state, opt_tensors, state = load_train_state(out.path)
        check_resume_args(cfg, state.get("args", {}), FIXED_ON_RESUME)
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
    barrier(info)
    net = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    stopwatch = Stopwatch(elapsed)
    saver = Every(cfg.checkpoint_minutes * 60 if cfg.checkpoint_minutes else None)
    args_json = json_args(cfg)
    latent_shape = model.config.latent_shape

    def checkpoint(epoch_: int, step_in_epoch: int, scale_images: int = 256) -> None:
        """Train state + a loadable model (with a scale factor measured on a few images)."""
        if not info.is_main:
            return
        state = {"epoch": epoch_, "step_in_epoch": step_in_epoch, "global_step": global_step,
                 "steps_per_epoch": spe, "elapsed_seconds": stopwatch.elapsed(),
                 "rng": {"seed": cfg.seed, "scheme": "order and noise seeded by (seed, epoch, step)"},
                 "world_size": info.world_size, "device": str(device), "args": args_json}
        save_train_state(out.path, model, optimizer, state)
        set_scale_factor(model, train_source, scale_images, cfg.seed)
        save_model(out.path, model)
        saver.reset()

    def should_stop() -> bool:
        if cfg.max_steps is not None and global_step >= cfg.max_steps:
            return True
        out_of_time = cfg.minutes is not None and stopwatch.elapsed() >= cfg.minutes * 60
        return broadcast_flag(out_of_time or stop.requested, info, device)

    # ---------------------------------------------------------------- loop
    step_seconds, session_steps = 0.0, 0
    window = torch.zeros(4, device=device)  # running sums of loss, recon, kl, batch PSNR
    window_steps, window_start = 0, time.perf_counter()
    stopped = should_stop()
    done = start_step
    while not stopped and (epochs is None or epoch < epochs):
        batches = epoch_batches(n, cfg.batch_size, cfg.seed, epoch)
        desc = f"epoch {epoch + 1}" + (f"/{epochs}" if epochs else "")
        bar = progress_bar(spe, start_step, desc, enabled=info.is_main and cfg.progress)
        done = start_step
        images = train_source.iterate(shard(b, info) for b in batches[start_step:])
        for step_in_epoch, x in enumerate(images, start=start_step):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, step_in_epoch))
            eps = shard(torch.randn((batch, *latent_shape), generator=g), info).to(device)
            if cfg.lr_schedule == "cosine":
                progress = budget_progress(cfg, global_step, spe, stopwatch.elapsed(), epochs)
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(cfg.lr, progress, cfg.lr_min_ratio)
            model.train()
            with autocast(device, cfg.amp):
                recon, mean, logvar = net(x, eps=eps)
            losses = autoencoder_loss(recon, x, mean, logvar, cfg.kl_weight, cfg.recon_loss)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            global_step += 1
            done = step_in_epoch + 1
            with torch.no_grad():
                batch_psnr = psnr(recon.detach().float().clamp(0, 1), x).mean()
            window += torch.stack([losses["loss"].detach(), losses["recon"].detach(),
                                   losses["kl"].detach(), batch_psnr])
            window_steps += 1
            step_seconds += time.perf_counter() - t0
            session_steps += 1
            bar.update(1)
            if global_step % cfg.log_every == 0:
                loss, rec, kl, p = (window / window_steps).tolist()
                img_s = window_steps * batch / (time.perf_counter() - window_start)
                out.log({"type": "train", "step": global_step, "epoch": global_step / spe,
                         "loss": loss, "recon": rec, "kl": kl, "psnr": p, "img_per_s": img_s,
                         "lr": optimizer.param_groups[0]["lr"], "elapsed": stopwatch.elapsed()})
                bar.set_postfix(recon=f"{rec:.4f}", psnr=f"{p:.1f}", img_s=f"{img_s:.0f}")
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
        val = reconstruction_stats(model, val_source, info, amp=cfg.amp)
        epoch, start_step = epoch + 1, 0
        out.log({"type": "val", "step": global_step, "epoch": epoch, "psnr": val["psnr"],
                 "mse": val["mse"], "l1": val["l1"], "kl": val["kl"],
                 "elapsed": stopwatch.elapsed()})
        if info.is_main:
            print(f"epoch {epoch}: val PSNR {val['psnr']:.2f} dB, L1 {val['l1']:.4f}, "
                  f"KL {val['kl']:.3g} nats/element", flush=True)
        checkpoint(epoch, 0)
        stopped = stopped or should_stop()

    # ---------------------------------------------------------------- final metrics
    metrics = None
    if info.is_main:
        if not out.has_checkpoint():  # e.g. limits already reached before the first step
            checkpoint(epoch, start_step)
        if test_set is None:
            test_set = open_dataset(cfg.dataset, "test", cfg.test_size, cfg.data_root)
        test_source = image_source(test_set, device, cfg.num_workers)
        latents = set_scale_factor(model, train_source, cfg.scale_sample, cfg.seed)
        test = reconstruction_stats(model, test_source)  # fp32, whatever the training used
        metrics = {
            "psnr": test["psnr"],
            "psnr_std": test["psnr_std"],
            "mse": test["mse"],
            "l1": test["l1"],
            "kl_per_element": test["kl"],
            "n_test": test["n"],
            "scale_factor": latents["scale_factor"],
            "latent_std": latents["std"],
            "latent_mean": latents["mean"],
            "latent_channel_mean": latents["channel_mean"],
            "latent_channel_std": latents["channel_std"],
            "latent_shape": list(latent_shape),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": stopwatch.elapsed(),
            "device": str(device),
            "world_size": info.world_size,
            "amp": cfg.amp,
            "epochs": global_step / spe,
            "steps": global_step,
            "dataset": cfg.dataset,
            "train_size": n,
            "batch_size": batch,
            "lr": cfg.lr,
            "train_img_per_s": session_steps * batch / step_seconds if step_seconds else None,
        }
        save_model(out.path, model, metrics=metrics)
        print(f"done: {global_step} steps, test PSNR {test['psnr']:.2f} dB, "
              f"scale factor {latents['scale_factor']:.4g}, latent {latent_shape} → {out.path}")
    barrier(info)
    return metrics


# =========================================================================== command line
def int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_common_arguments(p: argparse.ArgumentParser, d, out_help: str) -> None:
    """Options every trainer shares: budget, batch, optimiser, device, data sizes, logging."""
    S = argparse.SUPPRESS
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
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES, default=S,
                   help=f"cosine decay over the budget, or constant (default {d.lr_schedule})")
    p.add_argument("--amp", choices=AMP_MODES, default=S,
                   help=f"bf16 autocast: ~1.8x faster on CPUs with avx512_bf16 (default {d.amp})")
    p.add_argument("--device", default=S,
                   help="cpu, cuda, cuda:N, or auto = CUDA if available (default cpu)")
    p.add_argument("--seed", type=int, default=S, help=f"random seed (default {d.seed})")
    p.add_argument("--train-size", dest="train_size", type=int, default=S,
                   help="use only the first N training images")
    p.add_argument("--eval-size", dest="eval_size", type=int, default=S,
                   help=f"validation images for the per-epoch validation (default {d.eval_size})")
    p.add_argument("--test-size", dest="test_size", type=int, default=S,
                   help="test images for metrics.json (default: the whole test split)")
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
    p.add_argument("--out", default=S, help=out_help)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m playground.train autoencoder``. Unset options keep the
    checkpoint's values on --resume (and the defaults shown otherwise)."""
    d = AutoencoderTrainConfig()
    S = argparse.SUPPRESS
    p.add_argument("--latent-size", dest="latent_size", type=int, default=S,
                   help=f"side of the spatial latent, e.g. 16 (16×16×C) or 8 (default {d.latent_size})")
    p.add_argument("--latent-channels", dest="latent_channels", type=int, default=S,
                   help=f"channels of the latent (default {d.latent_channels})")
    p.add_argument("--channels", type=int_tuple, default=S,
                   help="width per resolution level, 64×64 first, comma separated "
                        "(default 16,32,64 for latent 16; 16,32,64,128 for latent 8)")
    p.add_argument("--res-blocks", dest="num_res_blocks", type=int, default=S,
                   help=f"residual blocks per level below 64×64 (default {d.num_res_blocks})")
    p.add_argument("--kl-weight", dest="kl_weight", type=float, default=S,
                   help=f"KL weight per latent element (default {d.kl_weight:g})")
    p.add_argument("--recon-loss", dest="recon_loss", choices=RECON_LOSSES, default=S,
                   help=f"reconstruction loss (default {d.recon_loss})")
    p.add_argument("--dataset", choices=("synthfaces", "celeba"), default=S,
                   help=f"training data (default {d.dataset})")
    p.add_argument("--scale-sample", dest="scale_sample", type=int, default=S,
                   help=f"training images used to measure the latent scale (default {d.scale_sample})")
    add_common_arguments(p, d, "run folder (default runs/autoencoder-<h>x<w>x<C>-<dataset>)")


def main(args: argparse.Namespace) -> int:
    train_autoencoder(config_from_args(AutoencoderTrainConfig, args), resume=args.resume)
    return 0
