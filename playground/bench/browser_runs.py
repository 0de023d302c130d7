"""What a student waits for a diffusion run, in a real browser (Debian's chromium, Playwright).

    python -m playground.bench --browser --runs 3 [--json]

The app is served as `python app.py` serves it (heavy work in worker processes, the U-Net
compiled per input shape), with the compiles done before timing starts. Chromium clicks each
run button and times, inside the page, from the click to the run's final text on screen; the
text itself says the compute the run contained (the sampling time), so the page shows both:

    ddim     Denoise → "Run few-step" (DDIM 50 steps, 4 faces, unconditional)
    ddpm     Denoise → "Run DDPM (1000 steps)" (4 faces, unconditional, streamed)
    prompt   Prompt → "Generate" (4 faces, w = 7.5, the tab's default prompt)

Reported per run: median wait, median compute, wait / compute (target ≤ 1.3), and the DDPM /
DDIM speed-up as felt (the waits) against the one sampled (the computes): within 20 %.
Targets (issue "the app as a student meets it"), on an idle machine: DDIM ≤ 1.5 s, prompt
≤ 3 s, DDPM ≤ 20 s.
"""
from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
from typing import NamedTuple

# one timed run, measured in the page: click, then wait for a new final text
RUN_JS = """async ([button, info, done, timeout]) => {
    // the Markdown's own text: Gradio's status tracker ("processing | 0.2/1.5s") sits beside it
    const text = () => {
        const md = document.querySelector(info + ' [data-testid="markdown"]');
        return md ? md.innerText : '';
    };
    const busy = () => {
        const tracker = document.querySelector(info + ' [data-testid="status-tracker"]');
        return tracker !== null && !tracker.classList.contains('hide');
    };
    const before = text();
    const target = document.querySelector(button);
    const t0 = performance.now();
    (target.tagName === 'BUTTON' ? target : target.querySelector('button')).click();
    const final = await new Promise((resolve, reject) => {
        const give_up = setTimeout(() => reject(new Error(
            'no result within ' + timeout + ' ms; the text reads: ' + text().slice(0, 300))),
                                   timeout);
        // a run's final text may repeat the last one word for word (same seed, same times to
        // the hundredth), so a run that was seen busy counts as new text too
        let started = false;
        const check = () => {
            const now = text();
            started = started || busy();
            if (!busy() && (started || now !== before) && now.includes(done)) {
                clearTimeout(give_up); clearInterval(poll); resolve(now);
            }
        };
        const poll = setInterval(check, 20);
        check();
    });
    return [performance.now() - t0, final];
}"""

class Run(NamedTuple):
    tab: str  # the tab to open
    button: str  # selector of the button that starts the run
    info: str  # selector of the Markdown that ends with the run's final text
    done: str  # words only the final text has
    compute: str  # regex of the compute the final text states (seconds)
    budget_s: float  # the budget for the wait


RUNS = {
    "ddim": Run("Denoise", "#run-ddim", "#denoise-ddim-info", "The run took",
                r"([\d.]+) s of sampling", 1.5),
    "ddpm": Run("Denoise", "#run-ddpm", "#denoise-ddpm-info", "The run took",
                r"([\d.]+) s of sampling", 20.0),
    "prompt": Run("Prompt", "#prompt-generate", "#prompt-notice", " faces by ",
                  r" faces by \S+: ([\d.]+) s", 3.0),
}
WARM_UP_ROUNDS = 2  # one run of each kind per heavy-work process before timing
SETTLE_MS = 1500  # after a tab switch, as a student reads before clicking (the page redraws)


def compute_seconds(kind: str, text: str) -> float:
    """The compute a run's final text states (seconds)."""
    match = re.search(RUNS[kind].compute, text)
    if match is None:
        raise ValueError(f"no compute time in the {kind} text: {text[:200]!r}")
    return float(match.group(1))


def time_runs(rounds: int, port: int | None = None, kinds=tuple(RUNS)) -> dict[str, list]:
    """Serve the app as `app.main` does, warm it up, then click each run `rounds` times →
    {kind: [(wait_s, compute_s), ...]}."""
    import app
    from playground.app import heavy_workers, priority
    from playground.bench.browser import chromium_page
    from playground.pipelines import compiled_unet

    demo = app.build_app()
    app.preload()
    # "wait": each worker compiles its first shapes before it answers (app.main: "background")
    os.environ.setdefault(compiled_unet.ENV, "wait")
    priority.start_workers()
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True))
    results: dict[str, list] = {kind: [] for kind in kinds}
    try:
        with chromium_page(demo.local_url) as page:
            page.wait_for_timeout(2000)
            for round_ in range(WARM_UP_ROUNDS + rounds):
                for kind in kinds:
                    run = RUNS[kind]
                    page.get_by_role("tab", name=run.tab).click()
                    page.wait_for_timeout(SETTLE_MS)
                    ms, text = page.evaluate(RUN_JS, [run.button, run.info, run.done, 600_000])
                    if round_ >= WARM_UP_ROUNDS:
                        results[kind].append((ms / 1000, compute_seconds(kind, text)))
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # Gradio prints "Closing server …"
            demo.close()
        heavy_workers.shutdown()
    return results


def summary(results: dict[str, list]) -> dict:
    """Medians, wait / compute, budgets, and the DDPM / DDIM speed-up felt vs sampled."""
    out = {}
    for kind, pairs in results.items():
        waits, computes = [w for w, _ in pairs], [c for _, c in pairs]
        wait, compute = statistics.median(waits), statistics.median(computes)
        out[kind] = {"n": len(pairs), "wait_s": wait, "compute_s": compute,
                     "wait_over_compute": wait / compute, "budget_s": RUNS[kind].budget_s,
                     "within_budget": wait <= RUNS[kind].budget_s, "waits_s": waits}
    if "ddim" in out and "ddpm" in out:
        felt = out["ddpm"]["wait_s"] / out["ddim"]["wait_s"]
        sampled = out["ddpm"]["compute_s"] / out["ddim"]["compute_s"]
        out["ddpm_over_ddim"] = {"felt": felt, "sampled": sampled,
                                 "felt_over_sampled": felt / sampled}
    return out


def table(report: dict) -> str:
    lines = ["| run | wait (median) | compute it contained | wait / compute | budget | n |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in RUNS:
        if kind in report:
            r = report[kind]
            lines.append(f"| {kind} | {r['wait_s']:.2f} s | {r['compute_s']:.2f} s | "
                         f"{r['wait_over_compute']:.2f} | ≤ {r['budget_s']:g} s | {r['n']} |")
    if "ddpm_over_ddim" in report:
        r = report["ddpm_over_ddim"]
        lines.append(f"\nDDPM / DDIM speed-up: felt {r['felt']:.1f}×, sampled "
                     f"{r['sampled']:.1f}× (felt / sampled {r['felt_over_sampled']:.2f})")
    return "\n".join(lines)
