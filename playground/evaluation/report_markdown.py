"""The text of the β-VAE report: its metrics tables, the answer to "is the separation clear?"
written from the numbers, and report.md around the figures."""
from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from playground.evaluation.report_figures import N_STEPS, TRAVERSAL_DIMS, TRAVERSAL_VALUES
from playground.evaluation.separation import separation_verdict


def _fmt(value, digits: int = 3) -> str:
    """A table cell: "–" for a missing number, one decimal from 100 up, else ``digits``."""
    if value is None:
        return "–"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


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
