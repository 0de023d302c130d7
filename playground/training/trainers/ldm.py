"""Train the latent-diffusion U-Net:
``python -m playground.train ldm --autoencoder autoencoder --clip clip [--minutes 70] [--amp bf16]``.

Objective (Ho et al. 2020, in the latent space of Rombach et al. 2022), per batch:

    z_0 = autoencoder.encode(x)            scaled latents (~unit variance), the posterior MEAN
    t ~ U{0, …, T−1},  ε ~ N(0, I)         seeded by (seed, epoch, step)
    z_t = sqrt(ᾱ_t) z_0 + sqrt(1 − ᾱ_t) ε  (NoiseSchedule.q_sample)
    c   = CLIP text-token states of the caption, or of "" with probability cond_drop
    L   = mean ‖ε − ε_θ(z_t, t, c)‖²

- The frozen autoencoder encodes every training image ONCE at the start, through the mean of
  q(z | x) (deterministic; with this autoencoder's tiny KL weight σ is negligible next to the
  diffusion noise); the latents stay in memory. ``--space pixel`` trains the same U-Net on the
  64×64 images scaled to [-1, 1] instead (no autoencoder).
- ``--text-words``: the context is the final states followed by each word's input embedding
  (2D wide). The small CLIP's final states blur the small-detail words, and a U-Net trained on
  them ignores those words (flipping "glasses" in a caption changes its ε-MSE by 1e-5, blond
  hair by 1e-2); `warm_start` gives the new inputs zero weights, so a warm start from a U-Net
  without them begins exactly as that U-Net.
- Captions are redrawn every epoch (``captions_for_dataset(..., seed=epoch)``) and encoded per
  batch by the frozen CLIP (``tokenize`` → ``encode_text_tokens`` + ``text_mask``). Padding
  columns past the longest caption of the batch are cut (they are masked out anyway). With
  probability ``cond_drop`` (seeded per epoch and image) a caption becomes the null prompt "",
  so one network learns ε(z_t, c) and ε(z_t, ∅) for classifier-free guidance.
- EMA weights: after each optimizer step ema ← d·ema + (1−d)·θ with d = min(ema_decay,
  (1+n)/(10+n)) (n = updates so far); they are part of the train state, so a resumed run is
  exact, and they are what model.safetensors holds (the shipped, loadable model).
- model.safetensors + config.json hold a `LatentUNet` (kind "unet"); its `UNetConfig` names
  the ``autoencoder`` and ``text_encoder`` (as bare model names when they were found in
  trained/ or runs/) and the noise ``schedule``, so a loader can rebuild the pipeline.
- metrics.json: final train loss, val loss (EMA and raw weights) on a fixed val batch
  (seeded t and ε, full captions), img/s, steps, epochs, parameters, latent statistics.

Adam with a cosine learning-rate decay over the budget, seeded batches per epoch (exact
resume), periodic atomic checkpoints, ``--minutes`` budgets, DDP: see `playground.training`.
The run's options are `ldm_config.LDMTrainConfig`; the latents in memory and their disk cache
are `ldm_latents`.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from playground.diffusion.schedule import SCHEDULE_KINDS, NoiseSchedule
from playground.models.unet import SPACES, LatentUNet, count_parameters
from playground.store.checkpoints import load_model, resolve_model_dir, runs_dir, trained_dir
from playground.store.disk_cache import cache_dir
from playground.training import (
    DistInfo,
    GracefulStop,
    TrainHooks,
    TrainLoop,
    add_common_arguments,
    autocast,
    config_from_args,
    int_tuple,
    mix_seed,
    open_on_all_ranks,
    read_log,
    run_trainer,
    shard,
)
from playground.training.ema import EMA
from playground.training.trainers.ldm_config import FIXED_ON_RESUME, LOSS_WEIGHTINGS, LDMTrainConfig
from playground.training.trainers.ldm_latents import InMemoryBatches, cached_latents, encode_images

HELP = ("latent diffusion U-Net: ε-prediction on autoencoder latents, cross-attention to CLIP "
        "text tokens, EMA weights")


# =========================================================================== loss
def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights of an ε-prediction model (Hang et al. 2023): (N,) float32.

    SNR_t = ᾱ_t / (1 − ᾱ_t); the ε-MSE of step t is weighted min(SNR_t, γ) / SNR_t, so the
    nearly clean steps (huge SNR, easy, and conflicting with the noisy ones) count less.
    """
    abar = alphas_cumprod.to(t.device, torch.float64)[t]
    snr = abar / (1 - abar)
    return (snr.clamp(max=gamma) / snr).float()


