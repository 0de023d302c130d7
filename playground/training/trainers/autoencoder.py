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

The loop itself (resume, checkpoints, logging, time budget, stop requests, final save) and the
generic helpers (`cosine_lr`, `config_from_args`, ...) live in `playground.training`.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from playground.models.autoencoder import AutoencoderConfig, KLAutoencoder, psnr
from playground.models.losses import kl_normal
from playground.store.checkpoints import resolve_model_dir, runs_dir
from playground.store.files import read_json
from playground.training import (
    DistInfo,
    GracefulStop,
    StartAndSpeed,
    TrainHooks,
    TrainLoop,
    add_common_arguments,
    all_reduce_sum,
    autocast,
    check_run_options,
    config_from_args,
    image_source,
    int_tuple,
    mix_seed,
    open_dataset,
    run_trainer,
    shard,
)

PROBE_FACES = 512  # validation faces of the quality probe (the learning curves)

HELP = ("first-stage autoencoder for latent diffusion (64×64 faces ↔ a spatial latent, "
        "e.g. 16×16×4)")

RECON_LOSSES = ("l1", "mse")


@dataclass
class AutoencoderTrainConfig(StartAndSpeed):
    """One autoencoder training run (saved in train_state.json as "args")."""

    latent_size: int = 16  # side of the latent: 16 → 16×16×4, 8 → 8×8×4
    latent_channels: int = 4  # channels of the latent
    channels: tuple[int, ...] | None = None  # width per level, 64×64 first (None = by latent size)
    num_res_blocks: int = 1  # residual blocks per level below 64×64
    decoder_extra_blocks: int = 0  # more residual blocks per decoder level, 64×64 included
    # (each starts as the identity, so --init from a shallower decoder starts where it was)
    kl_weight: float = 1e-6  # weight of the per-element KL against the per-element recon loss
    recon_loss: str = "l1"  # "l1" (sharper edges) or "mse" (what PSNR measures)
    # train the decoder only (with --init): the encoder and the scale factor stay the init's,
    # so the latents a shipped U-Net was trained on stay exact and the run may ship alone
    freeze_encoder: bool = False
    dataset: str = "synthfaces"  # "synthfaces" (generated here) or "celeba" (your own copy)
    data_root: str | None = None  # CelebA: folder containing celeba/; SynthFaces: cache folder
    epochs: int | None = None  # stop after this many epochs (10 if no minutes/max_steps given)
    minutes: float | None = None  # stop after this much training time, summed over resumes
    max_steps: int | None = None  # stop after this many optimizer steps in total (quick runs)
    batch_size: int = 64  # global batch, split evenly across DDP processes
    lr: float = 1e-3  # Adam learning rate (peak of the cosine schedule)
    lr_schedule: str = "cosine"  # "cosine" (to lr_min_ratio · lr at the end of the budget) or "constant"
    lr_min_ratio: float = 0.05  # final learning rate of the cosine schedule, as a fraction of lr
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
    probe_judge: str | None = "judge"  # judge of the small-detail probe (None: PSNR only)
    MODEL_KIND: ClassVar[str] = "autoencoder"
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("latent_channels", "latent_size", "channels", "num_res_blocks",
                                               "decoder_extra_blocks")

    def __post_init__(self):
        if self.channels is not None:
            self.channels = tuple(int(c) for c in self.channels)
        check_run_options(self, counts=("batch_size", "log_every", "scale_sample"),
                          choices={"recon_loss": RECON_LOSSES})
        self.model_config()  # validates latent_size / channels now, with a clear message

    def model_config(self) -> AutoencoderConfig:
        return AutoencoderConfig(latent_channels=self.latent_channels,
                                 latent_size=self.latent_size, channels=self.channels,
                                 num_res_blocks=self.num_res_blocks,
                                 decoder_extra_blocks=self.decoder_extra_blocks,
                                 kl_weight=self.kl_weight)

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        s, c = self.latent_size, self.latent_channels
        return runs_dir() / f"autoencoder-{s}x{s}x{c}-{self.dataset}"


# Changing these would make a resumed run a different run.
FIXED_ON_RESUME = ("latent_size", "latent_channels", "channels", "num_res_blocks",
                   "decoder_extra_blocks", "kl_weight",
                   "recon_loss", "dataset", "batch_size", "seed", "train_size", "freeze_encoder")


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


def saved_scale_factor(folder: Path) -> float:
    """The scale factor in the config.json of a saved autoencoder (or of a run's model)."""
    return float(read_json(Path(folder) / "config.json")["scale_factor"])


def set_scale_factor(model: KLAutoencoder, source, n: int, seed: int = 0) -> dict[str, Any]:
    """Measure the latent statistics on `n` images and store 1 / std in ``model.config``."""
    stats = latent_statistics(model, source, n, seed)
    model.config.scale_factor = stats["scale_factor"]
    return stats


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
    return run_trainer(cfg, stop_event, lambda info, device, stop: _train(
        cfg, info, device, resume, train_set, val_set, test_set, stop))


