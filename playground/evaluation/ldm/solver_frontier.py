"""The samplers' frontier: FD-judge of unconditional samples against the number of U-Net
evaluations (NFE) for DDPM (η = 1 on a stride of the T steps), DDIM (η = 0) and DPM-Solver++ (2M),
all from the same x_T; and which of them reaches DDIM-50's FD with the fewest evaluations (the
Prompt tab samples with that one).

Unconditional sampling at w = 1 costs one U-Net call per step for all three samplers, so the
NFE of a row is its number of steps.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from playground.evaluation.ldm.config import UNCONDITIONAL_PROMPT, EvalConfig
from playground.evaluation.ldm.sampling import initial_noise, sample_and_judge
from playground.evaluation.ldm.scores import fd_to_reference
from playground.training import mix_seed

FRONTIER_STEPS = (5, 10, 20, 50)  # S of every sampler's row
# (name shown, pipeline sampler, η): DDPM on a stride is DDIM's update with η = 1 (Song et al.)
FRONTIER_SAMPLERS: tuple[tuple[str, str, float], ...] = (
    ("DDPM", "ddim", 1.0),
    ("DDIM", "ddim", 0.0),
    ("DPM++ 2M", "dpm++", 0.0),
)
REFERENCE_SAMPLER = "DDIM"  # at cfg.fast_steps (50): the quality every sampler is asked to reach


def frontier_rows(steps: Sequence[int] = FRONTIER_STEPS) -> list[dict]:
    """The rows to measure: ``{"sampler", "method", "eta", "steps", "nfe"}``, sampler by sampler."""
    return [{"sampler": name, "method": method, "eta": eta, "steps": int(s), "nfe": int(s)}
            for name, method, eta in FRONTIER_SAMPLERS for s in steps]


def _key(row: dict) -> tuple:
    return row["method"], float(row["eta"]), int(row["steps"])


def evaluate_frontier(pipeline, judge, reference, n: int, cfg: EvalConfig,
                      known_rows: Sequence[dict] = ()) -> dict:
    """Measure the frontier on n unconditional samples per row, from ``initial_noise(pipeline, n,
    cfg.seed)`` as the DDIM table does, so that the table's rows (`known_rows`, same x_T and
    noise seed) are reused rather than sampled again.

    Returns ``{"solver_frontier": {"rows", "reference", "fastest"}}`` (see `fastest_at_reference`).
    """
    known = {_key(r): r for r in known_rows if r.get("n") == n}
    x_T = initial_noise(pipeline, n, cfg.seed)
    prompts = [UNCONDITIONAL_PROMPT] * n
    rows = []
    for spec in frontier_rows(cfg.frontier_steps):
        name = f"{spec['sampler']}-{spec['steps']}"
        if _key(spec) in known:
            old = known[_key(spec)]
            rows.append({**spec, "fd": old["fd"], "seconds": old["seconds"], "n": n})
            print(f"  {name:<14} FD-judge {old['fd']:9.4f}   (from the DDIM table)", file=sys.stderr)
            continue
        result = sample_and_judge(pipeline, judge, prompts, x_T, guidance=1.0,
                                  sampler=spec["method"], steps=spec["steps"], eta=spec["eta"],
                                  seed=mix_seed(cfg.seed, 1), batch_size=cfg.batch_size,
                                  desc=name, progress=cfg.progress)
        fd = fd_to_reference(result.features, reference)
        rows.append({**spec, "fd": fd, "seconds": result.seconds, "n": n})
        print(f"  {name:<14} FD-judge {fd:9.4f}   {result.seconds:8.1f} s", file=sys.stderr)
    return {"solver_frontier": {"rows": rows, **fastest_at_reference(rows, cfg.fast_steps)}}


def fastest_at_reference(rows: Sequence[dict], reference_steps: int = 50) -> dict:
    """``{"reference": DDIM-`reference_steps`'s row, "fastest": the row with the fewest
    evaluations whose FD is at most the reference's (ties: the lower FD), with "saving" =
    reference NFE / its NFE}``. The reference row itself qualifies: there is always an answer."""
    ref = next((r for r in rows if (r["sampler"], r["steps"]) == (REFERENCE_SAMPLER,
                                                                   reference_steps)), None)
    if ref is None:
        raise ValueError(f"the frontier has no {REFERENCE_SAMPLER}-{reference_steps} row to "
                         "compare with")
    good = [r for r in rows if r["fd"] <= ref["fd"]]
    best = min(good, key=lambda r: (r["nfe"], r["fd"]))
    return {"reference": dict(ref), "fastest": {**best, "saving": ref["nfe"] / best["nfe"]}}


def frontier_figure(rows: Sequence[dict], path: str | Path, reference_steps: int = 50,
                    ddpm_full: dict | None = None, dpi: int = 100) -> Path:
    """FD-judge against U-Net evaluations (log axis), one line per sampler, DDIM-50's FD as a
    dashed line; ``ddpm_full`` (the table's DDPM-T row, if measured) as a single point."""
    from playground.evaluation.plots import new_figure

    fig = new_figure(6.4, 4.2, dpi)
    ax = fig.subplots()
    for name, _, _ in FRONTIER_SAMPLERS:
        mine = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in mine], [r["fd"] for r in mine], marker="o", label=name)
    marks = fastest_at_reference(rows, reference_steps)
    ax.axhline(marks["reference"]["fd"], color="grey", linestyle="--", linewidth=1,
               label=f"{REFERENCE_SAMPLER}-{reference_steps}'s FD")
    best = marks["fastest"]
    ax.scatter([best["nfe"]], [best["fd"]], s=160, facecolors="none", edgecolors="black",
               label=f"fewest evaluations at that FD: {best['sampler']}-{best['steps']}")
    if ddpm_full is not None:
        ax.scatter([ddpm_full["steps"]], [ddpm_full["fd"]], marker="*", s=120, color="black",
                   label=f"DDPM-{ddpm_full['steps']} (ancestral)")
    ax.set_xscale("log")
    ax.set_xlabel("U-Net evaluations per sample (NFE)")
    ax.set_ylabel("FD-judge to the test faces (lower is better)")
    ax.set_title(f"Samplers' frontier, {rows[0]['n']} unconditional samples per point",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return Path(path)


def frontier_markdown(frontier: dict | None, model_name: str = "ldm") -> str:
    """The frontier as a Markdown table (NFE × sampler → FD-judge) with its verdict; how to
    measure it when `frontier` (a metrics.json ``solver_frontier``) is missing."""
    if not frontier or not frontier.get("rows"):
        return ("*The samplers' frontier was not measured for this model:* "
                f"`python -m playground.evaluation.ldm {model_name} --only frontier --write`.")
    rows = frontier["rows"]
    names = [name for name, _, _ in FRONTIER_SAMPLERS]
    fd = {(r["sampler"], r["nfe"]): r["fd"] for r in rows}
    lines = [f"**The samplers' frontier on this model**: FD-judge of {rows[0]['n']} "
             "unconditional samples to the test faces (lower is better), by U-Net evaluations.",
             "", "| NFE | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for nfe in sorted({r["nfe"] for r in rows}):
        cells = [f"{fd[(n, nfe)]:.2f}" if (n, nfe) in fd else "–" for n in names]
        lines.append(f"| {nfe} | " + " | ".join(cells) + " |")
    best, ref = frontier["fastest"], frontier["reference"]
    if best["saving"] > 1:
        verdict = (f"**{best['sampler']} with {best['steps']} steps** reaches "
                   f"{ref['sampler']}-{ref['steps']}'s FD ({best['fd']:.2f} vs {ref['fd']:.2f}) "
                   f"with {best['saving']:.1f}× fewer evaluations: the Prompt tab draws with it.")
    else:
        verdict = (f"No sampler reaches {ref['sampler']}-{ref['steps']}'s FD with fewer "
                   f"evaluations; at {best['nfe']}, **{best['sampler']}** is lowest "
                   f"({best['fd']:.2f} vs {ref['fd']:.2f}): the Prompt tab draws with it.")
    lines += ["", verdict, "", f"({rows[0]['n']} samples per point: a gap of a fraction of a "
              "point may be sampling noise.)"]
    return "\n".join(lines)
