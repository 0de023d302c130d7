"""The LDM beside other set-ups: FD-judge against the β-VAEs' prior samples, and training speed
on the latent against the same U-Net on pixels."""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import numpy as np
import torch

from playground.evaluation.ldm.config import UNCONDITIONAL_PROMPT, EvalConfig
from playground.evaluation.ldm.sampling import (
    SampleSet,
    initial_noise,
    judge_images,
    sample_and_judge,
)
from playground.evaluation.ldm.scores import fd_to_reference
from playground.store.checkpoints import load_model
from playground.training import mix_seed

PIXEL_CLAIM = 8.0  # the seed's claim: training on the latent ≈ 8× faster than on pixels


def training_captions(n: int, seed: int) -> list[str]:
    """Captions of n training faces drawn at random (seeded): the LDM's prior over prompts.

    A text-conditional model's own distribution of faces is p(x) = Σ_c p(c) · p(x | c); drawing
    c from the training captions samples it, as class-conditional models are scored with labels
    drawn from the training distribution. Training faces, not test ones: the reference is the
    test split, whose own captions would hand the model its attributes."""
    from playground.data.captions import captions_for_dataset
    from playground.data.synthfaces import (
        SPLIT_SEEDS,
        SPLIT_SIZES,
        attributes_from_factors,
        generate_factors,
    )

    size = SPLIT_SIZES["train"]
    if not 0 < n <= size:
        raise ValueError(f"n must be in 1..{size} (the training faces), got {n}")
    rows = np.random.default_rng(mix_seed(seed, 5)).choice(size, size=n, replace=False)
    # the factors alone: a caption needs no pixels, so nothing is rendered
    factors = {k: v[rows] for k, v in generate_factors(size, SPLIT_SEEDS["train"]).items()}
    return captions_for_dataset(attributes_from_factors(factors), factors, seed=seed)


LDM_CONDITIONS = ("unprompted", "training captions")  # the LDM's two sample sets of the FD table


def ldm_samples(pipeline, judge, condition: str, n: int, cfg: EvalConfig) -> SampleSet:
    """n judged DDIM-``fast_steps`` samples at w = 1 from the seed's x_T: from the empty prompt
    ("unprompted") or from the captions of n random training faces ("training captions").
    Seeded by ``cfg.seed`` alone, so every caller (this table, ``ship --if-better``) draws the
    same set from the same model."""
    if condition not in LDM_CONDITIONS:
        raise ValueError(f"condition must be one of {LDM_CONDITIONS}, got {condition!r}")
    prompts = ([UNCONDITIONAL_PROMPT] * n if condition == "unprompted"
               else training_captions(n, cfg.seed))
    return sample_and_judge(pipeline, judge, prompts, initial_noise(pipeline, n, cfg.seed),
                            guidance=1.0, sampler="ddim", steps=cfg.fast_steps, eta=0.0,
                            seed=mix_seed(cfg.seed, 1), batch_size=cfg.batch_size,
                            desc=f"LDM DDIM-{cfg.fast_steps} {condition}", progress=cfg.progress)


def _below_every_vae(fd: float, vae_fds: list[float]) -> dict:
    return {"ldm_fd": fd, "best_vae_fd": min(vae_fds) if vae_fds else None,
            "met": all(fd < v for v in vae_fds) if vae_fds else None}


