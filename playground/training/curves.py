"""Learning curves of the shipped models: headline quality against cumulative CPU-hours.

    python -m playground.training.curves --out assets/training_curves.png [--measure-missing]

Each panel is one model of trained/: its quality probes during training (small dots, measured
on held-out validation faces) and each shipped version (large dots, measured on test faces by
``ship --if-better``), at the CPU-hours spent on it so far (GPU-hours are noted in the
title), with its target as a dashed line. ``--measure-missing`` measures a model that has no
curve yet (`playground.evaluation.quality.measure`) and starts its curve.jsonl with that point.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playground.evaluation.quality import SECOND_NUMBERS
from playground.store.checkpoints import METRICS_FILE, trained_dir
from playground.store.files import read_json
from playground.training import cumulative_of_model
from playground.training.campaign import (
    ATTRIBUTE_FLOORS,
    MEASURED_TARGETS,
    RECIPES,
    TARGETS,
    below_floor,
    measured_target,
    target_met,
)
from playground.training.ship import CURVE_FILE, curve_point, read_curve


def start_curve(name: str, judge: str = "judge") -> list[dict]:
    """Measure trained/<name> and write its first curve point (its cumulative counters)."""
    import json

    from playground.evaluation.quality import measure, record
    from playground.store.files import atomic_write_bytes

    folder = trained_dir() / name
    scores = measure(str(folder), judge=judge)
    metrics = record(folder, scores)
    point = curve_point("shipped", cumulative_of_model(metrics), scores)
    atomic_write_bytes(folder / CURVE_FILE, (json.dumps(point) + "\n").encode("utf-8"))
    return [point]


def chain_lines(points: list[dict], key: str) -> tuple[list[float], list[float]]:
    """x (cumulative CPU-hours) and y (``key``) of the probes, with a NaN gap wherever the
    CPU-hours fall: a model retrained from scratch (e.g. β = 10's new seed) starts a new chain,
    which must not be joined to the end of the old one by a line back in time."""
    xs: list[float] = []
    ys: list[float] = []
    for p in points:
        if xs and p["cpu_hours"] < xs[-1]:
            xs.append(float("nan"))
            ys.append(float("nan"))
        xs.append(p["cpu_hours"])
        ys.append(p[key])
    return xs, ys


def second_number_axis(ax, name: str, points: list[dict], key: str) -> None:
    """The second number of a headline at its ceiling (`quality.SECOND_NUMBERS`, the U-Net's
    FD-judge from training captions) on a right-hand axis: the probes' (``probe_<key>``, small
    n), the shipped measurements and, dashed, the best β-VAE's FD its target compares with."""
    probes = [p for p in points if p.get("source") == "probe" and f"probe_{key}" in p]
    shipped = [p for p in points if p.get("source") == "shipped" and key in p]
    if not probes and not shipped:
        return
    twin = ax.twinx()
    if probes:
        twin.plot(*chain_lines(probes, f"probe_{key}"), ".-",
                  color="tab:green", ms=3, lw=0.8, label=f"{key}, probe (val faces, small n)")
    if shipped:
        twin.plot([p["cpu_hours"] for p in shipped], [p[key] for p in shipped], "s",
                  color="darkgreen", ms=6, label=f"{key}, shipped (n = 1,000)")
    metrics_path = trained_dir() / name / METRICS_FILE
    if name in MEASURED_TARGETS and metrics_path.is_file():
        best = measured_target(name, read_json(metrics_path))
        if best.get("best_vae_fd") is not None:
            twin.axhline(best["best_vae_fd"], ls=":", color="darkgreen", lw=1,
                         label=f"best β-VAE {best['best_vae_fd']:.1f}")
    twin.set_ylabel(f"{key} (lower is better)", fontsize=8, color="darkgreen")
    twin.tick_params(labelsize=7, colors="darkgreen")
    twin.legend(fontsize=6, loc="center right")


