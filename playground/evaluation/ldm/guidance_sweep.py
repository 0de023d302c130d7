"""The guidance sweep: attribute accuracy and diversity of prompted samples per guidance scale,
the autoencoder's ceiling on that accuracy, and the issue's targets read off the sweep."""
from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch

from playground.evaluation.ldm.config import EvalConfig, PromptTarget
from playground.evaluation.ldm.sampling import initial_noise, judge_images, sample_and_judge
from playground.evaluation.ldm.scores import mean_pairwise_distance
from playground.training import mix_seed

# The targets.
ACCURACY_MIN = 0.9  # attribute accuracy at w = ACCURACY_AT
ACCURACY_AT = 7.5
ACCURACY_FROM = 1.0  # accuracy must rise from this w to ACCURACY_AT


def evaluate_guidance(pipeline, judge, k: int, cfg: EvalConfig) -> dict:
    """The guidance sweep (package docstring), k samples per prompt and scale; sample j of every
    prompt and scale starts from the same x_T[j]."""
    if k < 2:
        raise ValueError("the guidance sweep needs at least 2 samples per prompt (diversity)")
    prompts = cfg.guidance_prompts
    x_T = initial_noise(pipeline, k, mix_seed(cfg.seed, 2)).repeat(len(prompts), 1, 1, 1)
    texts = [p.prompt for p in prompts for _ in range(k)]  # prompt i: rows i·k .. i·k + k − 1
    rows = []
    per_prompt = [{"prompt": p.prompt, "targets": p.attributes, "w": list(cfg.guidance_scales),
                   "accuracy": [], "diversity": []} for p in prompts]
    for w in cfg.guidance_scales:
        result = sample_and_judge(pipeline, judge, texts, x_T, guidance=float(w), sampler="ddim",
                                  steps=cfg.fast_steps, eta=0.0, seed=mix_seed(cfg.seed, 3),
                                  batch_size=cfg.batch_size, desc=f"guidance w={w:g}",
                                  progress=cfg.progress)
        for i, p in enumerate(prompts):
            mine = slice(i * k, (i + 1) * k)
            correct = np.ones(k, dtype=bool)
            for attribute, expected in p.targets:
                correct &= result.attributes[attribute][mine] == expected
            per_prompt[i]["accuracy"].append(float(correct.mean()))
            per_prompt[i]["diversity"].append(mean_pairwise_distance(result.features[mine]))
        rows.append({"w": float(w),
                     "accuracy": float(np.mean([p["accuracy"][-1] for p in per_prompt])),
                     "diversity": float(np.mean([p["diversity"][-1] for p in per_prompt])),
                     "seconds": result.seconds, "n": len(texts)})
        print(f"  w={w:<5g} accuracy {rows[-1]['accuracy']:.3f}   diversity "
              f"{rows[-1]['diversity']:.4f}   {result.seconds:7.1f} s", file=sys.stderr)
    ceiling = autoencoder_ceiling(pipeline, judge, prompts, n=cfg.ceiling_faces)
    if ceiling is not None:
        print(f"  ceiling: the judge reads the prompts' attributes on {ceiling['reconstructed']:.3f} "
              f"of autoencoder reconstructions of real faces ({ceiling['original']:.3f} of the "
              "originals)", file=sys.stderr)
    return {"guidance_sweep": rows, "guidance_per_prompt": per_prompt,
            "guidance_ceiling": ceiling,
            "targets": {"guidance_sweep": guidance_targets(rows)}}


@torch.no_grad()
def autoencoder_ceiling(pipeline, judge, prompts: Sequence[PromptTarget], n: int = 2000,
                        batch_size: int = 250) -> dict | None:
    """How well the judge reads each prompt's attributes on *real* faces that have them, after
    the round trip through the first-stage autoencoder: the accuracy a perfect latent model
    would score (its samples are decoded the same way). None for a pixel-space model.

    For each prompt: among the first `n` test faces whose true attributes match the prompt's
    targets, the fraction whose reconstruction the judge reads as matching too (and the same
    on the original faces: the judge's own accuracy)."""
    if getattr(pipeline, "autoencoder", None) is None:
        return None
    from playground.data.synthfaces import SynthFacesDataset

    faces = SynthFacesDataset("test", n=n)
    images = faces.image_tensor()
    recon_attrs: dict[str, list] = {}
    orig_attrs: dict[str, list] = {}
    for chunk in torch.split(images, batch_size):
        x = chunk.float() / 255
        _, a_orig = judge_images(judge, x)
        _, a_rec = judge_images(judge, pipeline.decode(pipeline.encode(x)))
        for k in a_rec:
            recon_attrs.setdefault(k, []).append(a_rec[k])
            orig_attrs.setdefault(k, []).append(a_orig[k])
    recon = {k: np.concatenate(v) for k, v in recon_attrs.items()}
    orig = {k: np.concatenate(v) for k, v in orig_attrs.items()}
    per_prompt = []
    for p in prompts:
        has = np.ones(len(images), dtype=bool)
        for attribute, expected in p.targets:
            has &= np.asarray(faces.attributes[attribute][:len(images)]) == expected
        if not has.any():
            continue
        ok_rec, ok_orig = has.copy(), has.copy()
        for attribute, expected in p.targets:
            ok_rec &= recon[attribute] == expected
            ok_orig &= orig[attribute] == expected
        per_prompt.append({"prompt": p.prompt, "faces": int(has.sum()),
                           "reconstructed": float(ok_rec[has].mean()),
                           "original": float(ok_orig[has].mean())})
    return {"per_prompt": per_prompt, "n_test_faces": int(len(images)),
            "reconstructed": float(np.mean([r["reconstructed"] for r in per_prompt])),
            "original": float(np.mean([r["original"] for r in per_prompt]))}


def guidance_targets(rows: list[dict]) -> dict:
    """The issue's guidance targets, computed from the rows: booleans with their numbers."""
    by_w = {r["w"]: r for r in rows}
    out: dict = {}
    if ACCURACY_AT in by_w:
        acc = by_w[ACCURACY_AT]["accuracy"]
        out["accuracy_at_7.5"] = {"accuracy": acc, "limit": ACCURACY_MIN, "met": acc >= ACCURACY_MIN}
    rising = [w for w in sorted(by_w) if ACCURACY_FROM <= w <= ACCURACY_AT]
    if len(rising) >= 2 and rising[0] == ACCURACY_FROM and rising[-1] == ACCURACY_AT:
        accs = [by_w[w]["accuracy"] for w in rising]
        out["accuracy_rising_1_to_7.5"] = {
            "w": rising, "accuracy": accs, "met": accs[-1] > accs[0],
            "monotone": all(b >= a for a, b in zip(accs, accs[1:]))}
    ws = sorted(by_w)
    if len(ws) >= 2:
        divs = [by_w[w]["diversity"] for w in ws]
        out["diversity_falling"] = {
            "w": ws, "diversity": divs,
            "met": all(b < a for a, b in zip(divs, divs[1:])),  # falls at every step of w
            "last_below_first": divs[-1] < divs[0]}
    return out
