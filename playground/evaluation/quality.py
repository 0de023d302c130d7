"""The headline number of each model: what a student sees, measured one way everywhere.

The same functions serve the probes during training (a fixed held-out batch, every few
minutes), ``python -m playground.training.ship --if-better`` (the run against the shipped model on the
same test faces) and the learning curves.

| kind        | headline (higher is better)                                                  |
|-------------|------------------------------------------------------------------------------|
| vae, β < 10 | ``small_detail_acc``: the judge reads the small details on decode(μ)          |
| vae, β ≥ 10 | ``light_abs_r``: best |Pearson r| of one μ dimension with the light factor    |
| autoencoder | ``small_detail_acc`` on its reconstructions                                  |
| judge       | ``attribute_acc``: its attributes against the truth, all 18                   |
| clip        | ``zero_shot_auc``: zero-shot ROC AUC, mean over attributes                    |
| ldm         | ``prompt_acc``: every named attribute found by the judge, DDIM-20 at w = 7.5;  |
|             | within its noise, ``caption_fd`` decides (lower is better)                    |

"Small details" are the attributes a blurry reconstruction loses first: smile, glasses,
lipstick, beards, open mouth, brows, narrow eyes (`SMALL_DETAILS`).

A headline can reach its ceiling before the model stops improving: the U-Net's prompt accuracy
reached 1.0 while its samples were still further from the faces than a β-VAE's. Such a headline
has a second number (`SECOND_NUMBERS`) that decides whenever the two headlines differ by no
more than their noise (`improves`): for the U-Net, the FD-judge of its samples from training
captions, the number of the FD target itself.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from playground.store.checkpoints import load_model, resolve_model_dir
from playground.store.files import read_json

SMALL_DETAILS = ("Smiling", "Eyeglasses", "Wearing_Lipstick", "Mustache", "Goatee", "No_Beard",
                 "Mouth_Slightly_Open", "Arched_Eyebrows", "Narrow_Eyes")
DISENTANGLED_BETA = 10.0  # from this β on, a β-VAE is judged by its light dimension
HEADLINE_FACES = 1000  # test faces of a ship-time comparison (the same for both models)
CAPTION_FD_SAMPLES = 1000  # as the FD target's table (evaluation.ldm --only vae): equal numbers
# headline → (second number, lower is better?, headline difference within the noise)
SECOND_NUMBERS = {
    # 96 probe samples on shared x_T: a difference of up to 3 faces is within the noise
    "prompt_acc": ("caption_fd", True, 3 / 96),
}


@torch.no_grad()
def judge_attributes(judge, images: torch.Tensor, batch_size: int = 250) -> dict[str, np.ndarray]:
    """Hard attribute predictions (name → (N,) bool) of float images (N, 3, 64, 64)."""
    judge.eval()
    parts = [judge.predict_attributes(b.clamp(0, 1), hard=True) for b in images.split(batch_size)]
    return {k: torch.cat([p[k] for p in parts]).bool().cpu().numpy() for k in parts[0]}


def attribute_accuracy(judge, images: torch.Tensor, attributes: dict[str, Any],
                       names: tuple[str, ...] = SMALL_DETAILS) -> dict[str, Any]:
    """How often the judge reads each of `names` on `images` as the truth says.

    Returns:
        ``acc`` (mean over the names) and ``per_attribute`` (name → accuracy).
    """
    predicted = judge_attributes(judge, images)
    n = images.shape[0]
    per = {a: float((predicted[a] == np.asarray(attributes[a])[:n].astype(bool)).mean())
           for a in names}
    return {"acc": float(np.mean(list(per.values()))), "per_attribute": per}


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """decode(μ) of a β-VAE, or the autoencoder's reconstruction: (N, 3, 64, 64) in [0, 1]."""
    model.eval()
    out = []
    for b in x.split(batch_size):
        if hasattr(model, "reconstruct"):
            out.append(model.reconstruct(b).float().clamp(0, 1))
        else:
            mu, _ = model.encode(b)
            out.append(model.decode(mu).float())
    return torch.cat(out)


def reconstruction_probe(model, judge, x: torch.Tensor, attributes: dict[str, Any]) -> dict:
    """PSNR and small-detail accuracy of `model`'s reconstructions of `x` (judge optional)."""
    from playground.models.autoencoder import psnr

    recon = reconstruct(model, x)
    out = {"psnr": float(psnr(recon.clamp(0, 1), x).mean())}
    if judge is not None:
        scores = attribute_accuracy(judge, recon, attributes)
        out["small_detail_acc"] = scores["acc"]
        out["small_detail_per_attribute"] = scores["per_attribute"]
    return out


