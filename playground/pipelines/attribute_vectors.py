"""Attribute vectors: editing a face by arithmetic in a β-VAE's latent space, and measuring it.

    v = attribute_vectors("vae-beta1")["Smiling"]       # (D,) float32
    z = encode_mean(model, face[None])[0] + 1.5 * v       # "+ smile"
    table = edit_scores("vae-beta1", judge)               # does the edit do only what it says?

For each attribute a, v_a = mean μ(x) of the training faces that have a − mean μ(x) of those
that do not (White 2016, "Sampling generative networks"; the VAE-era "smile vector"). A
traversal moves ONE latent dimension; a vector moves along the direction the data says the
attribute lies in, whatever the basis. How clean that edit is tells the disentanglement lesson
from the other side: `edit_scores` adds α·v to faces without the attribute and asks the judge
whether the attribute appears (success) and whether the other attributes stay as they were.

Vectors are computed once per model from the first `TRAIN_FACES` faces of the SynthFaces train
split and cached in the cache folder (``$PLAYGROUND_CACHE/attribute-vectors/``), keyed by the
SHA-256 of the weights, so a retrained model gets new ones and trained/ is never written.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from playground.data.images import images_to_tensor
from playground.pipelines import vae as ops
from playground.store import checkpoints, disk_cache, files
from playground.store.model_cache import weights_sha256

TRAIN_FACES = 5000  # faces of the train split that define the vectors
EDIT_FACES = 500  # test faces whose edits are judged
ALPHAS = (1.0, 2.0)  # edit strengths in the report's table
EDITS = ("Smiling", "Eyeglasses", "Wearing_Hat", "Blond_Hair", "Mustache", "Wearing_Lipstick",
         "Mouth_Slightly_Open", "Bald")  # the vectors the Traverse tab offers


def _cache_file(model_name: str) -> Path:
    folder = checkpoints.resolve_model_dir(model_name, allow_paths=False)
    digest = weights_sha256(folder / checkpoints.WEIGHTS_FILE)[:16]
    return disk_cache.cache_dir() / "attribute-vectors" / f"{model_name}-{digest}.npz"


def attribute_vectors(model_name: str, n: int = TRAIN_FACES) -> dict[str, np.ndarray]:
    """{attribute: v (D,) float32} for a β-VAE by name (cached; see the module doc).
    An attribute that no face (or every face) of the first `n` has gets no vector."""
    from playground.data.synthfaces import SynthFacesDataset

    path = _cache_file(model_name)
    if (path, n) in _memory:
        return _memory[(path, n)]
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["n"]) == n:
                    _memory[(path, n)] = {k.removeprefix("v_"): np.asarray(z[k], np.float32)
                                          for k in z.files if k.startswith("v_")}
                    return _memory[(path, n)]
        except (OSError, ValueError, KeyError):
            pass  # damaged: recompute
    model = ops.get_model(model_name)
    faces = SynthFacesDataset("train", n=n)
    mu = ops.encode_mean(model, faces.images)  # (n, D)
    vectors = {}
    for name, values in faces.attributes.items():
        has = np.asarray(values[:n]).astype(bool)
        if 0 < has.sum() < n:
            vectors[name] = (mu[has].mean(axis=0) - mu[~has].mean(axis=0)).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, n=np.array(n), **{f"v_{k}": v for k, v in vectors.items()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass  # a read-only cache: the vectors are still returned
    _memory[(path, n)] = vectors
    return vectors


_memory: dict = {}  # (cache file, n) → vectors: a slider move reads no file


def edit_scores(model_name: str, judge, attributes: tuple[str, ...] = EDITS,
                alphas: tuple[float, ...] = ALPHAS, n: int = EDIT_FACES) -> dict[str, dict]:
    """How well "+ α·v_a" adds attribute a and nothing else, on the first `n` test faces.

    For each attribute a and α: the faces of the test split the judge does NOT read a on
    (in their plain reconstruction decode(μ)) get z = μ + α·v_a; then
      ``success`` = share of them on which the judge now reads a,
      ``kept`` = share of (face, other attribute) pairs the judge reads as in the plain
      reconstruction (1 = the edit changed nothing else).
    Returns {attribute: {"faces": m, "alpha=<α>": {"success", "kept"}}}.
    """
    from playground.data.synthfaces import SynthFacesDataset
    from playground.evaluation.quality import judge_attributes

    model = ops.get_model(model_name)
    vectors = attribute_vectors(model_name)
    faces = SynthFacesDataset("test", n=n).images
    mu = ops.encode_mean(model, faces)

    def read(z: np.ndarray) -> dict[str, np.ndarray]:
        return judge_attributes(judge, images_to_tensor(ops.decode(model, z)))

    plain = read(mu)
    out = {}
    for a in attributes:
        if a not in vectors or a not in plain:
            continue
        rows = ~plain[a]
        entry = {"faces": int(rows.sum())}
        others = [b for b in plain if b != a]
        for alpha in alphas:
            if not rows.any():
                break
            edited = read(mu[rows] + alpha * vectors[a])
            kept = np.mean([np.mean(edited[b] == plain[b][rows]) for b in others])
            entry[f"alpha={alpha:g}"] = {"success": float(edited[a].mean()),
                                         "kept": float(kept)}
        out[a] = entry
    return out


def edit_table(results: dict[str, dict[str, dict]], alphas: tuple[float, ...] = ALPHAS) -> str:
    """Markdown: one row per model and attribute, success / kept per α."""
    head = "| model | attribute | faces | " + " | ".join(
        f"success α={a:g} | kept α={a:g}" for a in alphas) + " |"
    lines = [head, "|---|---|---:|" + "---:|---:|" * len(alphas)]
    for model, per in results.items():
        for attribute, entry in per.items():
            cells = []
            for a in alphas:
                r = entry.get(f"alpha={a:g}")
                cells += [f"{r['success']:.2f}", f"{r['kept']:.2f}"] if r else ["–", "–"]
            lines.append(f"| {model} | {attribute} | {entry['faces']} | " + " | ".join(cells)
                         + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m playground.pipelines.attribute_vectors vae-beta1 vae-beta4 vae-beta10``: the table."""
    p = argparse.ArgumentParser(prog="python -m playground.pipelines.attribute_vectors",
                                description="Judge attribute-vector edits of β-VAEs.")
    p.add_argument("names", nargs="+", help="β-VAE model names")
    p.add_argument("--judge", default="judge")
    p.add_argument("--faces", type=int, default=EDIT_FACES, help="test faces to edit")
    args = p.parse_args(argv)
    judge = checkpoints.load_model(args.judge)
    results = {name: edit_scores(name, judge, n=args.faces) for name in args.names}
    print(edit_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