def plot(curves: dict[str, list[dict]], out: Path) -> Path:
    """One panel per model: its headline against cumulative CPU-hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = curves[name]
        target = TARGETS.get(name)
        key = target[0] if target else next((p["headline"] for p in points if "headline" in p),
                                            "small_detail_acc")
        probes = [p for p in points if p.get("source") == "probe" and key in p]
        shipped = [p for p in points if p.get("source") == "shipped" and key in p]
        if probes:
            ax.plot(*chain_lines(probes, key), ".-",
                    color="tab:blue", ms=3, lw=0.8, label="probe (val)")
        if shipped:
            ax.plot([p["cpu_hours"] for p in shipped], [p[key] for p in shipped], "o",
                    color="tab:red", ms=7, label="shipped (test)")
        if target:
            ax.axhline(target[1], ls="--", color="gray", lw=1, label=f"target {target[1]:g}")
        values = [p[key] for p in probes + shipped] + ([target[1]] if target else [])
        if values:  # from 0 CPU-hours, and the gap to the target in view
            ax.set_ylim(min(0.5, min(values) - 0.05), min(1.0, max(values) + 0.05))
        ax.set_xlim(left=0, right=max([p["cpu_hours"] for p in points] + [0.1]) * 1.15)
        gpu = max((p.get("gpu_hours", 0) for p in points), default=0)
        ax.set_title(f"{name}" + (f"  (+{gpu:.2f} GPU-h)" if gpu else ""), fontsize=10)
        ax.set_xlabel("CPU-hours (cumulative)", fontsize=8)
        ax.set_ylabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
        if SECOND_NUMBERS.get(key):
            second_number_axis(ax, name, points, SECOND_NUMBERS[key][0])
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("Quality against training time (playground.training.curves)", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def status_table(curves: dict[str, list[dict]]) -> str:
    """Markdown: each model's training so far and its headline against its target."""
    rows = ["| model | steps | CPU-hours | GPU-hours | headline | now | target | met |",
            "|---|---:|---:|---:|---|---:|---:|---|"]
    for name, points in curves.items():
        metrics_path = trained_dir() / name / METRICS_FILE
        metrics = read_json(metrics_path) if metrics_path.is_file() else {}
        done = cumulative_of_model(metrics)
        quality = metrics.get("quality", {})
        target = TARGETS.get(name)
        key = quality.get("headline", target[0] if target else "")
        value = quality.get("value")
        met = "—" if target is None or value is None else ("yes" if target_met(name) else "no")
        goal = "—" if target is None else f"{target[1]:g}"
        if name in MEASURED_TARGETS:
            goal += ", " + MEASURED_TARGETS[name][2]
        if name in ATTRIBUTE_FLOORS:
            goal += f", none below {ATTRIBUTE_FLOORS[name][1]:g}"
            low = below_floor(name, metrics)
            if value is not None and low is None:
                met += " (per attribute: not measured)"
            elif value is not None and low:
                met += " (" + ", ".join(f"{a} {v:.2f}" for a, v in low.items()) + ")"
        rows.append(f"| {name} | {done.get('steps', 0):,} | {done.get('cpu_hours', 0):.2f} | "
                    f"{done.get('gpu_hours', 0):.2f} | {key} | "
                    f"{'' if value is None else f'{value:.3f}'} | "
                    f"{goal} | {met} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("assets/training_curves.png"))
    p.add_argument("--measure-missing", action="store_true",
                   help="measure models without a curve and start theirs (takes minutes)")
    p.add_argument("--judge", default="judge")
    args = p.parse_args(argv)
    curves = {}
    for name in RECIPES:
        folder = trained_dir() / name
        if not (folder / "config.json").is_file():
            continue
        points = read_curve(folder)
        if not points and args.measure_missing:
            points = start_curve(name, args.judge)
        if points:
            curves[name] = points
    if not curves:
        print("no model has a learning curve yet (ship with --if-better, or --measure-missing)",
              file=sys.stderr)
        return 1
    print(plot(curves, args.out))
    print(status_table(curves))
    return 0


if __name__ == "__main__":
    sys.exit(main())