@torch.no_grad()
def evaluate_vae_vs_ldm(pipeline, judge, reference, n: int, cfg: EvalConfig,
                        cache: dict | None = None, ldm_name: str = "ldm") -> dict:
    """FD-judge of n prior samples of each β-VAE and of two sets of n LDM samples (DDIM-
    ``fast_steps``, w = 1, the table's x_T): from the empty prompt (the unconditional set of the
    table, reused when the table ran in this process), and from the captions of n random
    training faces (`training_captions`). The empty prompt is the condition-dropout branch, which
    trained on a share ``cond_drop`` of the steps; the captioned set is the model's whole p(x)."""
    rows = []
    for b, name in enumerate(cfg.vae_models):
        try:
            vae = load_model(name, device=cfg.device)
        except (ValueError, FileNotFoundError) as error:  # not trained here: say so, go on
            print(f"  {name}: skipped ({error})", file=sys.stderr)
            continue
        generator = torch.Generator().manual_seed(mix_seed(cfg.seed, 4, b))
        feats = []
        for start in range(0, n, cfg.batch_size):
            z = torch.randn(min(cfg.batch_size, n - start), vae.config.latent_dim,
                            generator=generator)  # z ~ N(0, I), drawn on the CPU
            feats.append(judge_images(judge, vae.decode(z.to(cfg.device)))[0])
        fd = fd_to_reference(np.concatenate(feats), reference)
        rows.append({"model": name, "kind": "vae", "beta": float(vae.config.beta), "fd": fd,
                     "n": n, "sampler": "z ~ N(0, I), decoded"})
        print(f"  {name:<12} FD-judge {fd:9.4f}", file=sys.stderr)
    cached = {"unprompted": (cache or {}).get(("uncond", cfg.fast_steps, n, cfg.seed)),
              "training captions": None}
    wording = {"unprompted": 'prompt "" at w=1',
               "training captions": f"captions of {n} random training faces at w=1"}
    fd_by_model = {r["model"]: r["fd"] for r in rows}
    for condition in LDM_CONDITIONS:
        # the table's unprompted samples when it ran in this process: the same x_T, the same set
        samples = cached[condition] or ldm_samples(pipeline, judge, condition, n, cfg)
        fd = fd_to_reference(samples.features, reference)
        rows.append({"model": ldm_name, "kind": "ldm", "condition": condition, "fd": fd, "n": n,
                     "sampler": f"DDIM-{cfg.fast_steps} (η=0), {wording[condition]}"})
        key = ldm_name if condition == "unprompted" else f"{ldm_name} ({condition})"
        fd_by_model[key] = fd
        print(f"  {key:<12} FD-judge {fd:9.4f}", file=sys.stderr)
    vae_fds = [r["fd"] for r in rows if r["kind"] == "vae"]
    ldm_fd = {r["condition"]: r["fd"] for r in rows if r["kind"] == "ldm"}
    return {"vae_vs_ldm": rows, "fd_by_model": fd_by_model,
            "targets": {"vae_vs_ldm": {
                "ldm_below_every_vae": _below_every_vae(ldm_fd["unprompted"], vae_fds),
                "ldm_below_every_vae_with_training_captions":
                    _below_every_vae(ldm_fd["training captions"], vae_fds)}}}


def unet_config_for(config, shape: Sequence[int]):
    """The same U-Net config for inputs of ``shape`` (C, H, W): channels and size replaced
    (and the space, for 64×64 RGB pixels)."""
    pixel = tuple(shape) == (3, 64, 64)
    changes = {"in_channels": int(shape[0]), "sample_size": int(shape[1])}
    if pixel:
        changes.update(space="pixel", autoencoder="")
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if k in names})


def training_context_shape(pipeline, n: int = 64) -> tuple[int, int]:
    """(L, D) of the text context of a training batch: the trainer's encoding of the captions of
    n SynthFaces training faces, trimmed after the batch's last real token as the trainer trims."""
    from playground.data.captions import captions_for_dataset
    from playground.data.synthfaces import SPLIT_SEEDS, attributes_from_factors, generate_factors
    from playground.training.trainers.ldm import encode_prompts

    factors = generate_factors(n, SPLIT_SEEDS["train"])
    captions = captions_for_dataset(attributes_from_factors(factors), factors, seed=0)
    with torch.no_grad():
        context, _ = encode_prompts(pipeline.clip, captions, pipeline.device,
                                    words=pipeline.text_words)
    return int(context.shape[1]), int(context.shape[2])


def evaluate_pixel_vs_latent(pipeline, cfg: EvalConfig) -> dict:
    """Training img/s of the LDM's U-Net config on 3×64×64 pixels and on its latent, measured one
    after the other (latent first) with the same batch, steps and context."""
    from playground.training.trainers.ldm_throughput import measure_train_throughput

    if pipeline.autoencoder is None:
        raise ValueError("pixel vs latent needs a latent diffusion model (this one works on pixels)")
    latent_shape = tuple(int(v) for v in pipeline.autoencoder.latent_shape)  # (C, h, w)
    pixel_shape = (3, 64, 64)
    context_shape = training_context_shape(pipeline)  # (L, D)
    speeds = {}
    for label, shape in (("latent", latent_shape), ("pixel", pixel_shape)):
        speeds[label] = float(measure_train_throughput(
            unet_config_for(pipeline.unet.config, shape), shape, context_shape,
            cfg.pixel_batch_size, cfg.pixel_steps, cfg.amp, torch.device(cfg.device)))
        print(f"  {label:<6} {shape}: {speeds[label]:9.1f} img/s", file=sys.stderr)
    ratio = speeds["latent"] / speeds["pixel"]
    return {"pixel_vs_latent": {
        "pixel_img_s": speeds["pixel"], "latent_img_s": speeds["latent"], "ratio": ratio,
        "pixel_shape": list(pixel_shape), "latent_shape": list(latent_shape),
        "context_shape": list(context_shape), "batch_size": cfg.pixel_batch_size,
        "steps": cfg.pixel_steps, "amp": cfg.amp, "device": cfg.device,
        "threads": torch.get_num_threads()},
        "targets": {"pixel_vs_latent": {"ratio": ratio, "claim": PIXEL_CLAIM,
                                        "met": ratio >= PIXEL_CLAIM}}}
