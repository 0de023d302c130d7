"""The samplers' frontier: FD-judge against the number of U-Net evaluations (NFE) for DDPM (η = 1
on a stride of the T steps), DDIM (η = 0) and DPM-Solver++ (2M), all from the same x_T, under two
conditions:

- **unconditional** (w = 1, the empty prompt): the samplers as the papers compare them;
- **captioned** (w = 7.5, each sample prompted with the caption of a test face, the way
  text-to-image models are scored on held-out captions): what the Prompt tab does, so the tab's
  sampler is chosen here: the one with the fewest evaluations that reaches DDIM-50's FD *and*
  its adherence (the share of the attributes each caption names that the judge finds), since
  FD alone would reward a sampler that draws plausible faces which ignore the prompt.

A row's ``steps`` is its number of denoising steps; ``nfe`` counts U-Net calls per sample (one
per step at w = 1, two with guidance).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from playground.data.captions import captions_for_dataset
from playground.evaluation.ldm.config import UNCONDITIONAL_PROMPT, EvalConfig
from playground.evaluation.ldm.sampling import initial_noise, sample_and_judge
from playground.evaluation.ldm.scores import fd_to_reference
from playground.training import mix_seed

# (name shown, pipeline sampler, η): DDPM on a stride is DDIM's update with η = 1 (Song et al.)
FRONTIER_SAMPLERS: tuple[tuple[str, str, float], ...] = (
    ("DDPM", "ddim", 1.0),
    ("DDIM", "ddim", 0.0),
    ("DPM++ 2M", "dpm++", 0.0),
)
SAMPLER_COLOURS = {"DDPM": "#4C72B0", "DDIM": "#DD8452", "DPM++ 2M": "#55A868"}  # both panels
CAPTIONED_SAMPLERS = ("DDIM", "DPM++ 2M")
_AND_ADHERENCE = " and adherence"  # DDPM: far behind unconditionally, not timed again
REFERENCE_SAMPLER = "DDIM"  # at cfg.fast_steps (50): the quality every sampler is asked to reach
CONDITIONS = ("unconditional", "captioned")


def frontier_rows(steps: Sequence[int], condition: str = "unconditional") -> list[dict]:
    """The rows to measure: ``{"sampler", "method", "eta", "steps", "nfe"}``, sampler by sampler."""
    calls = 1 if condition == "unconditional" else 2
    return [{"sampler": name, "method": method, "eta": eta, "steps": int(s), "nfe": calls * int(s)}
            for name, method, eta in FRONTIER_SAMPLERS
            if condition == "unconditional" or name in CAPTIONED_SAMPLERS for s in steps]


def _key(row: dict) -> tuple:
    return row["method"], float(row["eta"]), int(row["steps"])


def evaluate_frontier(pipeline, judge, reference, n: int, cfg: EvalConfig,
                      known_rows: Sequence[dict] = ()) -> dict:
    """Measure both conditions on n samples per row from ``initial_noise(pipeline, n,
    cfg.seed)``, as the DDIM table does, so that the table's rows (`known_rows`: unconditional,
    same x_T and noise seed) are reused rather than sampled again.

    Returns ``{"solver_frontier": {condition: {"guidance", "rows", "reference", "fastest"}}}``
    (see `fastest_at_reference`).
    """
    from playground.data.synthfaces import SynthFacesDataset
    from playground.pipelines.prompts import named_attributes

    known = {_key(r): r for r in known_rows if r.get("n") == n}
    x_T = initial_noise(pipeline, n, cfg.seed)
    test = SynthFacesDataset(cfg.reference_split, n=n)
    prompts = {"unconditional": [UNCONDITIONAL_PROMPT] * n,
               "captioned": captions_for_dataset(test.attributes, test.factors, seed=cfg.seed)}
    wanted = [named_attributes(c) for c in prompts["captioned"]]
    guidance = {"unconditional": 1.0, "captioned": cfg.grid_guidance}
    out = {}
    for condition in CONDITIONS:
        rows = []
        for spec in frontier_rows(cfg.frontier_steps, condition):
            name = f"{condition} {spec['sampler']}-{spec['steps']}"
            if condition == "unconditional" and _key(spec) in known:
                old = known[_key(spec)]
                rows.append({**spec, "fd": old["fd"], "seconds": old["seconds"], "n": n})
                print(f"  {name:<28} FD-judge {old['fd']:9.4f}   (from the DDIM table)",
                      file=sys.stderr)
                continue
            result = sample_and_judge(pipeline, judge, prompts[condition], x_T,
                                      guidance=guidance[condition], sampler=spec["method"],
                                      steps=spec["steps"], eta=spec["eta"],
                                      seed=mix_seed(cfg.seed, 1), batch_size=cfg.batch_size,
                                      desc=name, progress=cfg.progress)
            fd = fd_to_reference(result.features, reference)
            row = {**spec, "fd": fd, "seconds": result.seconds, "n": n}
            if condition == "captioned":
                row["adherence"] = caption_adherence(result.attributes, wanted)
            rows.append(row)
            print(f"  {name:<28} FD-judge {fd:9.4f}   {result.seconds:8.1f} s"
                  + (f"   adherence {row['adherence']:.3f}" if "adherence" in row else ""),
                  file=sys.stderr)
        out[condition] = {"guidance": guidance[condition], "rows": rows,
                          **fastest_at_reference(rows, cfg.fast_steps)}
    return {"solver_frontier": out}


def caption_adherence(attributes: dict[str, np.ndarray], wanted: Sequence[dict[str, int]]
                      ) -> float:
    """The share of (sample, named attribute) pairs the judge reads as the sample's caption
    says: `attributes` name → (N,) judge calls, `wanted` one {attribute: 0/1} per sample."""
    hits = [int(attributes[a][i]) == int(v) for i, w in enumerate(wanted) for a, v in w.items()
            if a in attributes]
    return float(np.mean(hits)) if hits else float("nan")


def fastest_at_reference(rows: Sequence[dict], reference_steps: int = 50) -> dict:
    """``{"reference": DDIM-`reference_steps`'s row, "fastest": the row with the fewest
    evaluations whose FD is at most the reference's — and, where rows have an ``adherence``,
    whose adherence is at least the reference's — (ties: the lower FD), with "saving" =
    reference NFE / its NFE}``. The reference row itself qualifies: there is always an answer."""
    ref = next((r for r in rows if (r["sampler"], r["steps"]) == (REFERENCE_SAMPLER,
                                                                   reference_steps)), None)
    if ref is None:
        raise ValueError(f"the frontier has no {REFERENCE_SAMPLER}-{reference_steps} row to "
                         "compare with")
    good = [r for r in rows if r["fd"] <= ref["fd"]
            and r.get("adherence", 0.0) >= ref.get("adherence", 0.0)]
    best = min(good, key=lambda r: (r["nfe"], r["fd"]))
    return {"reference": dict(ref), "fastest": {**best, "saving": ref["nfe"] / best["nfe"]}}


def frontier_figure(frontier: dict, path: str | Path, reference_steps: int = 50,
                    ddpm_full: dict | None = None, dpi: int = 100) -> Path:
    """One panel per condition: FD-judge against U-Net evaluations (log axis), one line per
    sampler, DDIM-50's FD dashed, the fewest-evaluations choice circled; ``ddpm_full`` (the
    table's DDPM-T row, if measured) as a star on the unconditional panel."""
    from playground.evaluation.plots import new_figure

    fig = new_figure(6.0 * len(frontier), 4.4, dpi)
    axes = fig.subplots(1, len(frontier), squeeze=False)[0]
    for ax, (condition, part) in zip(axes, frontier.items()):
        rows = part["rows"]
        for name, _, _ in FRONTIER_SAMPLERS:
            mine = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["nfe"])
            if mine:
                ax.plot([r["nfe"] for r in mine], [r["fd"] for r in mine], marker="o", label=name,
                        color=SAMPLER_COLOURS[name])
        ax.axhline(part["reference"]["fd"], color="grey", linestyle="--", linewidth=1,
                   label=f"{REFERENCE_SAMPLER}-{reference_steps}'s FD")
        best = part["fastest"]
        also = _AND_ADHERENCE if "adherence" in best else ""
        ax.scatter([best["nfe"]], [best["fd"]], s=160, facecolors="none", edgecolors="black",
                   label=f"fewest evaluations at that FD{also}: {best['sampler']}-{best['steps']}")
        if ddpm_full is not None and condition == "unconditional":
            ax.scatter([ddpm_full["steps"]], [ddpm_full["fd"]], marker="*", s=120, color="black",
                       label=f"DDPM-{ddpm_full['steps']} (ancestral)")
        ax.set_xscale("log")
        ax.set_xlabel("U-Net evaluations per sample (NFE)")
        ax.set_ylabel("FD-judge to the test faces (lower is better)")
        ax.set_title(f"{condition}, w = {part['guidance']:g}: {rows[0]['n']} samples per point",
                     fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return Path(path)


def frontier_markdown(frontier: dict | None, model_name: str = "ldm") -> str:
    """The frontier as Markdown tables (NFE × sampler → FD-judge), one per condition, with their
    verdicts; how to measure it when `frontier` (a metrics.json ``solver_frontier``) is missing."""
    if not frontier or not all(frontier.get(c, {}).get("rows") for c in CONDITIONS):
        return ("*The samplers' frontier was not measured for this model:* "
                f"`python -m playground.evaluation.ldm {model_name} --only frontier --write`.")
    n = frontier["unconditional"]["rows"][0]["n"]
    lines = [f"**The samplers' frontier on this model**: FD-judge of {n} samples to the test "
             "faces (lower is better), by U-Net evaluations per sample."]
    names = [name for name, _, _ in FRONTIER_SAMPLERS]
    for condition in CONDITIONS:
        part = frontier[condition]
        fd = {(r["sampler"], r["nfe"]): r["fd"] for r in part["rows"]}
        adh = {(r["sampler"], r["nfe"]): r["adherence"] for r in part["rows"] if "adherence" in r}
        used = [m for m in names if any(k[0] == m for k in fd)]
        what = ("the empty prompt" if condition == "unconditional"
                else "each prompted with a test face's caption; in brackets the adherence")
        lines += ["", f"*{condition.capitalize()}* (w = {part['guidance']:g}, {what}):", "",
                  "| NFE | " + " | ".join(used) + " |", "|---" * (len(used) + 1) + "|"]
        for nfe in sorted({r["nfe"] for r in part["rows"]}):
            cells = [f"{fd[(m, nfe)]:.2f}" + (f" ({adh[(m, nfe)]:.2f})" if (m, nfe) in adh else "")
                     if (m, nfe) in fd else "–" for m in used]
            lines.append(f"| {nfe} | " + " | ".join(cells) + " |")
        best, ref = part["fastest"], part["reference"]
        if best["saving"] > 1:
            verdict = (f"**{best['sampler']} with {best['steps']} steps** reaches "
                       f"{ref['sampler']}-{ref['steps']}'s FD ({best['fd']:.2f} vs "
                       f"{ref['fd']:.2f})" + (" and adherence" if "adherence" in ref else "")
                       + f" with {best['saving']:.1f}× fewer evaluations.")
        else:
            verdict = (f"No sampler reaches {ref['sampler']}-{ref['steps']}'s FD"
                       + (" and adherence" if "adherence" in ref else "")
                       + f" with fewer evaluations; at {best['nfe']}, **{best['sampler']}** is "
                       f"lowest ({best['fd']:.2f} vs {ref['fd']:.2f}).")
        lines += ["", verdict]
    lines += ["", "The Prompt tab draws with the captioned condition's choice. "
              f"({n} samples per point: a gap of a fraction of a point may be sampling noise.)"]
    return "\n".join(lines)