@torch.no_grad()
def posterior_means(vae, x: torch.Tensor) -> np.ndarray:
    """μ(x) of the faces `x` (N, 3, 64, 64) in [0, 1] → float32 (N, D), in batches of 250."""
    vae.eval()
    return torch.cat([vae.encode(b)[0] for b in x.split(250)]).float().cpu().numpy()


def vae_factor_scores(vae, x: torch.Tensor, factors: dict[str, np.ndarray]) -> dict:
    """Best |r| of one μ dimension with light, and MIG, on the faces `x`."""
    return factor_scores(posterior_means(vae, x), factors)


def factor_scores(mu: np.ndarray, factors: dict[str, np.ndarray]) -> dict:
    """Best |r| of one dimension of `mu` (N, D) with light, and MIG, against the first N
    entries of each factor."""
    from playground.data.synthfaces import CATEGORICAL_FACTORS
    from playground.evaluation import metrics

    n = mu.shape[0]
    factors = {k: np.asarray(v)[:n] for k, v in factors.items()}
    categorical = {k: v for k, v in CATEGORICAL_FACTORS.items() if k in factors}
    mig, _ = metrics.mutual_info_gap(mu, factors, discrete=set(categorical))
    r = metrics.factor_correlations(mu, factors, categorical=categorical)
    return {"light_abs_r": float(r["light"]["abs_r"]), "mig": float(mig)}


def probe_batch(dataset, device: torch.device, n: int):
    """The first `n` faces of `dataset` as a float batch on `device`, with the dataset's
    attributes and factors (None where it has none): the fixed held-out batch of a probe."""
    from playground.training import image_source

    source = image_source(dataset, device)
    x = next(source.iterate([torch.arange(min(n, len(source)))]))
    return x, getattr(dataset, "attributes", None), getattr(dataset, "factors", None)


def load_judge(name: str | None, device: torch.device):
    """The judge of the probes, or None (said once) when there is none to load."""
    from playground.store.checkpoints import ModelNotFoundError

    if not name:
        return None
    try:
        return load_model(name, device)
    except (ModelNotFoundError, ValueError) as e:
        print(f"quality probe without the judge: {e}", flush=True)
        return None


def headline_key(kind: str, config) -> str:
    """The name of `kind`'s headline number (see the module table)."""
    if kind == "vae":
        return "light_abs_r" if config.beta >= DISENTANGLED_BETA else "small_detail_acc"
    keys = {"autoencoder": "small_detail_acc", "judge": "attribute_acc", "clip": "zero_shot_auc",
            "unet": "prompt_acc"}
    if kind not in keys:
        raise ValueError(f"no headline number for a {kind!r} model")
    return keys[kind]


def test_faces(n: int = HEADLINE_FACES):
    """The first `n` SynthFaces test faces: (float images, attributes, factors)."""
    from playground.data.synthfaces import SynthFacesDataset

    test = SynthFacesDataset("test", n=n)
    from playground.data.images import images_to_tensor

    return images_to_tensor(test.images), test.attributes, test.factors


def measure(name_or_path: str, judge: str = "judge", n: int = HEADLINE_FACES) -> dict[str, Any]:
    """Every quality number of a saved model that its headline needs, plus ``headline`` (its
    key) and ``value``. Test faces are the first `n` of the test split, so two models
    measured with the same `n` are compared on the same faces."""
    folder = resolve_model_dir(name_or_path)
    kind = read_json(folder / "config.json")["kind"]
    model = load_model(folder)
    key = headline_key(kind, model.config)
    out: dict[str, Any] = {"kind": kind, "headline": key, "n": n}
    if kind == "unet":
        from playground.pipelines.latent_diffusion import load_pipeline

        pipeline, judge_model = load_pipeline(str(folder)), load_model(judge)
        out.update(ldm_prompt_accuracy(pipeline, judge_model))
        out["caption_fd"] = ldm_caption_fd(pipeline, judge_model)
    elif kind == "clip":
        from playground.data.synthfaces import SynthFacesDataset
        from playground.evaluation.clip import evaluate_clip

        scores = evaluate_clip(model, SynthFacesDataset("test", n=n))
        out.update({k: v for k, v in scores.items() if k.startswith("zero_shot")})
    else:
        x, attributes, factors = test_faces(n)
        judge_model = load_model(judge)
        if kind == "judge":
            from playground.data.synthfaces import ATTRIBUTE_NAMES

            scores = attribute_accuracy(model, x, attributes, tuple(ATTRIBUTE_NAMES))
            out["attribute_acc"] = scores["acc"]
        else:
            out.update(reconstruction_probe(model, judge_model, x, attributes))
        if kind == "vae":
            out.update(vae_factor_scores(model, x, factors))
    out["value"] = out[key]
    return out


