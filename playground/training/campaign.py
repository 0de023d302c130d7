"""Continue training every shipped model, in dependency order, and ship what got better.

    python -m playground.training.campaign --minutes 150                 # 2-core CPU: a stretch of 2.5 h
    python -m playground.training.campaign --minutes 12 --device cuda    # one GPU: every model in 12 min
    python -m playground.training.campaign --models vae-beta1 vae-beta10 --minutes 60 --dry-run

Each model continues where it stands: ``--resume`` when its run folder (runs/<name>) holds a
checkpoint, else a warm start (``--init``) from trained/<name>, else from scratch. After its
run, ``python -m playground.training.ship --if-better`` replaces the shipped model only if its
headline number (`playground.evaluation.quality`) improved, and β-VAEs are re-measured for metrics.json.
The U-Net trains on the autoencoder and CLIP runs of the same campaign and ships with them
(``ship --chain``, when its prompt accuracy improved): they never ship alone under it.
A model whose headline already meets its target (`TARGETS`, read from the ``quality`` entry
that --if-better writes into metrics.json), with its `MEASURED_TARGETS` met and no attribute
under its `ATTRIBUTE_FLOORS`, is skipped, unless ``--all``.

Stages run one after the other (the U-Net learns in the latents of the autoencoder and the text
states of the CLIP), the jobs of a stage side by side with the cores split between them.
Minutes are shared out by each stage's `Stage.share` of the budget.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from playground.store.checkpoints import METRICS_FILE, runs_dir, trained_dir
from playground.store.files import read_json
from playground.training import TRAIN_STATE_JSON
from playground.training.ship import pipelines_using

# model name → (trainer subcommand and its fixed options)
RECIPES: dict[str, list[str]] = {
    # 8 latent channels keep more small details than 4 (README, its A/B)
    "autoencoder": ["autoencoder", "--latent-size", "16", "--latent-channels", "8"],
    "judge": ["judge"],
    # captions that say what a face lacks in more words (stretch 13: zero-shot AUC 0.779 →
    # 0.802 in 75 minutes, with the words the U-Net reads frozen); a head that reads the
    # attribute labels from the image embedding, and 4 hard negatives among all attributes
    # (stretch 15's A/Bs: 0.825 → 0.840 → 0.861; README); the head at weight 4, not 1
    # (stretch 17's A/B: 0.893 → 0.909 in 32 CPU-minutes, goatee 0.50 → 0.78, narrow eyes
    # 0.81 → 0.99); a factor head at weight 16 (stretch 18's A/B: brows 0.51 → 0.97, mean
    # 0.910 → 0.931 on 5,000 faces; README); captions that leave a hair colour, mustache or
    # goatee unsaid against a negative that names it (stretch 22, 2,000 test faces: hair
    # colour alone 0.934 → 0.959 in 50 minutes with the image side training, 0.962 with the
    # text side alone, brown hair 0.77 → 0.90; then facial hair, 0.962 → 0.973, "without a
    # beard" 0.77 → 0.96; README)
    "clip": ["clip", "--absent-phrases", "rich", "--attribute-weight", "4", "--factor-weight", "16",
             "--negatives-per-image", "4", "--negative-pool", "all",
             "--hide-hair-colour", "0.5", "--hide-facial-hair", "0.5"],
    # lr and condition dropout of stretch 12 (README: its lr A/B; + its autoencoder and CLIP:
    # see `pipeline_options`)
    "ldm": ["ldm", "--lr", "4e-4", "--cond-drop", "0.2"],
    "vae-beta1": ["vae", "--beta", "1"],
    "vae-beta4": ["vae", "--beta", "4"],
    "vae-beta10": ["vae", "--beta", "10"],
}

# trainer → the option that trains only what a shipped U-Net does not read, so the run can ship
# alone (`ship.same_conditioning` checks it)
KEEP_CONDITIONING: dict[str, tuple[str, str]] = {
    "autoencoder": ("--freeze-encoder", "freeze_encoder"),
    "clip": ("--freeze-text-states", "freeze_text_states"),
}

# model name → (headline key, target): the campaign issue's table; None = no target of its own
TARGETS: dict[str, tuple[str, float] | None] = {
    "autoencoder": ("small_detail_acc", 0.93),
    "judge": ("attribute_acc", 0.97),
    "clip": ("zero_shot_auc", 0.9),
    "ldm": ("prompt_acc", 0.9),
    "vae-beta1": ("small_detail_acc", 0.85),
    "vae-beta4": None,  # trains while its neighbours do, so recon and KL stay ordered by β
    "vae-beta10": ("light_abs_r", 0.9),
}
# model name → a target its own evaluation writes into metrics.json "targets" (group, key, what
# it says), to be met besides the headline's: the U-Net's samples must also be nearer the faces
# than every β-VAE's (python -m playground.evaluation.ldm ldm --only vae)
MEASURED_TARGETS: dict[str, tuple[str, str, str]] = {
    "ldm": ("vae_vs_ldm", "ldm_below_every_vae_with_training_captions",
            "FD below every β-VAE's"),
}

# model name → (per-attribute scores in metrics.json, floor): the issue's "mean over attributes
# (none below 0.75)" — a mean can pass while one attribute stays at chance
ATTRIBUTE_FLOORS: dict[str, tuple[str, float]] = {
    "clip": ("zero_shot_auc_per_attribute", 0.75),
}


@dataclass
class Stage:
    models: tuple[str, ...]  # trained side by side
    share: float  # fraction of the budget


STAGES = (
    Stage(("autoencoder", "judge"), 0.2),
    Stage(("clip",), 0.15),
    Stage(("ldm",), 0.35),
    Stage(("vae-beta1", "vae-beta4", "vae-beta10"), 0.3),
)


def target_met(name: str) -> bool:
    """Whether trained/<name>'s measured headline (metrics.json "quality") meets its target,
    its `MEASURED_TARGETS` are met, and no attribute is below its `ATTRIBUTE_FLOORS` floor."""
    target = TARGETS.get(name)
    path = trained_dir() / name / METRICS_FILE
    if target is None or not path.is_file():
        return False
    metrics = read_json(path)
    quality = metrics.get("quality", {})
    key, goal = target
    if name in MEASURED_TARGETS and not measured_target(name, metrics).get("met"):
        return False
    if below_floor(name, metrics) != {}:
        return False
    return quality.get("headline") == key and quality.get("value", -1) >= goal


def measured_target(name: str, metrics: dict) -> dict:
    """`name`'s `MEASURED_TARGETS` entry as its evaluation wrote it into `metrics` ("targets"),
    e.g. {"ldm_fd", "best_vae_fd", "met"}; {} when not measured."""
    group, entry, _ = MEASURED_TARGETS[name]
    return metrics.get("targets", {}).get(group, {}).get(entry, {})


def below_floor(name: str, metrics: dict) -> dict[str, float] | None:
    """{attribute: score} of `name`'s attributes under its `ATTRIBUTE_FLOORS` floor, lowest
    first ({} for a model without a floor); None when its per-attribute scores were never
    measured."""
    if name not in ATTRIBUTE_FLOORS:
        return {}
    key, floor = ATTRIBUTE_FLOORS[name]
    scores = metrics.get(key)
    if not scores:
        return None
    return {a: v for a, v in sorted(scores.items(), key=lambda kv: kv[1]) if v < floor}


def plan(models: list[str], train_all: bool) -> list[tuple[Stage, list[str]]]:
    """The stages with the models to train in each (targets met are left out; β = 4 trains
    when another β-VAE does)."""
    unknown = sorted(set(models) - set(RECIPES))
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(RECIPES)}")
    out = []
    for stage in STAGES:
        todo = [m for m in stage.models if m in models and (train_all or not target_met(m))]
        if todo == ["vae-beta4"]:
            todo = []
        if todo:
            out.append((stage, todo))
    return out


def pipeline_options(name: str) -> list[str]:
    """The U-Net trains on the newest autoencoder and CLIP: their run folders when the campaign
    has continued them (they ship together with it, `ship --chain`), else the shipped ones."""
    if RECIPES[name][0] != "ldm":
        return []
    out = []
    for option, part in (("--autoencoder", "autoencoder"), ("--clip", "clip")):
        run = runs_dir() / part
        out += [option, str(run) if (run / "model.safetensors").is_file() else part]
    return out


def train_command(name: str, minutes: float, threads: int, device: str,
                  extra: list[str]) -> list[str]:
    """``python -m playground.train …`` that continues `name` for `minutes` more."""
    out = runs_dir() / name
    cmd = [sys.executable, "-m", "playground.train", *RECIPES[name], *pipeline_options(name),
           "--out", str(out), "--threads", str(threads), "--device", device, "--no-progress",
           "--checkpoint-minutes", "5"]
    state = out / TRAIN_STATE_JSON
    if state.is_file():  # the budget of a resumed run counts its earlier sessions
        spent = float(read_json(state).get("elapsed_seconds", 0.0)) / 60
        return cmd + ["--resume", "--minutes", f"{spent + minutes:.2f}", *extra]
    if (trained_dir() / name / "config.json").is_file():
        cmd += ["--init", name]  # the trainer rebuilds its architecture
        keep = KEEP_CONDITIONING.get(RECIPES[name][0])
        if keep and pipelines_using(name):
            # a shipped U-Net reads its latents or text states: keep them, so it can ship alone
            cmd.append(keep[0])
    return cmd + ["--minutes", f"{minutes:.2f}", *extra]


def after_commands(name: str, judge: str) -> list[list[str]]:
    """Ship if better; β-VAEs then get their full metrics re-measured. A shipped U-Net's
    autoencoder and CLIP wait for the U-Net trained on them, which ships with them (--chain),
    unless they trained only what the U-Net does not read (`KEEP_CONDITIONING`)."""
    if pipelines_using(name) and not _kept_conditioning(runs_dir() / name):
        print(f"  {name}: ships with the U-Net trained on it (ship --chain)", flush=True)
        return []
    ship = "--chain" if RECIPES[name][0] == "ldm" else "--if-better"
    cmds = [[sys.executable, "-m", "playground.training.ship", str(runs_dir() / name), name, ship,
             "--judge", judge]]
    if RECIPES[name][0] == "vae":
        cmds.append([sys.executable, "-m", "playground.evaluation.vae", name, "--write"])
    return cmds


def _kept_conditioning(run: Path) -> bool:
    """Whether the run folder trained only what a U-Net does not read (--freeze-encoder,
    --freeze-text-states): its latents or text states are unchanged, so it ships alone."""
    state = run / TRAIN_STATE_JSON
    if not state.is_file():
        return False
    args = read_json(state).get("args", {})
    return any(args.get(field) for _, field in KEEP_CONDITIONING.values())


def run_side_by_side(jobs: dict[str, list[str]], logs: dict[str, Path]) -> dict[str, int]:
    """Start every command at once (output appended to its log), wait for all; → exit status
    per job. The campaign's stages and the A/B arms run this way."""
    procs = {}
    for name, cmd in jobs.items():
        log = open(logs[name], "a", encoding="utf-8")
        print(f"  {name}: {shlex.join(cmd[1:])}  (log: {log.name})", flush=True)
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    codes = {}
    for name, (proc, log) in procs.items():
        codes[name] = proc.wait()
        log.close()
    return codes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, required=True, help="wall-clock budget of all stages")
    p.add_argument("--models", nargs="+", default=list(RECIPES), help="models to continue")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                   help="CPU cores to share between the jobs of a stage")
    p.add_argument("--all", dest="train_all", action="store_true",
                   help="also train models already at their target")
    p.add_argument("--judge", default="judge", help="judge model of the headline numbers")
    p.add_argument("--no-ship", dest="ship", action="store_false", help="train only")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --: options for every trainer (e.g. -- --train-size 64)")
    args = p.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if args.minutes <= 0:
        p.error("--minutes must be > 0")
    try:
        stages = plan(args.models, args.train_all)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not stages:
        print("every chosen model meets its target: nothing to train (use --all to go on)")
        return 0
    total_share = sum(stage.share for stage, _ in stages)
    log_dir = runs_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for stage, names in stages:
        minutes = args.minutes * stage.share / total_share
        threads = max(1, args.cores // len(names)) if args.device == "cpu" else 1
        print(f"stage {', '.join(names)}: {minutes:.1f} min, {threads} thread(s) each", flush=True)
        jobs = [(n, train_command(n, minutes, threads, args.device, extra)) for n in names]
        if args.dry_run:
            for name, cmd in jobs:
                print(f"  {name}: {' '.join(cmd[1:])}")
            continue
        codes = run_side_by_side(dict(jobs), {n: log_dir / f"train-{n}.log" for n, _ in jobs})
        for name, code in codes.items():
            if code != 0:
                failed.append(name)
                print(f"  {name}: training failed (exit {code}); see its log", flush=True)
            elif args.ship:
                for cmd in after_commands(name, args.judge):
                    subprocess.run(cmd, check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
