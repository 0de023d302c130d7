"""A/B tests of training recipes at equal CPU time, judged by the numbers users see.

    python -m playground.training.ab --minutes 25 --name ldm-minsnr \\
        --base "ldm --init ldm" --arm uniform="" --arm min_snr="--loss-weighting min_snr"

Every arm is ``python -m playground.train <base> <arm options>`` with the same seed and budget;
the arms run side by side, one thread each, so they share the machine alike (equal CPU time
and equal disturbance). Each finished arm is measured by `playground.evaluation.quality.measure` (its
headline number and the numbers behind it) and the table is printed as markdown and saved as
JSON under runs/ab-<name>/.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from playground.store.checkpoints import METRICS_FILE, runs_dir
from playground.store.files import read_json

# metrics.json entries shown beside the quality numbers, when the run has them
RUN_KEYS = ("steps", "epochs", "val_loss", "recon_bce", "kl", "train_img_per_s", "speed_options")


def arm_command(base: list[str], options: list[str], out: Path, minutes: float,
                threads: int) -> list[str]:
    return [sys.executable, "-m", "playground.train", *base, *options, "--out", str(out),
            "--minutes", f"{minutes:g}", "--threads", str(threads), "--no-progress",
            "--checkpoint-minutes", "5"]


def run_arms(arms: dict[str, list[str]], base: list[str], folder: Path, minutes: float,
             threads: int) -> dict[str, int]:
    """Start every arm at once and wait; → exit status per arm (logs in `folder`)."""
    from playground.training.campaign import run_side_by_side

    jobs = {name: arm_command(base, options, folder / name, minutes, threads)
            for name, options in arms.items()}
    return run_side_by_side(jobs, {name: folder / f"{name}.log" for name in arms})


def table(results: dict[str, dict]) -> str:
    """Markdown: one row per arm, the headline first."""
    headline = next(iter(results.values())).get("headline", "value")
    keys = []
    for r in results.values():
        keys += [k for k in r if k not in keys and isinstance(r[k], (int, float, str))
                 and k not in ("kind", "headline", "value", "n", headline)]
    head = f"| arm | {headline} | " + " | ".join(keys) + " |"
    rows = [head, "|" + "---|" * (len(keys) + 2)]
    for arm, r in results.items():
        cells = [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        value = r.get("value")
        rows.append(f"| {arm} | {value:.4f} | " if isinstance(value, float) else f"| {arm} | — | ")
        rows[-1] += " | ".join(cells) + " |"
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from playground.evaluation.quality import measure

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="the A/B's name: runs/ab-<name>/")
    p.add_argument("--base", required=True, help="trainer and options every arm shares")
    p.add_argument("--arm", action="append", required=True, metavar="NAME=OPTIONS",
                   help="one arm: its name and the options it adds (repeat)")
    p.add_argument("--minutes", type=float, required=True, help="training minutes of each arm")
    p.add_argument("--threads", type=int, default=1, help="threads per arm")
    p.add_argument("--judge", default="judge")
    p.add_argument("--measure-only", action="store_true", help="measure finished arms again")
    args = p.parse_args(argv)
    arms = {}
    for spec in args.arm:
        name, _, options = spec.partition("=")
        arms[name.strip()] = shlex.split(options)
    folder = runs_dir() / f"ab-{args.name}"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if not args.measure_only:
        codes = run_arms(arms, shlex.split(args.base), folder, args.minutes, args.threads)
        failed = [a for a, c in codes.items() if c != 0]
        if failed:
            print(f"error: arm(s) {', '.join(failed)} failed: see {folder}/<arm>.log",
                  file=sys.stderr)
            return 1
    results = {}
    for arm in arms:
        metrics = read_json(folder / arm / METRICS_FILE)
        scores = measure(str(folder / arm), judge=args.judge)
        results[arm] = {**scores, **{k: metrics[k] for k in RUN_KEYS if k in metrics},
                        "cpu_minutes": round(metrics["train_seconds"] * args.threads / 60, 1)}
    report = {"base": args.base, "arms": {a: " ".join(o) for a, o in arms.items()},
              "minutes": args.minutes, "threads": args.threads, "results": results,
              "wall_seconds": round(time.time() - started)}
    (folder / "ab.json").write_text(json.dumps(report, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
