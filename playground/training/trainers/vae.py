"""Train a β-VAE: ``python -m playground.train vae --beta 4 [--minutes 30 | --epochs 10]``.

Objective per image (nats): BCE(x, decoder(z)) + β · KL(q(z|x) ‖ N(0, I)), z = μ + σ·ε.
Adam, a fixed global batch (split across DDP processes), a seeded permutation per epoch and
noise ε seeded by (seed, epoch, step): a resumed run replays exactly what an uninterrupted
run would have done, and a DDP run the same updates as one process with the same batch.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from playground.evaluation.metrics import active_dims
from playground.models.losses import bce_loss, beta_vae_loss, kl_normal
from playground.models.vae import BetaVAE, VAEConfig
from playground.store.checkpoints import runs_dir
from playground.training import (
    DistInfo,
    GracefulStop,
    StartAndSpeed,
    TrainLoop,
    add_common_arguments,
    all_reduce_sum,
    autocast,
    check_run_options,
    config_from_args,
    image_source,
    int_tuple,
    mix_seed,
    run_trainer,
    shard,
)

HELP = "β-VAE on 64×64 faces (conv encoder → 128-d Gaussian z → deconv decoder)"

PROBE_FACES = 512  # validation faces of the quality probe (the learning curves)


@dataclass
class VAETrainConfig(StartAndSpeed):
    """One β-VAE training run (saved in train_state.json as "args")."""

    beta: float = 4.0  # KL weight β (1 = plain VAE)
    # KL warm-up (Bowman et al. 2016): the KL weight rises linearly from β/N to β over the
    # run's first N steps, so the decoder learns to use z before the KL term closes it; after
    # --init it restarts, which re-opens dimensions a trained VAE had closed (0 = off)
    kl_warmup_steps: int = 0
    dataset: str = "synthfaces"  # "synthfaces" (generated here) or "celeba" (your own copy)
    data_root: str | None = None  # CelebA: folder containing celeba/; SynthFaces: cache folder
    epochs: int | None = None  # stop after this many epochs (10 if no minutes/max_steps given)
    minutes: float | None = None  # stop after this much training time, summed over resumes
    max_steps: int | None = None  # stop after this many optimizer steps in total (quick runs)
    batch_size: int = 128  # global batch, split evenly across DDP processes
    lr: float = 1e-3  # Adam learning rate (the peak, with the cosine schedule)
    # "cosine" (decay to lr_min_ratio · lr at the end of the budget: the README's A/B) or
    # "constant"
    lr_schedule: str = "cosine"
    lr_min_ratio: float = 0.05  # final learning rate of the cosine schedule, as a fraction of lr
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (CUDA if available)
    seed: int = 0  # initial weights, data order and ε noise
    train_size: int | None = None  # use the first N training images (None = the whole split)
    eval_size: int | None = 2048  # first N validation images for the val loss and metrics.json
    latent_dim: int = 128  # size of z
    channels: tuple[int, ...] = (32, 64, 128, 256)  # encoder widths (decoder mirrors them)
    decoder_extra_blocks: int = 0  # residual blocks per decoder resolution, each starting as
    # the identity (so --init from a plain decoder starts where it was)
    full_res_channels: int = 0  # width of a 64×64 head on the logits (0 = none; starts as a no-op)
    decoder_fine_blocks: int = 0  # more residual blocks at the 16×16 and 32×32 decoder levels
    checkpoint_minutes: float = 2.0  # also checkpoint this often within an epoch
    log_every: int = 20  # a "train" line in log.jsonl every N steps
    num_workers: int = 2  # DataLoader workers when images are read from files (CelebA)
    threads: int | None = None  # CPU threads for torch (None = torch's default, all cores)
    progress: bool = True  # tqdm progress bar
    out: str | None = None  # run folder (default: runs/vae-beta<β>-<dataset>)
    probe_judge: str | None = "judge"  # judge model of the quality probe (None: probe without it)
    # what a run checkpointed before a field existed did (it resumes the same way)
    LEGACY_ARGS: ClassVar[dict[str, Any]] = {"lr_schedule": "constant"}
    MODEL_KIND: ClassVar[str] = "vae"
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("latent_dim", "channels", "decoder_extra_blocks",
                                             "full_res_channels", "decoder_fine_blocks")

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        check_run_options(self)
        if self.kl_warmup_steps < 0:
            raise ValueError(f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")

    def model_config(self) -> VAEConfig:
        return VAEConfig(latent_dim=self.latent_dim, channels=self.channels, beta=self.beta,
                         decoder_extra_blocks=self.decoder_extra_blocks,
                         full_res_channels=self.full_res_channels,
                         decoder_fine_blocks=self.decoder_fine_blocks)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else runs_dir() / f"vae-beta{self.beta:g}-{self.dataset}"


# Changing these would make a resumed run a different run.
FIXED_ON_RESUME = ("beta", "dataset", "batch_size", "lr", "seed", "train_size", "latent_dim",
                   "channels", "decoder_extra_blocks", "full_res_channels", "decoder_fine_blocks",
                   "kl_warmup_steps",
                   "lr_schedule", "lr_min_ratio")


def kl_weight(beta: float, step: int, warmup_steps: int) -> float:
    """The KL weight of optimizer step `step` (0-based): β·(step + 1)/N for the first N steps
    of a KL warm-up, β after it (and always, when N = 0)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return beta
    return beta * (step + 1) / warmup_steps


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
    dataset's factors; they belong in `playground.evaluation.vae` and can be merged in here.
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
        "active_dims": active_dims(kl_per_dim),
        "elbo": -(recon_bce + kl),
        "loss": recon_bce + beta * kl,
        "n_eval": n,
    }


