"""Training-speed benchmark: images/s of full training steps, each speed option against the
shipped recipe, for every trainer.

    python -m playground.bench --training [--trainers vae,ldm] [--rounds 3] [--steps 20]
                                          [--arms shipped,auto] [--json] [--out FILE] [--quick]
    python -m playground.bench.training ...   (the same)

Each measurement ("arm") is one fresh ``python -m playground.train KIND --max-steps S ...`` run
in a temporary folder; its img/s is ``train_img_per_s`` of metrics.json (optimizer steps only:
no start-up, speed probe, evaluation or checkpoints). The arms of a trainer run alternately,
round after round (the order rotated each round), and each reports the median over rounds, so
slow drift of a shared machine touches every arm alike. Arms (all but ddp: one process,
``--threads 2``):

    shipped        the options the shipped model was trained with (SHIPPED)
    amp            the other autocast: bf16 for the β-VAE (shipped fp32), fp32 for the rest
    channels_last  --layout channels_last
    compile        --compile (torch.compile; its compile time falls in the dropped first step)
    ddp            2 DDP processes with 1 thread each (torchrun --standalone; global batch)
    batch2         twice the shipped batch size
    auto           --amp auto --layout auto: what a trainer chooses by itself (the chosen recipe)
    continue       (CLIP) the campaign's continuation of the shipped CLIP (1 thread)
    words_frozen   (CLIP) the same with --freeze-words: no graph through the text tower

An arm that fails is reported as broken with the last error line and not run again; the
benchmark goes on. The CPU capability and load average are printed beside the numbers.
Target: auto ≥ 2× shipped for the β-VAE and the U-Net (ldm), ≥ 1× for the other models.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from playground.training import speed
from playground.training.campaign import KEEP_CONDITIONING, RECIPES

ROOT = Path(__file__).resolve().parents[2]  # the repository: trainers run from here (trained/)
TRAINERS = ("vae", "autoencoder", "judge", "clip", "ldm")
# The shipped recipes' speed options and batch (Makefile: train-vaes, train-diffusion; the
# β-VAE predates --amp, so fp32). Batch sizes are given explicitly so that later changes to a
# trainer's default do not move the baseline.
SHIPPED: dict[str, dict[str, str]] = {
    "vae": {"--amp": "none", "--layout": "contiguous", "--batch-size": "128"},
    "autoencoder": {"--amp": "bf16", "--layout": "contiguous", "--batch-size": "64"},
    "judge": {"--amp": "bf16", "--layout": "contiguous", "--batch-size": "128"},
    "clip": {"--amp": "bf16", "--layout": "contiguous", "--batch-size": "128"},
    "ldm": {"--amp": "bf16", "--layout": "contiguous", "--batch-size": "64"},
}
EXTRA = {"ldm": {"--autoencoder": "autoencoder", "--clip": "clip"}}  # the shipped models it needs
ERROR_LINE = re.compile(r"^(error:|[\w.]*(Error|Exception)\b)|: error: ")  # why a run failed
TARGETS = {"vae": 2.0, "ldm": 2.0}  # auto / shipped wanted; the other trainers: 1.0 (not slower)

# how the campaign continues the shipped CLIP (campaign.RECIPES["clip"] + KEEP_CONDITIONING),
# on one thread as a CPU stretch runs beside other work; other trainers lack these options,
# so the two arms built on it are "not available" there
CLIP_CONTINUATION = {"--init": "clip", KEEP_CONDITIONING["clip"][0]: None, "--threads": "1",
                     **dict(zip(RECIPES["clip"][1::2], RECIPES["clip"][2::2]))}
NPROC = "--nproc_per_node"  # arm option that goes to torchrun (processes) instead of the trainer
# arm → its options, from the shipped ones (None = a switch); names checked against --help
ARMS: dict[str, Callable[[dict], dict]] = {
    "shipped": lambda o: o,
    "amp": lambda o: {**o, "--amp": "bf16" if o["--amp"] == "none" else "none"},
    "channels_last": lambda o: {**o, "--layout": "channels_last"},
    "compile": lambda o: {**o, "--compile": None},
    "ddp": lambda o: {**o, "--threads": "1", NPROC: "2"},
    "batch2": lambda o: {**o, "--batch-size": str(2 * int(o["--batch-size"]))},
    "auto": lambda o: {**o, "--amp": "auto", "--layout": "auto"},
    "continue": lambda o: {**o, **CLIP_CONTINUATION},
    "words_frozen": lambda o: {**o, **CLIP_CONTINUATION, "--freeze-words": None},
}


@dataclass
class Config:
    """What to measure and how big each run is."""

    trainers: tuple[str, ...] = TRAINERS  # which trainers, in this order
    arms: tuple[str, ...] = tuple(ARMS)  # which arms ("shipped" is needed for the ratios)
    rounds: int = 3  # runs per arm (median); arms alternate within a round
    steps: int = 20  # optimizer steps per run (the first is dropped from its img/s)
    train_size: int = 512  # training images: ≥ 2 × the largest batch, so batch2 is not clamped
    eval_size: int = 64  # validation / test images: evaluation is not timed, so keep it short
    batch_size: int | None = None  # override every shipped batch (tests); None = SHIPPED's
    threads: int = 2  # torch threads of the one-process arms (both cores of a 2-core machine)
    timeout_s: float = 1800.0  # a run taking longer is reported broken (a hung torchrun)


def shipped_options(kind: str, cfg: Config) -> dict:
    """The shipped recipe of `kind` as run here: its options, `cfg.threads` threads."""
    options = {**SHIPPED[kind], "--threads": str(cfg.threads)}
    if cfg.batch_size is not None:
        options["--batch-size"] = str(cfg.batch_size)
    return options


def trainer_options(kind: str) -> set[str]:
    """The option strings that ``python -m playground.train KIND`` accepts."""
    from playground.train import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s for action in sub.choices[kind]._actions for s in action.option_strings}


def command(kind: str, arm: dict, cfg: Config, out: Path, known: set[str]) -> list[str]:
    """The command line of one run of the options `arm`, writing to `out`."""
    arm, launcher = dict(arm), [sys.executable]
    if NPROC in arm:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"{NPROC}={arm.pop(NPROC)}"]
    sizes = {"--max-steps": str(cfg.steps), "--train-size": str(cfg.train_size),
             "--eval-size": str(cfg.eval_size)}
    if "--test-size" in known:  # autoencoder / judge / clip evaluate the test split at the end
        sizes["--test-size"] = str(cfg.eval_size)
    if "--probe-minutes" in known:  # quality probes are not training steps: off
        sizes["--probe-minutes"] = "0"
    options = {**EXTRA.get(kind, {}), **sizes, **arm, "--no-progress": None, "--out": str(out)}
    args = [s for k, v in options.items() for s in ((k,) if v is None else (k, v))]
    return launcher + ["-m", "playground.train", kind] + args


def error_line(text: str) -> str:
    """The line that says why a run failed: the last ``error:`` / exception line (not
    torchrun's own ChildFailedError), else the last line that is not decoration."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip(" =-*\t")]
    hits = [ln for ln in lines if ERROR_LINE.search(ln) and "ChildFailedError" not in ln]
    return (hits or lines or ["no output"])[-1]


def run_arm(kind: str, arm: dict, cfg: Config, known: set[str]) -> dict:
    """One training run: {"img_per_s", "speed_options", "wall_s"}, or {"error": line}."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = arm.get("--threads") or str(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        # a session of its own, so that a timeout or Ctrl-C ends torchrun's workers too
        proc = subprocess.Popen(command(kind, arm, cfg, out, known), cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=cfg.timeout_s)
        except BaseException as err:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if isinstance(err, subprocess.TimeoutExpired):
                return {"error": f"timed out after {cfg.timeout_s:.0f} s"}
            raise
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": f"exit {proc.returncode}: {error_line(stderr or stdout)}"}
        try:
            metrics = json.loads((out / "metrics.json").read_text())
        except (OSError, ValueError) as err:
            return {"error": f"no metrics.json ({err})"}
    if not metrics.get("train_img_per_s"):
        return {"error": "metrics.json has no train_img_per_s"}
    return {"img_per_s": metrics["train_img_per_s"], "speed_options": metrics.get("speed_options"),
            "wall_s": wall}


def measure(kind: str, cfg: Config, log: Callable[[str], None]) -> dict:
    """All arms of one trainer, alternately for `cfg.rounds` rounds → {arm: summary}."""
    known = trainer_options(kind)
    base = shipped_options(kind, cfg)
    arms, results = {}, {}
    for name in cfg.arms:
        arm = ARMS[name](dict(base))
        missing = sorted(k for k in arm if k not in known and k != NPROC)
        results[name] = {"change": describe_change(base, arm), "status": "ok", "runs": [],
                         "speed_options": []}
        if missing:
            results[name].update(status="not available", note=f"the trainer has no {', '.join(missing)}")
        else:
            arms[name] = arm
    order = list(arms)
    for r in range(cfg.rounds):
        k = r % len(order) if order else 0
        for name in order[k:] + order[:k]:
            res = results[name]
            if res["status"] != "ok":
                continue  # broken in an earlier round: it would break again
            run = run_arm(kind, arms[name], cfg, known)
            if "error" in run:
                res.update(status="broken", note=run["error"])
                log(f"{kind} {name} round {r + 1}: broken: {run['error']}")
                continue
            res["runs"].append(run["img_per_s"])
            res["speed_options"].append(run["speed_options"])
            log(f"{kind} {name} round {r + 1}/{cfg.rounds}: {run['img_per_s']:.1f} img/s "
                f"({run['speed_options']}, {run['wall_s']:.0f} s)")
    for res in results.values():
        if res["status"] == "ok":
            res["img_per_s"] = statistics.median(res["runs"])
            res["speed_options"] = Counter(res["speed_options"]).most_common(1)[0][0]
    ship = results.get("shipped", {}).get("img_per_s")
    for res in results.values():
        res["ratio"] = res["img_per_s"] / ship if ship and "img_per_s" in res else None
    return results


def describe_change(base: dict, arm: dict) -> str:
    """The arm's options that differ from the shipped ones (torchrun's first)."""
    diff = [("torchrun " if k == NPROC else "") + (k if v is None else f"{k} {v}")
            for k, v in arm.items() if base.get(k, 0) != v]
    return ", ".join(sorted(diff, key=lambda d: not d.startswith("torchrun"))) or "(as shipped)"


def machine() -> dict:
    """What decides the speed of a step: CPU capability (torch's), bf16, cores, load."""
    return {**speed.machine_summary(), "load_avg": list(os.getloadavg())}


def run(cfg: Config, log: Callable[[str], None] = lambda s: None) -> dict:
    """Measure every trainer of `cfg` → the JSON-able result."""
    start = machine()
    trainers = {kind: measure(kind, cfg, log) for kind in cfg.trainers}
    summary = {}
    for kind, arms in trainers.items():
        ratio, target = arms.get("auto", {}).get("ratio"), TARGETS.get(kind, 1.0)
        timed = {n: r["ratio"] for n, r in arms.items() if r.get("ratio") is not None}
        summary[kind] = {"auto_ratio": ratio, "target": target,
                         "ok": None if ratio is None else ratio >= target,
                         "auto_chose": arms.get("auto", {}).get("speed_options"),
                         "fastest": max(timed, key=timed.get) if timed else None}
    return {"machine": start, "load_avg_end": list(os.getloadavg()),
            "config": dataclasses.asdict(cfg), "trainers": trainers, "summary": summary}


def table(result: dict) -> str:
    """The result as markdown: one row per trainer × arm, the machine, the targets."""
    m = result["machine"]
    lines = [f"machine: CPU capability {m['cpu_capability']}, bf16 "
             f"{'native' if m['bf16_native'] else 'not native'} ({m['bf16_reason']}), "
             f"{m['cpu_count']} cores, torch {m['torch']}; load average "
             f"{m['load_avg'][0]:.2f} → {result['load_avg_end'][0]:.2f}",
             f"runs: {result['config']['steps']} steps, {result['config']['rounds']} rounds "
             f"(median), {result['config']['train_size']} training images", "",
             "| trainer | arm | change | img/s | × shipped | speed options | verdict |",
             "|---|---|---|---:|---:|---|---|"]
    for kind, arms in result["trainers"].items():
        for name, res in arms.items():
            ratio = res.get("ratio")
            if res["status"] != "ok":
                verdict = f"{res['status']}: {res['note']}"
            elif name == "shipped" or ratio is None:
                verdict = ""
            else:
                verdict = "faster" if ratio >= 1 else "slower"
            img = f"{res['img_per_s']:.1f}" if "img_per_s" in res else "–"
            lines.append(f"| {kind} | {name} | {res.get('change', '')} | {img} | "
                         f"{'–' if ratio is None else f'{ratio:.2f}'} | "
                         f"{res.get('speed_options') or ''} | {verdict.replace('|', '/')} |")
    lines.append("")
    for kind, s in result["summary"].items():
        got = "not measured" if s["auto_ratio"] is None else f"{s['auto_ratio']:.2f}×"
        ok = {True: "met", False: "MISSED", None: "–"}[s["ok"]]
        chose = f", chose {s['auto_chose']}" if s["auto_chose"] else ""
        lines.append(f"{kind}: auto {got} shipped{chose} (target ≥ {s['target']:g}×: {ok}); "
                     f"fastest arm: {s['fastest'] or '–'}")
    return "\n".join(lines)


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names or not set(names) <= set(allowed):
        raise argparse.ArgumentTypeError(f"{what} must be among {', '.join(allowed)}, got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    d = Config()
    p = argparse.ArgumentParser(prog="python -m playground.bench --training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainers", type=lambda s: _names(s, TRAINERS, "trainers"), default=d.trainers,
                   help=f"comma-separated (default {','.join(d.trainers)})")
    p.add_argument("--arms", type=lambda s: _names(s, tuple(ARMS), "arms"), default=d.arms,
                   help=f"comma-separated (default {','.join(d.arms)})")
    p.add_argument("--rounds", type=int, default=None, help=f"runs per arm, median (default {d.rounds})")
    p.add_argument("--steps", type=int, default=None, help=f"steps per run (default {d.steps})")
    p.add_argument("--train-size", type=int, default=d.train_size, help="training images per run")
    p.add_argument("--eval-size", type=int, default=d.eval_size, help="validation/test images per run")
    p.add_argument("--batch-size", type=int, default=None, help="override the shipped batch sizes")
    p.add_argument("--quick", action="store_true", help="3 steps, 1 round (for tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="also write the JSON result to this file")
    a = p.parse_args(argv)
    cfg = Config(trainers=a.trainers, arms=a.arms, train_size=a.train_size, eval_size=a.eval_size,
                 batch_size=a.batch_size,
                 rounds=a.rounds if a.rounds is not None else (1 if a.quick else d.rounds),
                 steps=a.steps if a.steps is not None else (3 if a.quick else d.steps))
    if min(cfg.rounds, cfg.steps, cfg.train_size, cfg.eval_size, cfg.batch_size or 1) < 1:
        p.error("--rounds, --steps, --train-size, --eval-size and --batch-size must be >= 1")
    result = run(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if a.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
