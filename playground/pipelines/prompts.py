"""What a prompt asks for, and how well faces follow it (no UI here).

    named_attributes("a smiling man without glasses")   # {"Smiling": 1, "Eyeglasses": 0}
    adherence(judge, images, wanted)                     # share of (face, attribute) found as asked
    for row in guidance_sweep_progressive(pipe, "a bald person", judge=judge): ...

Which attributes a prompt names comes from the caption phrases the models were trained on
(`playground.data.captions`); the judge (`trained/judge`) reads the attributes back from the
faces: adherence is the share it finds as the prompt asked, diversity the mean distance between
its features of every pair of faces. `measured_attribute_accuracy` reads what a shipped U-Net is
known to draw from its metrics.json.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from playground.pipelines.diffusion_inputs import DEFAULT_DDIM_STEPS, check_prompt
from playground.pipelines.latent_diffusion import LatentDiffusion
from playground.store import checkpoints

# Which SynthFaces attributes a prompt names, from the caption generator's own phrases (the
# words the text encoder was trained on). Each cue maps to (attribute, wanted value).
_NEGATORS = r"(?:not|no|without|never)"


@dataclass(frozen=True)
class _Cue:
    pattern: re.Pattern
    attribute: str
    value: int  # 1: the prompt asks for it; 0: asks for its absence
    length: int  # longer cues win where two overlap


def _build_cues() -> list[_Cue]:
    from playground.data import captions
    from playground.data.synthfaces import ATTRIBUTE_NAMES

    raw: list[tuple[str, str, int]] = []  # (regex, attribute, value)

    def add(phrase: str, attribute: str, value: int):
        words = phrase.lower().split()
        variants = [words]
        if words[0] in ("with", "wearing") and len(words) > 1:  # "with a grin" → "a grin"
            words = words[1:]
            variants.append(words)
        if words[0] in ("a", "an", "the") and len(words) > 1:  # "a grin" → "grin"
            variants.append(words[1:])
        for variant in variants:
            raw.append((r"\b" + r"\s+".join(map(re.escape, variant)) + r"\b", attribute,
                        value))

    phrases = captions._PHRASES  # the caption generator's vocabulary (module-private tables)
    hair_colours = captions._HAIR_COLOURS
    negatives = captions._NEGATIVE_PHRASES
    for attribute in ATTRIBUTE_NAMES:
        present, absent = captions.ATTRIBUTE_PHRASES[attribute]
        if attribute == "No_Beard":  # "without a beard" is No_Beard = 1; "a beard" is 0
            for p in ("without a beard", "no beard", "clean-shaven", "clean shaven",
                      "beardless"):
                add(p, attribute, 1)
            for p in ("a beard", "a full beard", "bearded", "beard"):
                add(p, attribute, 0)
            continue
        add(present, attribute, 1)
        add(absent, attribute, 0)
        for slot, options in phrases.get(attribute, {}).items():
            if slot == "prefix":
                continue
            for p in options:
                add(p, attribute, 1)
        for p in negatives.get(attribute, ()):
            add(p, attribute, 0)
        for word in hair_colours.get(attribute, ()):
            # "blond hair", "blond and brown hair", "long wavy blond hair"
            raw.append((rf"\b{re.escape(word)}(?=(?:\s+and\s+[a-z]+)?\s+hair\b)", attribute, 1))
    add("blonde", "Blond_Hair", 1)
    raw.append((r"\bblond\b(?!\s+hair)", "Blond_Hair", 1))  # "a blond woman"
    add("closed mouth", "Mouth_Slightly_Open", 0)
    add("open mouth", "Mouth_Slightly_Open", 1)
    seen, cues = set(), []
    for pattern, attribute, value in raw:
        if pattern in seen:
            continue
        seen.add(pattern)
        cues.append(_Cue(re.compile(pattern), attribute, value, len(pattern)))
    cues.sort(key=lambda c: -c.length)
    return cues


_CUES: list[_Cue] | None = None


def named_attributes(prompt: str) -> dict[str, int]:
    """The SynthFaces attributes a prompt names → {attribute: 1 (wanted) or 0 (unwanted)}.

    Matching uses the caption generator's phrases (`playground.data.captions`: "grinning",
    "with a goatee", "wearing spectacles", "gray hair", "not smiling", "without glasses", …);
    longer phrases win where two overlap ("not wearing a hat" before "a hat"), and a phrase
    right after "not", "no", "without" or "never" counts as asked-to-be-absent. Where a prompt
    names both, the last mention wins. Unknown words are simply not matched.
    """
    global _CUES
    if _CUES is None:
        _CUES = _build_cues()
    text = " ".join(check_prompt(prompt).lower().split())
    taken = np.zeros(len(text) + 1, bool)
    found: list[tuple[int, str, int]] = []  # (position, attribute, value)
    for cue in _CUES:
        for m in cue.pattern.finditer(text):
            start, end = m.span()
            if taken[start:end].any():
                continue
            taken[start:end] = True
            value = cue.value
            if value == 1 and re.search(rf"\b{_NEGATORS}\s+(?:(?:wearing|with|a|an|any|"
                                        r"having)\s+)*$", text[:start]):
                value = 0
            found.append((start, cue.attribute, value))
    result: dict[str, int] = {}
    for _, attribute, value in sorted(found):
        result.pop(attribute, None)
        result[attribute] = value
    return result


@dataclass
class PromptInfo:
    """What the Prompt tab says about a prompt before sampling."""

    attributes: dict[str, int]  # named attributes → wanted value (see `named_attributes`)
    unknown_words: list[str]  # words with tokens the U-Net's text states never had in training
    truncated: bool  # cut at the tokenizer's context length
    empty: bool  # "" (or only spaces): an unconditional sample


def prompt_info(prompt: str, clip: nn.Module | None = None) -> PromptInfo:
    """Attributes, unknown words and truncation of a prompt (the last two need the CLIP)."""
    prompt = check_prompt(prompt)
    unknown, truncated = [], False
    if clip is not None:
        unknown = list(dict.fromkeys(clip.unknown_words(prompt, states=True)))
        truncated = bool(clip.truncated([prompt])[0])
    return PromptInfo(attributes=named_attributes(prompt), unknown_words=unknown,
                      truncated=truncated, empty=not prompt.strip())


DRAWN_POORLY = 0.5  # an attribute the judge finds on fewer of a model's faces is "drawn poorly"
NOTICE_GUIDANCE = 7.5  # the w whose measured accuracy the Prompt tab quotes
SWEEP_GUIDANCE = (1.0, 3.0, 7.5, 12.0)  # the Prompt tab's one-click guidance sweep


def measured_metrics(name: str) -> dict:
    """The shipped model `name`'s metrics.json, or {} when it has none (or no such model)."""
    try:
        return checkpoints.load_metrics(name, allow_paths=False)
    except (ValueError, OSError):
        return {}


