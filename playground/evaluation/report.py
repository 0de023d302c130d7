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
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from playground.data.images import images_to_tensor
from playground.evaluation import plots
from playground.evaluation.separation import separation_verdict
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
N_SHOW = 8  # test faces in the reconstruction / generation rows
N_STEPS = 8  # interpolation steps, end points included
TRAVERSAL_DIMS = 8  # top-KL dimensions in a traversal grid
TRAVERSAL_VALUES = tuple(np.linspace(-3.0, 3.0, 9).round(2))  # values given to the swept dimension
SCALE = 2  # nearest-neighbour upscaling of the 64x64 faces


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


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
    return f"β = {beta:g}" if beta is not None else name


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.no_grad()
def _encode_mu(model, images_uint8: np.ndarray) -> torch.Tensor:
    """Posterior means (N, D) of uint8 images (N, 64, 64, 3), on the CPU."""
    device = _model_device(model)
    x = images_to_tensor(images_uint8).to(device)  # (N, 3, H, W)
    return model.encode(x)[0].float().cpu()


@torch.no_grad()
def _decode(model, z: torch.Tensor) -> np.ndarray:
    """uint8 (N, 64, 64, 3) images decoded from z (N, D) (a CPU tensor)."""
    p_device = _model_device(model)
    return plots.to_uint8(model.decode(z.to(p_device)))


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _pick_pair(labels: np.ndarray | None, n: int) -> tuple[int, int]:
    """Two test faces to morph between: a non-smiling and a smiling one if possible."""
    if labels is not None:
        zeros, ones = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        if len(zeros) and len(ones):
            return int(zeros[0]), int(ones[0])
    return 0, min(1, n - 1)


def figure_reconstructions(models: Mapping[str, object], labels: Mapping[str, str],
                           images: np.ndarray, path: Path) -> Path:
    rows, names = [list(images[:N_SHOW])], ["original"]
    for name, model in models.items():
        rows.append(list(_decode(model, _encode_mu(model, images[:N_SHOW]))))
        names.append(labels[name])
    return plots.save_png(plots.image_grid(rows, row_labels=names, scale=SCALE), path)


def figure_generations(models: Mapping[str, object], labels: Mapping[str, str], latent_dim: int,
                       seed: int, path: Path, per_model: int = 2 * N_SHOW) -> Path:
    z = torch.randn(per_model, latent_dim, generator=torch.Generator().manual_seed(seed))
    rows, names = [], []
    for name, model in models.items():
        decoded = list(_decode(model, z))
        for r in range(0, per_model, N_SHOW):
            rows.append(decoded[r:r + N_SHOW])
            names.append(labels[name] if r == 0 else "")
    return plots.save_png(plots.image_grid(rows, row_labels=names, scale=SCALE), path)


def figure_interpolations(models: Mapping[str, object], labels: Mapping[str, str],
                          images: np.ndarray, pair: tuple[int, int], path: Path) -> Path:
    a, b = images[pair[0]], images[pair[1]]
    t = torch.linspace(0.0, 1.0, N_STEPS)[:, None]  # (S, 1)
    rows, names = [], []
    for name, model in models.items():
        mu = _encode_mu(model, np.stack([a, b]))  # (2, D)
        z = (1 - t) * mu[0] + t * mu[1]  # (S, D): z_t = (1 - t) mu_A + t mu_B
        rows.append([a, *_decode(model, z), b])
        names.append(labels[name])
    cols = ["A", *[f"t={v:.2f}" for v in t[:, 0].tolist()], "B"]
    return plots.save_png(plots.image_grid(rows, row_labels=names, col_labels=cols, scale=SCALE),
                          path)


def figure_traversal(model, kl_per_dim: np.ndarray, base_image: np.ndarray,
                     path: Path) -> tuple[Path, list[int]]:
    """Top-KL dimensions (rows) swept over TRAVERSAL_VALUES (columns) around a face's μ."""
    kl = np.asarray(kl_per_dim)
    dims = [int(d) for d in np.argsort(-kl)[:TRAVERSAL_DIMS]]
    base = _encode_mu(model, base_image[None])[0]  # (D,)
    values = torch.tensor(TRAVERSAL_VALUES, dtype=base.dtype)
    z = base.repeat(len(dims), len(values), 1)  # (R, V, D): other coordinates stay at the face's μ
    for row, d in enumerate(dims):
        z[row, :, d] = values
    decoded = _decode(model, z.flatten(0, 1))  # (R*V, 64, 64, 3), one batched decode
    rows = [list(decoded[r * len(values):(r + 1) * len(values)]) for r in range(len(dims))]
    names = [f"z{d}\nKL {kl[d]:.2f}" for d in dims]
    cols = [f"{v:+g}" if v else "0" for v in TRAVERSAL_VALUES]
    grid = plots.image_grid(rows, row_labels=names, col_labels=cols, scale=SCALE)
    return plots.save_png(grid, path), dims