def quality_probe(model: BetaVAE, val_set, device: torch.device, judge: str | None,
                  n: int = PROBE_FACES):
    """The probe of the learning curves: on the first `n` validation faces, BCE and KL at μ,
    the PSNR and the judge's small-detail accuracy of decode(μ), and the best |r| of one μ
    dimension with light and the MIG (when the data has factors)."""
    from playground.evaluation import quality

    x, attributes, factors = quality.probe_batch(val_set, device, n)
    judge_model = quality.load_judge(judge, device) if attributes is not None else None

    def probe() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            mu, logvar = model.encode(x)
            bce = bce_loss(model.decode_logits(mu), x).item()
            kl = kl_normal(mu, logvar).sum(1).mean().item()
        scores = {"probe_bce_mu": bce, "probe_kl": kl,
                  **quality.reconstruction_probe(model, judge_model, x, attributes or {})}
        if factors is not None and "light" in factors:
            scores.update(quality.vae_factor_scores(model, x, factors))
        return scores

    return probe


# =========================================================================== training
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
    return run_trainer(cfg, stop_event, lambda info, device, stop: _train(
        cfg, info, device, resume, train_set, val_set, stop))


def _train(cfg, info, device, resume, train_set, val_set, stop: GracefulStop):
    loop = TrainLoop(cfg, info, device, stop, resume)
    train_set, val_set, train_source, val_source = loop.open_data(train_set, val_set, cfg.dataset)
    loop.set_data(len(train_source), default_epochs=10)

    def build():
        model = BetaVAE(cfg.model_config()).to(device)
        return model, torch.optim.Adam(model.parameters(), lr=cfg.lr)

    model = loop.setup_model(build, FIXED_ON_RESUME)

    def step(x, idx, epoch, step_in_epoch):
        g = torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, step_in_epoch))
        eps = shard(torch.randn(loop.batch, cfg.latent_dim, generator=g), info).to(device)
        with autocast(device, loop.amp):
            logits, mu, logvar, _ = loop.net(x, eps=eps)
        # the loss in fp32: a sum over 12,288 pixels and exp(log σ²) need the precision
        weight = kl_weight(cfg.beta, loop.global_step, cfg.kl_warmup_steps)
        losses = beta_vae_loss(logits.float(), x, mu.float(), logvar.float(), weight)
        return losses["loss"], torch.stack([losses["loss"], losses["recon"], losses["kl"]]).detach()

    def validate(epoch):
        val = validation_loss(model, val_source, cfg.beta, info, cfg.seed)
        loop.out.log({"type": "val", "step": loop.global_step, "epoch": epoch, **val,
                      "elapsed": loop.elapsed()})
        if info.is_main:
            print(f"epoch {epoch}: val loss {val['loss']:.2f}  recon {val['recon']:.2f}  "
                  f"kl {val['kl']:.2f} nats/image", flush=True)

    loop.run(train_source, step, ("loss", "recon", "kl"), validate=validate, log_lr=True,
             postfix=lambda m, img_s: dict(loss=f"{m['loss']:.1f}", recon=f"{m['recon']:.1f}",
                                           kl=f"{m['kl']:.1f}", img_s=f"{img_s:.0f}"),
             probe=(quality_probe(model, val_set, device, cfg.probe_judge)
                    if info.is_main and cfg.probe_minutes > 0 else None))

    def final():
        metrics = final_metrics(model, val_set, beta=cfg.beta, device=device, seed=cfg.seed,
                                num_workers=cfg.num_workers)
        metrics.update(loop.run_metrics())
        return metrics, (f"done: {loop.global_step} steps, recon {metrics['recon_bce']:.2f}, "
                         f"kl {metrics['kl']:.2f} nats/image, {metrics['active_dims']} active dims"
                         f" → {loop.out.path}")

    return loop.finish(final)


# =========================================================================== command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m playground.train vae``. Unset options keep the checkpoint's
    values on --resume (and the defaults shown otherwise)."""
    d = VAETrainConfig()
    S = argparse.SUPPRESS
    p.add_argument("--beta", type=float, default=S, help=f"KL weight β, 1 = plain VAE (default {d.beta:g})")
    p.add_argument("--kl-warmup-steps", dest="kl_warmup_steps", type=int, default=S,
                   help="raise the KL weight linearly to β over the run's first N steps, "
                        "after --init too (default 0: off)")
    p.add_argument("--dataset", choices=("synthfaces", "celeba"), default=S,
                   help=f"training data (default {d.dataset})")
    p.add_argument("--latent-dim", dest="latent_dim", type=int, default=S,
                   help=f"size of z (default {d.latent_dim})")
    p.add_argument("--channels", type=int_tuple, default=S,
                   help="encoder widths, comma separated (default 32,64,128,256)")
    p.add_argument("--decoder-extra-blocks", dest="decoder_extra_blocks", type=int, default=S,
                   help=f"residual blocks per decoder resolution, each starting as the identity "
                        f"(default {d.decoder_extra_blocks})")
    p.add_argument("--full-res-channels", dest="full_res_channels", type=int, default=S,
                   help=f"width of a 64x64 head that corrects the logits, starting as a no-op "
                        f"(default {d.full_res_channels}: none)")
    p.add_argument("--decoder-fine-blocks", dest="decoder_fine_blocks", type=int, default=S,
                   help=f"more residual blocks at the 16x16 and 32x32 decoder resolutions only, "
                        f"each starting as the identity (default {d.decoder_fine_blocks})")
    add_common_arguments(p, d, "run folder (default runs/vae-beta<β>-<dataset>)",
                         eval_help="the val loss and metrics", test_size=False)


def main(args: argparse.Namespace) -> int:
    train_vae(config_from_args(VAETrainConfig, args), resume=args.resume)
    return 0