def measured_attribute_accuracy(name: str, guidance: float = NOTICE_GUIDANCE) -> dict[str, float]:
    """What the shipped U-Net `name` is known to draw: from its metrics.json guidance sweep
    (`playground.evaluation.ldm`), for each attribute named alone by a sweep prompt, the share of
    faces at guidance `guidance` on which the judge found it as asked → {attribute: share};
    {} when the sweep was not measured."""
    metrics = measured_metrics(name)
    out = {}
    for row in metrics.get("guidance_per_prompt") or []:
        targets, scales = row.get("targets") or {}, row.get("w") or []
        if len(targets) != 1 or guidance not in scales:
            continue
        (attribute, _), = targets.items()
        out[attribute] = float(row["accuracy"][scales.index(guidance)])
    return out


def measured_word_sensitivity(name: str) -> dict[str, float]:
    """How much the shipped U-Net `name` reads each attribute's words: its metrics.json
    ``word_sensitivity`` (`playground.evaluation.ldm.word_sensitivity`), the rise of its ε-MSE
    when a caption says the opposite about the attribute → {attribute: rise}; {} when not
    measured."""
    rows = (measured_metrics(name).get("word_sensitivity") or {}).get("per_attribute") or {}
    return {str(a): float(v) for a, v in rows.items()}


SAMPLER_LABELS = {"ddim": "DDIM", "dpm++": "DPM-Solver++ (2M)"}  # the pipeline's few-step samplers


@dataclass(frozen=True)
class SamplerChoice:
    """How the Prompt tab draws faces with one U-Net, and why."""

    sampler: str  # the pipeline's sampler: "ddim" or "dpm++"
    eta: float  # DDIM's η (1 = DDPM on a stride of the steps)
    steps: int  # the steps that reached the reference FD (the default of the steps slider)
    label: str  # the sampler's name for the notice, e.g. "DPM-Solver++ (2M)"
    why: str  # one sentence: measured, or not


