"""What a student feels: Traverse slider latency in a real browser (Debian's chromium, Playwright),
and the waits for diffusion runs (`playground.bench.browser_runs`).

    python -m playground.bench --browser [--moves 40] [--arms queued,direct] [--runs 2] [--json]

The app runs in this process with the shipped models (or $PLAYGROUND_TRAINED); chromium opens
the Traverse tab and moves the first slider `--moves` times. Each move is timed inside the
page, from the slider's input event to the new face decoded and on screen (the <img> of the
decoded face has a new source and `img.decode()` has resolved), so the Python side of
Playwright adds nothing. Arms are ways to wire the slider event, timed alternately in one run
(medians of interleaved blocks: a busy machine slows both alike):

    queued   today's wiring: the event goes through Gradio's queue (SSE), progress hidden
    direct   ``queue=False``: one HTTP request, no queue (the event cannot wait behind others)

Targets (issue "the app as a student meets it"): median ≤ 100 ms, p95 ≤ 200 ms, idle machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]

# one timed slider move, measured in the page (performance.now, ms)
MOVE_JS = """async ([selector, value]) => {
    const slider = document.querySelector(selector + ' input[type=range]');
    const box = document.querySelector('#traverse-decoded');
    const current = () => { const img = box.querySelector('img'); return img ? img.src : null; };
    const before = current();
    const t0 = performance.now();
    slider.value = String(value);
    slider.dispatchEvent(new Event('input', {bubbles: true}));
    await new Promise((resolve, reject) => {
        const give_up = setTimeout(() => reject(new Error('no new face within 20 s')), 20000);
        const check = () => {
            const src = current();
            if (src && src !== before) { clearTimeout(give_up); observer.disconnect(); resolve(); }
        };
        const observer = new MutationObserver(check);
        observer.observe(box, {subtree: true, childList: true, attributes: true});
        check();
    });
    await box.querySelector('img').decode();
    return performance.now() - t0;
}"""


@contextlib.contextmanager
def chromium_page(url: str):
    """A page of headless chromium at `url` (1400 × 1000), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            yield page
        finally:
            browser.close()


def build_demo(arm: str):
    """The app with the Traverse slider event wired as `arm` says."""
    import app
    from playground.app import traverse

    traverse.SLIDER_QUEUE = arm == "queued"
    return app.build_app()


def time_arm(arm: str, moves: int, port: int | None = None) -> list[float]:
    """Launch the app wired as `arm`, move the first slider `moves` times → ms per move."""
    import app

    demo = build_demo(arm)
    demo.queue(**app.queue_kwargs()).launch(prevent_thread_lock=True, server_name="127.0.0.1",
                                            server_port=port, quiet=True)
    try:
        with chromium_page(demo.local_url) as page:
            page.locator("#traverse-decoded img").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)  # the first encode's follow-ups have settled
            times = []
            for i in range(moves + 3):  # 3 warm-up moves, not counted
                value = round(-2.5 + 5.0 * ((i * 7) % 11) / 10, 2)  # a new value every move
                ms = page.evaluate(MOVE_JS, ["#traverse-slider-0", value])
                if i >= 3:
                    times.append(float(ms))
                page.wait_for_timeout(50)  # a student's hand, not a stress test
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # Gradio prints "Closing server …"
            demo.close()
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"n": len(times), "median_ms": statistics.median(ordered),
            "p95_ms": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
            "min_ms": ordered[0], "max_ms": ordered[-1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m playground.bench --browser",
                                description=__doc__.splitlines()[0])
    p.add_argument("--moves", type=int, default=40, help="timed slider moves per arm and round")
    p.add_argument("--rounds", type=int, default=2, help="arms alternate this many times")
    p.add_argument("--arms", default="queued,direct", help="comma-separated: queued, direct")
    p.add_argument("--runs", type=int, default=2,
                   help="timed clicks of each diffusion run (browser_runs); 0 = none")
    p.add_argument("--no-sliders", action="store_true", help="time the diffusion runs only")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - {"queued", "direct"})
    if unknown or not arms:
        p.error(f"unknown arm(s) {unknown}: choose from queued, direct")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        print("error: chromium is not installed (apt install chromium)", file=sys.stderr)
        return 2
    from playground.bench import browser_runs
    from playground.bench.timing import machine_info

    report = {"machine": machine_info(), "when": time.strftime("%F %T")}
    if not args.no_sliders:
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        for _ in range(args.rounds):
            for arm in arms:
                times[arm] += time_arm(arm, args.moves)
        report.update({"arms": {arm: summary(t) for arm, t in times.items()},
                       "targets": {"median_ms": 100, "p95_ms": 200}, "moves": args.moves,
                       "rounds": args.rounds})
    if args.runs > 0:
        report["runs"] = browser_runs.summary(browser_runs.time_runs(args.runs))
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    if "arms" in report:
        print("| wiring | median ms | p95 ms | min | max | moves |\n|---|---:|---:|---:|---:|---:|")
        for arm, s in report["arms"].items():
            print(f"| {arm} | {s['median_ms']:.0f} | {s['p95_ms']:.0f} | {s['min_ms']:.0f} | "
                  f"{s['max_ms']:.0f} | {s['n']} |")
    if "runs" in report:
        print(browser_runs.table(report["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