def figure_tsne(results: Mapping[str, Mapping], labels: Mapping[str, str], path: Path) -> Path:
    panels = []
    for name, res in results.items():
        tsne = res["_tsne"]
        panels.append({
            "points": tsne["points"], "labels": tsne["labels"],
            "title": (f"{labels[name]}: t-SNE of μ ({len(tsne['labels'])} faces)\n"
                      f"kNN acc {res['smiling_knn_acc']:.3f} "
                      f"(baseline {res['smiling_baseline']:.3f})"
                      f"\nsilhouette {res['smiling_silhouette']:.3f}"),
        })
    return plots.scatter_panels(panels, path)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def accuracy_noise(acc_a: float, acc_b: float, m: int) -> float:
    """About two standard errors of the difference of two accuracies measured on m points.

    SE of one accuracy p on m points is sqrt(p (1 - p) / m) (binomial); the two are treated as
    independent, which overstates the noise a little when they share the points.
    """
    var = acc_a * (1 - acc_a) / m + acc_b * (1 - acc_b) / m
    return 2.0 * float(np.sqrt(var))


def separation_paragraph(results: Mapping[str, Mapping], labels: Mapping[str, str],
                         betas: Mapping[str, float | None], k: int = 10) -> str:
    """The answer to "is the separation clear?", written from the numbers.

    It is answered for the model with the largest β (the last one when βs are unknown), then
    compared across all models in their given order.
    """
    names = list(results)
    known = [n for n in names if betas.get(n) is not None]
    focus = max(known, key=lambda n: betas[n]) if known else names[-1]
    res = results[focus]
    verdict, reason = separation_verdict(res["smiling_knn_acc"], res["smiling_baseline"],
                                         res["smiling_silhouette"],
                                         res.get("smiling_knn_balanced_acc"))
    answer = {"clear": "Yes", "partial": "Partly", "none": "No"}[verdict]
    m = res["n_tsne"] if "n_tsne" in res else len(res["_tsne"]["labels"])
    lines = [
        f"**{answer}.** For {labels[focus]}, a {k}-nearest-neighbour classifier on the 2-D t-SNE "
        f"map of μ ({m} test faces, 5-fold cross-validation) predicts Smiling with accuracy "
        f"**{res['smiling_knn_acc']:.3f}**, against **{res['smiling_baseline']:.3f}** for always "
        f"guessing the majority class; the silhouette score of the two classes is "
        f"**{res['smiling_silhouette']:.3f}**. So {reason}.",
    ]
    acc_mu = res.get("smiling_knn_acc_mu")
    if acc_mu is not None:
        delta = res["smiling_knn_acc"] - acc_mu
        noise = accuracy_noise(res["smiling_knn_acc"], acc_mu, m)
        if abs(delta) < noise:
            how = (f"keeps about the same neighbourhood information (difference {delta:+.3f}, "
                   f"within the sampling noise of ±{noise:.3f})")
        else:
            how = (f"{'loses some of' if delta < 0 else 'sharpens'} the neighbourhood "
                   f"information ({delta:+.3f}, beyond the sampling noise of ±{noise:.3f})")
        lines.append(f"In the full {len(res['kl_per_dim'])}-D μ space the same classifier reaches "
                     f"{acc_mu:.3f}, so the 2-D map {how}.")
    smile_r = res.get("factor_r", {}).get("smile")
    if smile_r and smile_r.get("dim", -1) >= 0:
        lines.append(f"The single latent dimension most correlated with the smile factor is "
                     f"z{smile_r['dim']} (r = {smile_r['r']:+.3f}).")
    if len(names) > 1:
        per = ", ".join(f"{labels[n]}: {results[n]['smiling_knn_acc']:.3f} / "
                        f"{results[n]['smiling_silhouette']:.3f}" for n in names)
        accs = [results[n]["smiling_knn_acc"] for n in names]
        noise = accuracy_noise(max(accs), min(accs), m)
        ascending = len(known) == len(names) and all(
            betas[a] < betas[b] for a, b in zip(names, names[1:]))
        if max(accs) - min(accs) < noise:
            trend = (f"the differences in kNN accuracy are within the sampling noise "
                     f"(±{noise:.3f})")
        else:
            direction = ("rises" if all(b >= a for a, b in zip(accs, accs[1:])) else
                         "falls" if all(b <= a for a, b in zip(accs, accs[1:])) else
                         "is not monotonic")
            trend = (f"the kNN accuracy {direction} "
                     f"{'as β grows' if ascending else 'in this order'}")
        lines.append(f"Across models (kNN accuracy / silhouette): {per}; {trend}.")
    return " ".join(lines)


def metrics_table(results: Mapping[str, Mapping], betas: Mapping[str, float | None]) -> str:
    head = ("| model | β | recon BCE ↓ | KL | ELBO ↑ | active dims | MIG ↑ "
            "| best r with light (dim) | Smiling kNN acc (t-SNE 2-D) | kNN acc (μ) "
            "| silhouette (t-SNE) | majority baseline |")
    sep = "|" + "---|" * 12
    rows = [head, sep]
    for name, r in results.items():
        light = r.get("factor_r", {}).get("light")
        light_s = f"{light['r']:+.3f} (z{light['dim']})" if light and light["dim"] >= 0 else "–"
        rows.append(
            f"| {name} | {'–' if betas.get(name) is None else f'{betas[name]:g}'} "
            f"| {r['recon_bce']:.1f} | {r['kl']:.2f} | {r['elbo']:.1f} | {r['active_dims']} "
            f"| {_fmt(r.get('mig'))} | {light_s} | {r['smiling_knn_acc']:.3f} "
            f"| {_fmt(r.get('smiling_knn_acc_mu'))} | {r['smiling_silhouette']:.3f} "
            f"| {r['smiling_baseline']:.3f} |")
    return "\n".join(rows)