def _train(cfg: AutoencoderTrainConfig, info: DistInfo, device: torch.device, resume: bool,
           train_set, val_set, test_set, stop: GracefulStop):
    if cfg.freeze_encoder and not (cfg.init or resume):
        raise ValueError("--freeze-encoder keeps the latents of a trained autoencoder: give it "
                         "one with --init NAME (a frozen random encoder would teach nothing)")
    loop = TrainLoop(cfg, info, device, stop, resume)
    if test_set is None and val_set is not None:
        test_set = val_set
    train_set, val_set, train_source, val_source = loop.open_data(train_set, val_set, cfg.dataset)
    loop.set_data(len(train_source), default_epochs=10)

    def build():
        model = KLAutoencoder(cfg.model_config()).to(device)
        if cfg.freeze_encoder:
            model.encoder.requires_grad_(False)  # no gradient reaches it: its backward is skipped
        return model, torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                       lr=cfg.lr)

    model = loop.setup_model(build, FIXED_ON_RESUME)
    latent_shape = model.config.latent_shape
    if cfg.freeze_encoder:
        # the init's scale factor, not one re-measured on the (fp16-rounded) encoder: equal
        # latents to the bit for the U-Net; a resumed run kept it in its config
        kept = loop.out.path if loop.resume and loop.has_checkpoint else resolve_model_dir(cfg.init)
        model.config.scale_factor = saved_scale_factor(kept)
    # every checkpoint's model is loadable: with a scale factor measured on a few images
    hooks = TrainHooks(before_save_model=None if cfg.freeze_encoder else
                       lambda: set_scale_factor(model, train_source, 256, cfg.seed))

    def step(x, idx, epoch, step_in_epoch):
        g = torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, step_in_epoch))
        eps = shard(torch.randn((loop.batch, *latent_shape), generator=g), info).to(device)
        with autocast(device, loop.amp):
            recon, mean, logvar = loop.net(x, eps=eps)
        losses = autoencoder_loss(recon, x, mean, logvar, cfg.kl_weight, cfg.recon_loss)
        with torch.no_grad():
            batch_psnr = psnr(recon.detach().float().clamp(0, 1), x).mean()
        return losses["loss"], torch.stack([losses["loss"].detach(), losses["recon"].detach(),
                                            losses["kl"].detach(), batch_psnr])

    def validate(epoch):
        val = reconstruction_stats(model, val_source, info, amp=loop.amp)
        loop.out.log({"type": "val", "step": loop.global_step, "epoch": epoch,
                      "psnr": val["psnr"], "mse": val["mse"], "l1": val["l1"], "kl": val["kl"],
                      "elapsed": loop.elapsed()})
        if info.is_main:
            print(f"epoch {epoch}: val PSNR {val['psnr']:.2f} dB, L1 {val['l1']:.4f}, "
                  f"KL {val['kl']:.3g} nats/element", flush=True)

    probe = None
    if info.is_main and cfg.probe_minutes > 0:
        from playground.evaluation import quality

        x_probe, probe_attributes, _ = quality.probe_batch(val_set, device, PROBE_FACES)
        judge = quality.load_judge(cfg.probe_judge, device) if probe_attributes else None

        def probe() -> dict[str, float]:
            """PSNR and the judge's small-detail accuracy of the reconstructions."""
            scores = quality.reconstruction_probe(model, judge, x_probe, probe_attributes or {})
            return {k: v for k, v in scores.items() if isinstance(v, float)}

    loop.run(train_source, step, ("loss", "recon", "kl", "psnr"), validate=validate, log_lr=True,
             postfix=lambda m, img_s: dict(recon=f"{m['recon']:.4f}", psnr=f"{m['psnr']:.1f}",
                                           img_s=f"{img_s:.0f}"), probe=probe, hooks=hooks)

    def final():
        nonlocal test_set
        if test_set is None:
            test_set = open_dataset(cfg.dataset, "test", cfg.test_size, cfg.data_root)
        test_source = image_source(test_set, device, cfg.num_workers)
        latents = latent_statistics(model, train_source, cfg.scale_sample, cfg.seed)
        if not cfg.freeze_encoder:
            model.config.scale_factor = latents["scale_factor"]
        test = reconstruction_stats(model, test_source)  # fp32, whatever the training used
        metrics = {
            "psnr": test["psnr"],
            "psnr_std": test["psnr_std"],
            "mse": test["mse"],
            "l1": test["l1"],
            "kl_per_element": test["kl"],
            "n_test": test["n"],
            "scale_factor": model.config.scale_factor,
            "latent_std": latents["std"],
            "latent_mean": latents["mean"],
            "latent_channel_mean": latents["channel_mean"],
            "latent_channel_std": latents["channel_std"],
            "latent_shape": list(latent_shape),
            "parameters": sum(p.numel() for p in model.parameters()),
            **loop.run_metrics(),
        }
        return metrics, (f"done: {loop.global_step} steps, test PSNR {test['psnr']:.2f} dB, "
                         f"scale factor {model.config.scale_factor:.4g}, latent {latent_shape} "
                         f"→ {loop.out.path}")

    return loop.finish(final)


# =========================================================================== command line
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
    p.add_argument("--decoder-extra-blocks", dest="decoder_extra_blocks", type=int, default=S,
                   help=f"more residual blocks per decoder level, 64×64 included, each starting "
                        f"as the identity (default {d.decoder_extra_blocks})")
    p.add_argument("--kl-weight", dest="kl_weight", type=float, default=S,
                   help=f"KL weight per latent element (default {d.kl_weight:g})")
    p.add_argument("--recon-loss", dest="recon_loss", choices=RECON_LOSSES, default=S,
                   help=f"reconstruction loss (default {d.recon_loss})")
    p.add_argument("--dataset", choices=("synthfaces", "celeba"), default=S,
                   help=f"training data (default {d.dataset})")
    p.add_argument("--freeze-encoder", dest="freeze_encoder", action="store_true", default=S,
                   help="train the decoder only (with --init: the latents a shipped U-Net reads "
                        "stay exact, so the run may ship alone)")
    p.add_argument("--scale-sample", dest="scale_sample", type=int, default=S,
                   help=f"training images used to measure the latent scale (default {d.scale_sample})")
    add_common_arguments(p, d, "run folder (default runs/autoencoder-<h>x<w>x<C>-<dataset>)")


def main(args: argparse.Namespace) -> int:
    train_autoencoder(config_from_args(AutoencoderTrainConfig, args), resume=args.resume)
    return 0