# =========================================================================== frozen models
@torch.no_grad()
def encode_prompts(text_encoder, captions: Sequence[str], device: torch.device,
                   amp: str = "none", trim: bool = True,
                   words: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token text states of the frozen text encoder (with `words`, each followed by its
    word's input embedding: `TextImageCLIP.encode_text_tokens`).

    Returns:
        context (B, L, D) float32 and mask (B, L) bool (True = real token). With `trim`, the
        columns after the last real token of the batch are cut (the U-Net masks them anyway,
        so this changes nothing but the cost).
    """
    tokens = text_encoder.tokenize(list(captions)).to(device)
    with autocast(device, amp):
        context = text_encoder.encode_text_tokens(tokens, words=words)
    mask = text_encoder.text_mask(tokens).to(device).bool()
    if trim:
        used = mask.any(dim=0).nonzero()
        length = int(used.max()) + 1 if used.numel() else 1
        context, mask = context[:, :length], mask[:, :length]
    return context.float(), mask


def _model_name(arg: str) -> str:
    """A bare model name for config.json when `arg` is a folder inside trained/ or runs/ that
    the name finds again (so the shipped config does not depend on where it was trained); else
    the folder's absolute path (runs/clip while trained/clip exists: the name would find the
    shipped one)."""
    path = resolve_model_dir(arg)
    for root in (trained_dir(), runs_dir()):
        try:
            if path.parent == root.resolve() and resolve_model_dir(path.name) == path:
                return path.name
        except (OSError, ValueError):
            continue
    return str(path)


def _frozen(model):
    """Eval mode, no gradients: the autoencoder and the text encoder only serve the U-Net."""
    model.eval()
    if isinstance(model, nn.Module):
        model.requires_grad_(False)
    return model


# =========================================================================== training
def train_ldm(cfg: LDMTrainConfig, *, resume: bool = False, train_set=None, val_set=None,
              autoencoder=None, text_encoder=None, stop_event=None) -> dict[str, Any] | None:
    """Train (or, with `resume`, continue) a `LatentUNet` in ``cfg.out_dir()``.

    `train_set` / `val_set` (objects with ``.images`` uint8 (N, 64, 64, 3), ``.attributes`` and
    ``.factors``, like `SynthFacesDataset`) replace the SynthFaces splits; `autoencoder` /
    `text_encoder` (objects with the `KLAutoencoder` / `TextImageCLIP` methods used here)
    replace the models named by ``cfg.autoencoder`` / ``cfg.clip`` (whose names are still what
    config.json records). Returns the metrics written to metrics.json (rank 0; None elsewhere).
    """
    return run_trainer(cfg, stop_event, lambda info, device, stop: _train(
        cfg, info, device, resume, train_set, val_set, autoencoder, text_encoder, stop))


def _train(cfg: LDMTrainConfig, info: DistInfo, device: torch.device, resume: bool,
           train_set, val_set, autoencoder, text_encoder, stop: GracefulStop):
    loop = TrainLoop(cfg, info, device, stop, resume,
                     rng_scheme="order, t and ε seeded by (seed, epoch, step); captions and "
                                "their dropping by (seed, epoch)")
    if train_set is None:
        train_set = open_on_all_ranks(info, cfg.dataset, "train", cfg.train_size, cfg.data_root)
    if val_set is None:
        val_set = open_on_all_ranks(info, cfg.dataset, "val", cfg.eval_size, cfg.data_root)
    pixel = cfg.space == "pixel"

    # frozen models and their names for config.json
    ae_name = ""
    if not pixel:
        if autoencoder is None:
            autoencoder = load_model(cfg.autoencoder, device)
            ae_name = _model_name(cfg.autoencoder)
        else:
            ae_name = cfg.autoencoder
        autoencoder = _frozen(autoencoder).to(device)
    if text_encoder is None:
        text_encoder = load_model(cfg.clip, device)
        clip_name = _model_name(cfg.clip)
    else:
        clip_name = cfg.clip
    text_encoder = _frozen(text_encoder)
    if isinstance(text_encoder, nn.Module):
        text_encoder = text_encoder.to(device)
    context_dim = int(encode_prompts(text_encoder, [""], device, words=cfg.text_words)[0].shape[-1])

    # data: latents (or uint8 pixels) in memory, captions per epoch
    t0 = time.perf_counter()
    if pixel:
        train_x = torch.from_numpy(np.asarray(train_set.images)).permute(0, 3, 1, 2).contiguous()
        val_x = InMemoryBatches(torch.from_numpy(np.asarray(val_set.images)).permute(0, 3, 1, 2),
                                device).batch(torch.arange(len(val_set.images)))
    else:
        if info.is_main:
            print(f"encoding {len(train_set.images)} training images with the autoencoder "
                  "(or reading them from the latent cache) ...", flush=True)
        cache = cache_dir(cfg.data_root) / "latents" if cfg.cache_latents else None
        train_x, from_cache = cached_latents(autoencoder, train_set.images, device, cache)
        if info.is_main and from_cache:
            print("latents read from the cache (same autoencoder weights, same images)", flush=True)
        val_x = encode_images(autoencoder, val_set.images, device).to(device)
    encode_seconds = time.perf_counter() - t0
    source = InMemoryBatches(train_x, device)
    sample = source.batch(torch.arange(min(len(source), 4096))).float()  # x_0 as the U-Net sees it
    data_std, data_mean = sample.std().item(), sample.mean().item()
    del sample
    loop.set_data(len(source), default_epochs=10)
    sample_shape = tuple(train_x.shape[1:])

    schedule = NoiseSchedule(cfg.schedule_config())
    T = cfg.num_timesteps
    unet_config = cfg.model_config(context_dim, sample_shape, ae_name, clip_name)

    ema: EMA | None = None

    def build():
        nonlocal ema
        model = LatentUNet(unet_config).to(device)
        ema = EMA(model, cfg.ema_decay)
        return model, torch.optim.Adam(model.parameters(), lr=cfg.lr)

    model = loop.setup_model(build, FIXED_ON_RESUME)
    if loop.resumed_extra:
        ema.load_state_tensors(loop.resumed_extra)
    elif cfg.init:  # the EMA starts from the warm-started weights, not the random ones,
        ema = EMA(model, cfg.ema_decay)  # at its full decay: they are an average already
        ema.num_updates = int(loop.prior.get("steps", 0))
    elif resume and loop.has_checkpoint:
        raise ValueError(f"{loop.out.path}'s checkpoint has no EMA weights")
    hooks = TrainHooks(after_step=lambda: ema.update(model), extra_state=ema.state_tensors,
                       model_to_save=lambda: ema.model)  # model.safetensors holds the EMA

    # captions (and which of them are dropped) for one epoch, computed once per epoch
    from playground.data.captions import captions_for_dataset
    cache: dict[int, tuple[list[str], torch.Tensor]] = {}

    def epoch_captions(epoch: int):
        if epoch not in cache:
            cache.clear()
            caps = captions_for_dataset(train_set.attributes, train_set.factors, seed=epoch)
            g = torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, 0xD20F))
            cache[epoch] = (caps, torch.rand(len(caps), generator=g) < cfg.cond_drop)
        return cache[epoch]

    def diffusion_loss(net_, x0, t, eps, context, mask, weighted=True):
        x_t = schedule.q_sample(x0, t, eps)
        with autocast(device, loop.amp):
            eps_pred = net_(x_t, t, context, mask)
        per_sample = (eps_pred.float() - eps).pow(2).flatten(1).mean(1)  # (B,)
        if weighted and cfg.loss_weighting == "min_snr":
            per_sample = per_sample * min_snr_weights(schedule.alphas_cumprod, t, cfg.min_snr_gamma)
        return per_sample.mean()

    def step(x0, idx, epoch, step_in_epoch):
        g = torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, step_in_epoch))
        t = shard(torch.randint(0, T, (loop.batch,), generator=g), info).to(device)
        eps = shard(torch.randn((loop.batch, *sample_shape), generator=g), info).to(device)
        caps, drop = epoch_captions(epoch)
        texts = ["" if drop[i] else caps[i] for i in idx.tolist()]
        context, mask = encode_prompts(text_encoder, texts, device, loop.amp, words=cfg.text_words)
        loss = diffusion_loss(loop.net, x0, t, eps, context, mask)
        return loss, torch.stack([loss.detach(), (drop[idx].float().mean()).to(device)])

    # the fixed val batch: full captions (seed 0), seeded t and ε
    val_caps = captions_for_dataset(val_set.attributes, val_set.factors, seed=0)
    gv = torch.Generator().manual_seed(mix_seed(cfg.seed, 0x7A1))
    val_t = torch.randint(0, T, (len(val_caps),), generator=gv).to(device)
    val_eps = torch.randn((len(val_caps), *sample_shape), generator=gv).to(device)

    @torch.no_grad()
    def val_loss(m: nn.Module) -> float:
        was_training = m.training
        m.eval()
        total, n = 0.0, 0
        for sl in torch.split(torch.arange(len(val_caps)), 64):
            context, mask = encode_prompts(text_encoder, [val_caps[i] for i in sl], device,
                                           loop.amp, words=cfg.text_words)
            loss = diffusion_loss(m, val_x[sl.to(val_x.device)], val_t[sl], val_eps[sl],
                                  context, mask, weighted=False)  # plain ε-MSE: comparable
            total += loss.item() * len(sl)
            n += len(sl)
        m.train(was_training)
        return total / n

    def validate(epoch):
        if not info.is_main:
            return
        v_ema, v_raw = val_loss(ema.model), val_loss(model)
        loop.out.log({"type": "val", "step": loop.global_step, "epoch": epoch,
                      "val_loss": v_ema, "val_loss_raw": v_raw, "elapsed": loop.elapsed()})
        print(f"epoch {epoch}: val loss {v_ema:.4f} (EMA), {v_raw:.4f} (raw)", flush=True)

    def probe() -> dict[str, float]:
        """The learning curves' point: EMA val ε-MSE; when the data is latent and a judge is
        there, prompt accuracy (2 samples per prompt) and the FD-judge of `probe_fd_samples`
        DDIM-20 samples from training captions against the validation faces (small n: biased
        upwards, so compare along the curve, not with the n = 1,000 FD of the ship)."""
        scores = {"val_loss": val_loss(ema.model)}
        if probe_judge is not None:
            from playground.evaluation.ldm.config import EvalConfig
            from playground.evaluation.quality import ldm_caption_fd, ldm_prompt_accuracy
            from playground.pipelines.latent_diffusion import LatentDiffusion

            pipeline = LatentDiffusion(unet=ema.model, autoencoder=autoencoder,
                                       clip=text_encoder, schedule=schedule)
            scores.update(ldm_prompt_accuracy(pipeline, probe_judge, k=2))
            if cfg.probe_fd_samples:
                fd_cfg = EvalConfig(fast_steps=20, reference_split="val", reference_n=2000,
                                    device=str(device), progress=False)
                scores["probe_caption_fd"] = ldm_caption_fd(pipeline, probe_judge,
                                                            cfg.probe_fd_samples, fd_cfg)
        return scores

    probe_judge = None
    if info.is_main and cfg.probe_minutes > 0 and not pixel:
        from playground.evaluation.quality import load_judge

        probe_judge = load_judge(cfg.probe_judge, device)
    loop.run(source, step, ("loss", "dropped"), validate=validate, log_lr=True,
             postfix=lambda m, img_s: dict(loss=f"{m['loss']:.4f}", img_s=f"{img_s:.0f}"),
             probe=probe if info.is_main else None, hooks=hooks)

    def final():
        train_lines = [r for r in read_log(loop.out.path) if r.get("type") == "train"]
        recent = [r["loss"] for r in train_lines[-10:] if "loss" in r]
        v_ema, v_raw = val_loss(ema.model), val_loss(model)
        metrics = {
            "train_loss": float(np.mean(recent)) if recent else None,
            "val_loss": v_ema,
            "val_loss_raw": v_raw,
            "n_val": len(val_caps),
            "parameters": count_parameters(model),
            "space": cfg.space,
            "sample_shape": list(sample_shape),
            "autoencoder": ae_name,
            "text_encoder": clip_name,
            "context_dim": context_dim,
            "cond_drop": cfg.cond_drop,
            "ema_decay": cfg.ema_decay,
            "ema_updates": ema.num_updates,
            "data_std": data_std,
            "data_mean": data_mean,
            "encode_seconds": encode_seconds,
            **loop.run_metrics(),
        }
        return metrics, (f"done: {loop.global_step} steps, val loss {v_ema:.4f} (EMA) "
                         f"→ {loop.out.path}")

    return loop.finish(final)


# =========================================================================== command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m playground.train ldm``. Unset options keep the checkpoint's
    values on --resume (and the defaults shown otherwise)."""
    d = LDMTrainConfig()
    S = argparse.SUPPRESS
    p.add_argument("--autoencoder", default=S,
                   help=f"first-stage autoencoder: model name or folder (default {d.autoencoder})")
    p.add_argument("--clip", default=S,
                   help=f"text encoder (TextImageCLIP): model name or folder (default {d.clip})")
    p.add_argument("--space", choices=SPACES, default=S,
                   help=f"latent (autoencoder latents) or pixel (64×64 images) (default {d.space})")
    p.add_argument("--channels", type=int_tuple, default=S,
                   help=f"U-Net width per level, comma separated (default "
                        f"{','.join(map(str, d.channels))})")
    p.add_argument("--res-blocks", dest="num_res_blocks", type=int, default=S,
                   help=f"ResBlocks per level (default {d.num_res_blocks})")
    p.add_argument("--attention-levels", dest="attention_levels", type=int_tuple, default=S,
                   help=f"levels with attention, 0 = full resolution (default "
                        f"{','.join(map(str, d.attention_levels))})")
    p.add_argument("--head-dim", dest="head_dim", type=int, default=S,
                   help=f"channels per attention head (default {d.head_dim})")
    p.add_argument("--cond-drop", dest="cond_drop", type=float, default=S,
                   help=f"probability of training on the empty prompt (default {d.cond_drop:g})")
    p.add_argument("--ema-decay", dest="ema_decay", type=float, default=S,
                   help=f"EMA decay of the saved weights (default {d.ema_decay:g})")
    p.add_argument("--schedule", choices=SCHEDULE_KINDS, default=S,
                   help=f"noise schedule (default {d.schedule})")
    p.add_argument("--text-words", dest="text_words", action=argparse.BooleanOptionalAction,
                   default=S, help="condition on the CLIP's final text states and the words' own "
                                   "embeddings (a warm start from a U-Net without them begins "
                                   f"as that U-Net) (default {d.text_words})")
    p.add_argument("--no-latent-cache", dest="cache_latents", action="store_false", default=S,
                   help="encode the training images afresh instead of using the latent cache")
    p.add_argument("--loss-weighting", dest="loss_weighting", choices=LOSS_WEIGHTINGS, default=S,
                   help=f"uniform ε-MSE or Min-SNR-γ weighting (default {d.loss_weighting})")
    p.add_argument("--min-snr-gamma", dest="min_snr_gamma", type=float, default=S,
                   help=f"γ of Min-SNR (default {d.min_snr_gamma:g})")
    p.add_argument("--timesteps", dest="num_timesteps", type=int, default=S,
                   help=f"diffusion steps T (default {d.num_timesteps})")
    add_common_arguments(p, d, "run folder (default runs/ldm, or runs/ldm-pixel)",
                         eval_help="the fixed validation batch", test_size=False)


def main(args: argparse.Namespace) -> int:
    train_ldm(config_from_args(LDMTrainConfig, args), resume=args.resume)
    return 0
