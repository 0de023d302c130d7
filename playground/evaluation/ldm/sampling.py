"""Sampling from the LDM pipeline in batches and keeping only what the judge makes of the images."""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from playground.diffusion import draw_noise
from playground.training import mix_seed


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr counting images (a no-op bar when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False,
                file=sys.stderr, dynamic_ncols=True)


def initial_noise(pipeline, n: int, seed: int) -> torch.Tensor:
    """x_T (n, C, h, w) of the pipeline's x_t shape, drawn on the CPU from ``seed``."""
    return draw_noise((n, *pipeline.sample_shape), torch.Generator().manual_seed(int(seed)))


@dataclass
class SampleSet:
    """What the judge made of a set of generated images (the images are not kept)."""

    features: np.ndarray  # (N, F) float64 judge features
    attributes: dict[str, np.ndarray]  # attribute name → (N,) uint8 hard predictions
    seconds: float  # wall time of the pipeline.sample calls (denoising + decoding), judge excluded
    cpu_seconds: float  # CPU time of this process in those calls (robust to other processes' load)


@torch.no_grad()
def judge_images(judge, images: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Judge features (N, F) and hard attributes (name → (N,) uint8) of images (N, 3, 64, 64)
    in [0, 1], from one pass through the judge."""
    from playground.models.judge import attribute_probabilities

    device = next(judge.parameters()).device
    judge.eval()
    feats = judge.features(images.to(device=device, dtype=torch.float32).clamp(0, 1))
    probs = attribute_probabilities(judge.factors_from_heads(judge.heads(feats)))
    attrs = {k: (v > 0.5).to(torch.uint8).cpu().numpy() for k, v in probs.items()}
    return feats.double().cpu().numpy(), attrs


def sample_and_judge(pipeline, judge, prompts: Sequence[str], x_T: torch.Tensor, *,
                     guidance: float, sampler: str, steps: int, eta: float, seed: int,
                     batch_size: int, desc: str = "", progress: bool = True) -> SampleSet:
    """Sample one image per prompt from the matching row of x_T, in batches, and judge them.

    Args:
        pipeline: a `playground.pipelines.latent_diffusion.LatentDiffusion`.
        prompts: N prompts, one per sample.
        x_T: (N, C, h, w) starting latents.
        guidance, sampler, steps, eta: passed on to ``pipeline.sample``.
        seed: batch b draws its sampler noise (η > 0, DDPM) from ``mix_seed(seed, b)``.
    Only the ``pipeline.sample`` calls are timed (wall clock and this process's CPU time).
    """
    if len(prompts) != len(x_T):
        raise ValueError(f"{len(prompts)} prompts for {len(x_T)} starting latents")
    feats, attrs, seconds, cpu_seconds = [], [], 0.0, 0.0
    with progress_bar(len(prompts), desc, progress) as bar:
        for b, start in enumerate(range(0, len(prompts), batch_size)):
            stop = start + batch_size
            t0, c0 = time.perf_counter(), time.process_time()
            images = pipeline.sample(list(prompts[start:stop]), guidance=guidance, sampler=sampler,
                                     steps=steps, eta=eta, seed=mix_seed(seed, b),
                                     x_T=x_T[start:stop])  # (B, 3, 64, 64) in [0, 1]
            seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0
            f, a = judge_images(judge, images)
            feats.append(f)
            attrs.append(a)
            bar.update(len(images))
    return SampleSet(features=np.concatenate(feats),
                     attributes={k: np.concatenate([a[k] for a in attrs]) for k in attrs[0]},
                     seconds=seconds, cpu_seconds=cpu_seconds)