def ldm_prompt_accuracy(pipeline, judge_model, k: int = 8, steps: int = 20,
                        guidance: float = 7.5, seed: int = 0, prompts=None,
                        per_prompt: bool = False) -> dict[str, Any]:
    """Prompt accuracy of a latent-diffusion pipeline on the guidance sweep's 12 prompts (or
    `prompts`, a sequence of `PromptTarget`), `k` samples each, DDIM-`steps` at scale
    `guidance` (a cheap cut of the full sweep): the share of samples on which the judge finds
    every attribute the prompt names (with `per_prompt`, ``prompt_acc_per_prompt`` gives each
    prompt's share)."""
    from playground.evaluation.ldm.config import EvalConfig
    from playground.evaluation.ldm.sampling import initial_noise, sample_and_judge

    prompts = tuple(prompts or EvalConfig().guidance_prompts)
    x_T = initial_noise(pipeline, k, seed).repeat(len(prompts), 1, 1, 1)
    texts = [p.prompt for p in prompts for _ in range(k)]
    result = sample_and_judge(pipeline, judge_model, texts, x_T, guidance=guidance,
                              sampler="ddim", steps=steps, eta=0.0, seed=seed, batch_size=16,
                              progress=False)
    correct = []
    for i, p in enumerate(prompts):
        ok = np.ones(k, dtype=bool)
        for attribute, expected in p.targets:
            ok &= result.attributes[attribute][i * k:(i + 1) * k] == expected
        correct.append(ok.mean())
    out = {"prompt_acc": float(np.mean(correct)), "prompt_steps": steps,
           "prompt_guidance": guidance, "prompt_samples": k * len(prompts)}
    if per_prompt:
        out["prompt_acc_per_prompt"] = {p.prompt: float(c) for p, c in zip(prompts, correct)}
    return out


@torch.no_grad()
def ldm_caption_fd(pipeline, judge_model, n: int = CAPTION_FD_SAMPLES, cfg=None) -> float:
    """FD-judge of n DDIM-50 samples at w = 1 from the captions of n random training faces
    against the test split: the "training captions" row of the LDM's FD table (its
    `EvalConfig`, default settings unless `cfg` is given), so the two numbers agree."""
    from playground.evaluation.ldm.config import EvalConfig
    from playground.evaluation.ldm.model_comparisons import ldm_samples
    from playground.evaluation.ldm.scores import fd_to_reference, reference_stats

    cfg = cfg or EvalConfig(device=str(next(judge_model.parameters()).device), progress=False)
    samples = ldm_samples(pipeline, judge_model, "training captions", n, cfg)
    reference = reference_stats(judge_model, cfg.reference_split, cfg.reference_n)
    return fd_to_reference(samples.features, reference)


def improves(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether `measure`'s scores `new` beat `old` (the same kind of model): a higher headline,
    or, for a headline with a second number, that number when the headlines are within the
    noise of each other."""
    second = SECOND_NUMBERS.get(new["headline"])
    if second is None or second[0] not in new or second[0] not in old:
        return new["value"] > old["value"]
    key, lower_is_better, noise = second
    if abs(new["value"] - old["value"]) > noise:
        return new["value"] > old["value"]
    return new[key] < old[key] if lower_is_better else new[key] > old[key]


def record(folder, scores: dict[str, Any]) -> dict[str, Any]:
    """Write `measure`'s scores into ``<folder>/metrics.json`` as its ``quality`` entry
    (what the campaign reads to skip models at target). Returns the metrics."""
    import json
    from pathlib import Path

    from playground.store.files import atomic_write_bytes

    path = Path(folder) / "metrics.json"
    metrics = read_json(path) if path.is_file() else {}
    metrics["quality"] = {k: v for k, v in scores.items() if k != "kind"}
    atomic_write_bytes(path, (json.dumps(metrics, indent=2) + "\n").encode("utf-8"))
    return metrics