def sampler_for_prompts(name: str) -> SamplerChoice:
    """The sampler that reached DDIM-50's FD-judge with the fewest U-Net evaluations on the
    U-Net `name` under guidance with captions (metrics.json ``solver_frontier["captioned"]``,
    written by ``python -m playground.evaluation.ldm --only frontier --write``); DDIM-50 when
    that was not measured."""
    metrics = measured_metrics(name)
    frontier = (metrics.get("solver_frontier") or {}).get("captioned") or {}
    best, ref = frontier.get("fastest"), frontier.get("reference")
    if not best or not ref or best.get("method") not in SAMPLER_LABELS:
        return SamplerChoice("ddim", 0.0, DEFAULT_DDIM_STEPS, "DDIM",
                             "DDIM η = 0 (this model's samplers' frontier was not measured).")
    eta = float(best.get("eta", 0.0))
    label = "DDPM (η = 1)" if best["method"] == "ddim" and eta == 1.0 else SAMPLER_LABELS[best["method"]]
    if best["saving"] > 1:
        why = (f"{label} with {best['steps']} steps reached DDIM-{ref['steps']}'s FD-judge and "
               f"prompt adherence on captioned prompts at w = 7.5 ({best['fd']:.2f} vs "
               f"{ref['fd']:.2f} on {best.get('n', '?')} samples) with "
               f"{best['saving']:.1f}× fewer U-Net evaluations: the fewest of DDPM, DDIM and "
               "DPM-Solver++ on this model.")
    else:
        why = (f"No sampler reached DDIM-{ref['steps']}'s FD-judge and adherence on captioned "
               "prompts with "
               f"fewer U-Net evaluations on this model; at {best['steps']} steps {label} had "
               "the lowest "
               f"({best['fd']:.2f} vs {ref['fd']:.2f} on {best.get('n', '?')} samples).")
    return SamplerChoice(best["method"], eta, int(best["steps"]), label, why)


# ============================================================================ judge scores
def adherence(judge: nn.Module, images: torch.Tensor, wanted: dict[str, int]) -> dict:
    """How well generated faces follow the attributes a prompt names, by the judge.

    Args:
        judge: a `Judge` (predict_attributes).
        images: float (N, 3, 64, 64) in [0, 1].
        wanted: {attribute: 1 or 0}, e.g. from `named_attributes`.
    Returns:
        {"accuracy": mean over faces and named attributes of [judge's 0/1 call == wanted]
         (None when nothing is named), "per_attribute": {attribute: accuracy}}.
    """
    if not wanted:
        return {"accuracy": None, "per_attribute": {}}
    device = next(judge.parameters()).device
    with torch.no_grad():
        calls = judge.predict_attributes(images.to(device).float(), hard=True)
    per = {}
    for attribute, value in wanted.items():
        if attribute not in calls:
            raise ValueError(f"the judge does not predict {attribute!r}")
        per[attribute] = float((calls[attribute].cpu().long() == int(value)).float().mean())
    return {"accuracy": float(np.mean(list(per.values()))), "per_attribute": per}


def diversity(judge: nn.Module, images: torch.Tensor) -> float | None:
    """Mean pairwise Euclidean distance between the judge features of the faces (None for
    fewer than 2): 0 when all faces are the same; guidance usually lowers it."""
    if images.shape[0] < 2:
        return None
    device = next(judge.parameters()).device
    with torch.no_grad():
        feats = judge.features(images.to(device).float()).double().cpu()  # (N, F)
    dist = torch.cdist(feats, feats)  # (N, N)
    n = feats.shape[0]
    return float(dist.sum() / (n * (n - 1)))


def guidance_sweep_progressive(pipe: LatentDiffusion, prompt: str, *,
                               weights: Sequence[float] = SWEEP_GUIDANCE, n: int = 4,
                               steps: int = DEFAULT_DDIM_STEPS, seed: int = 0,
                               negative_prompt: str = "", judge: nn.Module | None = None
                               ) -> Iterator[dict]:
    """Sample `n` faces of one prompt at each guidance scale (same seed: same x_T for every w)
    and score them; yields one row per w:

        {"w", "images" float (n, 3, 64, 64), "accuracy" (None without a judge or without
         named attributes), "per_attribute", "diversity" (None without a judge), "seconds"}.
    """
    wanted = named_attributes(prompt)
    for w in weights:
        start = time.perf_counter()
        images = pipe.sample([prompt] * n, guidance=w, steps=steps, seed=seed,
                             negative_prompt=negative_prompt)
        seconds = time.perf_counter() - start
        row = {"w": float(w), "images": images, "accuracy": None, "per_attribute": {},
               "diversity": None, "seconds": seconds}
        if judge is not None:
            row.update(adherence(judge, images, wanted))
            row["diversity"] = diversity(judge, images)
        yield row