def factor_table(results: Mapping[str, Mapping], labels: Mapping[str, str]) -> str:
    """Per factor: MIG_k and the best single-dimension r for every model."""
    names = list(results)
    factors = list(next(iter(results.values())).get("factor_r", {}))
    if not factors:
        return ""
    head = "| factor | " + " | ".join(f"{labels[n]}: MIG_k / r (dim)" for n in names) + " |"
    rows = [head, "|---|" + "---|" * len(names)]
    for f in factors:
        cells = []
        for n in names:
            fr = results[n]["factor_r"].get(f, {})
            mig_k = results[n].get("mig_per_factor", {}).get(f)
            cat = f" [{fr['category']}]" if fr.get("category") is not None else ""
            r_s = f"{fr['r']:+.2f} (z{fr['dim']}){cat}" if fr.get("dim", -1) >= 0 else "–"
            cells.append(f"{_fmt(mig_k, 2)} / {r_s}")
        rows.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_markdown(path: Path, results: Mapping[str, Mapping], labels: Mapping[str, str],
                   betas: Mapping[str, float | None], figures: Mapping[str, str],
                   traversal_dims: Mapping[str, list[int]]) -> Path:
    first = next(iter(results.values()))
    n, split = first["n_eval"], first.get("eval_split") or "evaluation"
    k = first.get("smiling_knn_k", 10)
    parts = [
        "# β-VAE report",
        "",
        f"Generated by `python -m playground.evaluation.report vae` on {_dt.date.today().isoformat()} from "
        f"the first {n} faces of the SynthFaces {split} split. Every number below is measured; "
        "the text is written from them.",
        "",
        "## Metrics",
        "",
        metrics_table(results, betas),
        "",
        "- **recon BCE**: −log p(x | z) summed over the 3×64×64 pixels (nats per image), one "
        "z ~ q(z | x) per image; **KL**: KL(q(z | x) ‖ N(0, I)) summed over dimensions; "
        "**ELBO** = −(recon BCE + KL).",
        "- **active dims**: dimensions with mean KL > 0.01 nats. **MIG**: mutual information gap "
        "(Chen et al. 2018) of μ against the 16 SynthFaces factors, 20-bin histogram estimate.",
        "- **best r with light**: the Pearson correlation of the light factor with the single "
        "dimension of μ that tracks it best.",
        f"- **kNN acc**: {k}-nearest-neighbour accuracy predicting Smiling, 5-fold cross-validated,"
        " on the t-SNE map and in the full μ space; **silhouette** of the Smiling classes on the "
        "t-SNE map; **majority baseline**: accuracy of always guessing the more common class.",
        "",
        "## Is the separation clear?",
        "",
        separation_paragraph(results, labels, betas, k=k),
        "",
        f"![t-SNE of μ coloured by Smiling]({figures['tsne']})",
        "",
        "## Reconstructions",
        "",
        "First row: test faces; then their reconstructions decode(μ) for each β.",
        "",
        f"![reconstructions]({figures['reconstructions']})",
        "",
        "## Random generations",
        "",
        "Decoded prior samples z ~ N(0, I); the same z for every β.",
        "",
        f"![generations]({figures['generations']})",
        "",
        "## Interpolations",
        "",
        f"Linear interpolation z_t = (1 − t)·μ_A + t·μ_B in {N_STEPS} steps between two test "
        "faces (originals at both ends).",
        "",
        f"![interpolations]({figures['interpolations']})",
        "",
        "## KL per dimension",
        "",
        f"![KL per dimension]({figures['kl']})",
        "",
        "## Traversals",
        "",
        f"Each row sweeps one of the {TRAVERSAL_DIMS} highest-KL dimensions over "
        f"{', '.join(f'{v:g}' for v in TRAVERSAL_VALUES)} while the other coordinates stay at a "
        "test face's μ.",
        "",
    ]
    for name in results:
        dims = ", ".join(f"z{d}" for d in traversal_dims[name])
        image = figures["traversal_" + name]
        parts += [f"**{labels[name]}** ({dims}):", "", f"![traversal {name}]({image})", ""]
    factors = factor_table(results, labels)
    if factors:
        parts += ["## Per-factor disentanglement", "",
                  "MIG_k = (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k) and the signed Pearson r "
                  "of the best single dimension (for multi-category factors: the best one-vs-rest "
                  "category, in brackets).", "", factors, ""]
    path.write_text("\n".join(parts))
    return path


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


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
                                                _pick_pair(smiling, len(images)),
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
