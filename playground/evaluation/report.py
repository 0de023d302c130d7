"""The β-VAE assignment report: figures and a Markdown summary written from measured numbers.

    python -m playground.evaluation.report vae [--models vae-beta1 vae-beta4 vae-beta10] [--out assets/report]

writes into ``--out``:
    reconstructions.png          originals, then one reconstruction row per β
    generations.png              decoded prior samples z ~ N(0, I), the same z for every β
    interpolations.png           8-step lerp in z between two test faces, per β
    tsne_smiling.png             t-SNE of μ coloured by Smiling, one panel per β
    kl_per_dim.png               per-dimension KL, sorted, per β
    traversal_<model>.png        the top-KL dimensions swept from -3 to 3 around a test face
    report.md                    metrics table and "is the separation clear?", with the numbers

Metrics come from ``trained/<name>/metrics.json`` (+ ``tsne_smiling.npz``) when they were written
by ``python -m playground.evaluation.vae <name> --write`` on the same split and size; otherwise they
are recomputed with :func:`playground.evaluation.vae.evaluate_vae`.

This module gathers the results (stored or recomputed) and runs the command; `report_figures`
draws the PNGs and `report_markdown` writes report.md.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from playground.evaluation import plots
from playground.evaluation.report_figures import (
    N_SHOW,
    figure_generations,
    figure_interpolations,
    figure_reconstructions,
    figure_traversal,
    figure_tsne,
    interpolation_pair,
)
from playground.evaluation.report_markdown import write_markdown
from playground.evaluation.vae import (
    evaluate_vae,
    first_images,
    load_tsne,
    merge_metrics,
    model_dir,
    save_tsne,
    weights_fingerprint,
)

DEFAULT_MODELS = ("vae-beta1", "vae-beta4", "vae-beta10")
# Keys a stored metrics.json must have for the report to reuse it instead of recomputing.
REQUIRED_KEYS = ("recon_bce", "kl", "kl_per_dim", "active_dims", "mig", "mig_per_factor",
                 "factor_r", "smiling_knn_acc", "smiling_silhouette", "smiling_baseline",
                 "smiling_knn_acc_mu", "n_eval", "eval_split", "n_tsne")


def model_beta(name: str, model=None, metrics: Mapping | None = None) -> float | None:
    """β of a model: from its config, its metrics, or a name like ``vae-beta4``."""
    cfg = getattr(model, "config", None)
    if cfg is not None and getattr(cfg, "beta", None) is not None:
        return float(cfg.beta)
    if metrics and metrics.get("beta") is not None:
        return float(metrics["beta"])
    match = re.search(r"beta[-_]?(\d+(?:\.\d+)?)", name)
    return float(match.group(1)) if match else None


def _beta_label(beta: float | None, name: str) -> str:
    """How a model is named in the figures and the text: by its β when known."""
    return f"β = {beta:g}" if beta is not None else name


def vae_report(
    models: Mapping[str, object],
    dataset,
    out_dir: str | Path,
    results: Mapping[str, Mapping] | None = None,
    n: int = 5000,
    n_tsne: int = 2000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write the β-VAE report for ``models`` (ordered, e.g. by β) into ``out_dir``.

    Args:
        models: {name: β-VAE with encode/decode}, in the order of the rows and panels.
        dataset: the evaluation split (a SynthFacesDataset); faces shown are its first items.
        out_dir: folder for the PNGs and report.md.
        results: {name: evaluate_vae result (with "_tsne")} to reuse; missing ones are computed.
        n, n_tsne, seed: passed to :func:`playground.evaluation.vae.evaluate_vae`.
        progress: optional callable taking a status message.
    Returns:
        {"results": {name: metrics}, "files": {figure key: path}, "betas": {name: β}}
    """
    if not models:
        raise ValueError("vae_report needs at least one model")
    say = progress or (lambda message: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = dict(results or {})
    for name, model in models.items():
        if name not in results:
            say(f"evaluating {name} on {min(n, len(dataset))} faces")
            results[name] = evaluate_vae(model, dataset, n=n, n_tsne=n_tsne, seed=seed)
    results = {name: results[name] for name in models}
    betas = {name: model_beta(name, models[name], results[name]) for name in models}
    labels = {name: _beta_label(betas[name], name) for name in models}

    images = first_images(dataset, min(max(N_SHOW, 2), len(dataset)))
    smiling = None
    attrs = getattr(dataset, "attributes", None)
    if isinstance(attrs, dict) and "Smiling" in attrs:
        smiling = np.asarray(attrs["Smiling"][:len(images)])
    latent_dim = len(next(iter(results.values()))["kl_per_dim"])

    say("drawing figures")
    files = {
        "reconstructions": figure_reconstructions(models, labels, images,
                                                  out / "reconstructions.png"),
        "generations": figure_generations(models, labels, latent_dim, seed,
                                          out / "generations.png"),
        "interpolations": figure_interpolations(models, labels, images,
                                                interpolation_pair(smiling, len(images)),
                                                out / "interpolations.png"),
        "tsne": figure_tsne(results, labels, out / "tsne_smiling.png"),
        "kl": plots.kl_bars({labels[nm]: np.asarray(r["kl_per_dim"]) for nm, r in results.items()},
                            out / "kl_per_dim.png"),
    }
    traversal_dims = {}
    for name, model in models.items():
        path, dims = figure_traversal(model, np.asarray(results[name]["kl_per_dim"]), images[0],
                                      out / f"traversal_{name}.png")
        files[f"traversal_{name}"] = path
        traversal_dims[name] = dims
    rel = {key: p.name for key, p in files.items()}
    files["report"] = write_markdown(out / "report.md", results, labels, betas, rel, traversal_dims)
    say(f"wrote {files['report']}")
    return {"results": results, "files": files, "betas": betas}


def stored_result(name: str, split: str, n: int, n_tsne: int, seed: int = 0) -> dict | None:
    """metrics.json + tsne_smiling.npz of ``trained/<name>`` if they match this evaluation."""
    folder = model_dir(name)
    path = folder / "metrics.json"
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if any(key not in stored for key in REQUIRED_KEYS):
        return None
    tsne = load_tsne(folder)
    if (stored.get("eval_weights_sha256") != weights_fingerprint(folder)
            or stored["eval_split"] != split or stored["n_eval"] != n or stored["n_tsne"] != n_tsne
            or stored.get("eval_seed", 0) != seed or tsne is None or len(tsne["labels"]) != n_tsne):
        return None
    return {**stored, "_tsne": tsne}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.evaluation.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("vae",), help="which report to write")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--out", default="assets/report")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--n", type=int, default=5000, help="faces to evaluate (default 5000)")
    parser.add_argument("--n-tsne", type=int, default=2000, help="points in the t-SNE maps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recompute", action="store_true", help="ignore stored metrics.json")
    parser.add_argument("--write", action="store_true",
                        help="store recomputed metrics in trained/<name>/metrics.json")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for this run (default: torch's choice; on a busy "
                             "2-core machine 1 thread encoded 390 img/s vs 280 with 2)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    import playground
    from playground.data.synthfaces import SPLIT_SIZES, SynthFacesDataset

    n = min(args.n, SPLIT_SIZES[args.split])
    dataset = SynthFacesDataset(args.split, n=n)
    try:
        models = {name: playground.load(name, device=args.device) for name in args.models}
    except (ValueError, FileNotFoundError) as error:  # unknown or malformed model name
        parser.error(str(error))
    results = {}
    for name in args.models:
        stored = None if args.recompute else stored_result(name, args.split, n,
                                                           min(args.n_tsne, n), args.seed)
        if stored is not None:
            print(f"{name}: using stored metrics.json", file=sys.stderr)
            results[name] = stored
            continue
        print(f"{name}: evaluating on {n} {args.split} faces", file=sys.stderr)
        results[name] = evaluate_vae(models[name], dataset, n=n, n_tsne=args.n_tsne,
                                     seed=args.seed, device=args.device)
        if args.write:
            merge_metrics(model_dir(name), results[name])
            save_tsne(model_dir(name), results[name])
    report = vae_report(models, dataset, args.out, results=results, n=n, n_tsne=args.n_tsne,
                        seed=args.seed, progress=lambda m: print(m, file=sys.stderr))
    print(report["files"]["report"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
