"""The Latent map: a 2-D picture of where a β-VAE puts faces in its latent space (no UI here).

The first N faces of the SynthFaces test split are encoded to their posterior means μ(x), and
μ is projected to 2-D with t-SNE, UMAP or PCA (`playground.evaluation.projection`). Every point can then be
coloured by any CelebA-named attribute or SynthFaces factor, and a separation score says how
well the neighbourhood of a point predicts its colour.

    m = latent_map("vae-beta4", method="tsne", n_points=2000, seed=0)
    m["points"]                       # (N, 2) float32, row i = test face i
    c = colour_values(m, "Smiling")   # {"kind": "attribute", "values": (N,), ...}
    separation(m["points"], c["labels"])   # playground.evaluation.separation: kNN accuracy, silhouette …

Caches, so the first view is instant:
    memory   the last few maps, keyed by model file, method, N and seed;
    files    ``latent_map_<method>_<N>.npz`` (``..._seed<S>.npz`` for seed ≠ 0) in the model
             folder (shipped with it, by the CLI below) or in ``$PLAYGROUND_CACHE/latent-maps/
             <model>/`` (written by the app after every computation; never into trained/,
             which may be read-only). np.savez, read with allow_pickle=False. It holds
             the points and μ. It is used when its μ of the first faces matches what the model
             encodes now (within `CHECK_TOLERANCE`): a functional fingerprint that survives the
             fp16 copy `playground.training.ship` makes, and rejects any other model;
             ``<model folder>/tsne_smiling.npz`` from ``python -m playground.evaluation.vae --write``
             (t-SNE, no μ), used when its split, seed, size and Smiling labels match and
             metrics.json's ``eval_weights_sha256`` is the current weights' SHA-256.
``python -m playground.pipelines.latent_map NAME [--method tsne umap pca] [--n 2000]`` precomputes the
files (e.g. before shipping a model).

Text search (ranking the faces by CLIP similarity to a query) is `playground.pipelines.text_search`.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from playground.data import synthfaces as sf
from playground.evaluation import projection
from playground.pipelines import vae as ops
from playground.pipelines.inputs import check_seed, whole_number
from playground.store import checkpoints, disk_cache, files
from playground.store.model_cache import weights_sha256

METHODS = projection.METHODS  # ("tsne", "umap", "pca")
METHOD_LABELS = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}
MIN_POINTS, MAX_POINTS = 100, 5000  # faces on a map (the test split has 5,000)
DEFAULT_POINTS = 2000  # = evaluate's n_tsne, so its tsne_smiling.npz serves the default map
SPLIT = "test"  # the faces shown are the first N of this split
CHECK_FACES = 8  # faces re-encoded to check that a cache file belongs to the model
CHECK_TOLERANCE = 0.05  # max |Δμ| allowed for those faces (fp16 weights/storage move μ ~1e-3)
CACHE_FORMAT = 1  # bump when the file layout changes
MEMORY_CACHE = 6  # maps kept in memory
RENDER_CHUNK = 250  # faces rendered between progress reports
TSNE_FILE = "tsne_smiling.npz"  # written by `python -m playground.evaluation.vae --write`

Progress = Callable[[float, str], None]

_memory: OrderedDict[tuple, dict] = OrderedDict()
_memory_lock = threading.Lock()
_compute_lock = threading.Lock()  # one embedding at a time: the CPU has two cores


# --------------------------------------------------------------------------------- inputs
def check_method(method) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def check_points(n_points) -> int:
    n = whole_number(n_points, "number of points")
    if not MIN_POINTS <= n <= MAX_POINTS:
        raise ValueError(f"number of points must be between {MIN_POINTS} and {MAX_POINTS}, "
                         f"got {n}")
    return n


def cache_file_name(method: str, n: int, seed: int) -> str:
    """``latent_map_<method>_<n>.npz`` (seed 0) or ``latent_map_<method>_<n>_seed<seed>.npz``."""
    return f"latent_map_{method}_{n}" + (f"_seed{seed}" if seed else "") + ".npz"


def embed_params(method: str) -> str:
    """The embedding settings as JSON (stored in a cache file; a change invalidates it)."""
    params = {"tsne": projection.TSNE_DEFAULTS, "umap": projection.UMAP_DEFAULTS, "pca": {}}[method]
    return json.dumps(params, sort_keys=True)


# --------------------------------------------------------------------------------- the map
def latent_map(model_name: str, method: str = "tsne", n_points: int = DEFAULT_POINTS,
               seed: int = 0, progress: Progress | None = None, use_cache: bool = True,
               write_cache: bool = True, cached_only: bool = False,
               write_to: str | Path | None = None) -> dict | None:
    """2-D map of μ(x) for the first `n_points` SynthFaces test faces.

    Args:
        model_name: a β-VAE name (trained/ then runs/), as in `pipelines.vae.get_model`.
        method: "tsne", "umap" or "pca".
        n_points: faces on the map, 100 … 5000 (test faces 0 … n_points − 1).
        seed: random state of the embedding (t-SNE/UMAP; PCA ignores it in practice).
        progress: optional ``progress(fraction, message)``, called while computing.
        use_cache: look in memory, in the model folder (maps shipped with it) and in the
            cache folder first.
        write_cache: save a computed map in the cache folder (`map_cache_dir`; never in
            trained/, which may be read-only; ``cache_note`` says when it cannot be written).
        cached_only: return None instead of computing (e.g. when a page opens).
        write_to: save it in this folder instead (the CLI writes next to a model to ship).
    Returns:
        dict with ``points`` (N, 2) float32; ``mu`` (N, D) float32, or None when the points
        came from evaluate's tsne_smiling.npz (it stores no μ); ``indices`` (N,) int64, the
        test-split index of each point; ``factors`` {name: (N,)} and ``attributes``
        {name: (N,) uint8}; ``model``, ``method``, ``n``, ``seed``; ``source`` ("memory",
        "file <name>" or "computed"); ``seconds`` (time of this call); ``cache_note``.
        Arrays are read-only (they may be shared with the cache).
    Raises:
        ValueError: unknown model or method, n_points or seed out of range.
    """
    t0 = time.perf_counter()
    method, n, seed = check_method(method), check_points(n_points), check_seed(seed)
    model = ops.get_model(model_name)  # validates the name (clear errors) and loads it
    folder = checkpoints.resolve_model_dir(model_name, allow_paths=False)
    weights = folder / checkpoints.WEIGHTS_FILE
    st = weights.stat()
    key = (str(folder), st.st_mtime_ns, st.st_size, method, n, seed)

    if use_cache:
        hit = _memory_get(key)
        if hit is not None:
            return {**hit, "source": "memory", "seconds": time.perf_counter() - t0}
    factors = sf.generate_factors(n, sf.SPLIT_SEEDS[SPLIT])  # cheap: no rendering
    attributes = sf.attributes_from_factors(factors)
    base = {"model": model_name, "method": method, "n": n, "seed": seed,
            "indices": np.arange(n, dtype=np.int64), "factors": factors,
            "attributes": attributes, "cache_note": ""}

    found = None
    for place in (folder, map_cache_dir(model_name)) if use_cache else ():
        found = _from_files(model, place, method, n, seed, attributes)
        if found is not None:
            break
    if found is None and cached_only:
        return None
    if found is None:
        with _compute_lock:  # a second request for the same map waits, then hits memory
            hit = _memory_get(key) if use_cache else None
            if hit is not None:
                return {**hit, "source": "memory", "seconds": time.perf_counter() - t0}
            points, mu = _compute(model, factors, method, seed, progress)
        result = {**base, "points": points, "mu": mu, "source": "computed"}
        if write_cache:
            result["cache_note"] = _write_file(Path(write_to) if write_to else
                                               map_cache_dir(model_name), result)
    else:
        points, mu, source = found
        result = {**base, "points": points, "mu": mu, "source": f"file {source}"}
    for value in (result["points"], result["mu"], result["indices"],
                  *factors.values(), *attributes.values()):
        if value is not None:
            value.setflags(write=False)
    _memory_put(key, result)
    return {**result, "seconds": time.perf_counter() - t0}


def clear_cache() -> None:
    """Forget the maps held in memory (files stay); tests and benchmarks of the first view."""
    with _memory_lock:
        _memory.clear()


def _memory_get(key: tuple) -> dict | None:
    with _memory_lock:
        hit = _memory.get(key)
        if hit is not None:
            _memory.move_to_end(key)
        return hit


def _memory_put(key: tuple, result: dict) -> None:
    with _memory_lock:
        _memory[key] = {k: v for k, v in result.items() if k != "seconds"}
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_CACHE:
            _memory.popitem(last=False)


def _compute(model, factors: dict, method: str, seed: int,
             progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Render the faces, encode them, embed μ → (points (N, 2), mu (N, D))."""
    report = progress or (lambda fraction, message: None)
    n = len(next(iter(factors.values())))
    images = np.empty((n, sf.IMAGE_SIZE, sf.IMAGE_SIZE, 3), np.uint8)
    for start in range(0, n, RENDER_CHUNK):  # rendering: ~0.5-2 ms a face on one core
        report(0.3 * start / n, f"rendering test faces {start}–{min(start + RENDER_CHUNK, n)} "
                                f"of {n}")
        images[start:start + RENDER_CHUNK] = sf.render(
            {k: v[start:start + RENDER_CHUNK] for k, v in factors.items()})
    mus = []
    for start in range(0, n, 500):
        report(0.3 + 0.2 * start / n, f"encoding faces {start}–{min(start + 500, n)} of {n}")
        mus.append(ops.encode_mean(model, images[start:start + 500]))
    mu = np.concatenate(mus)  # (N, D)

    def embed_progress(fraction: float, message: str) -> None:
        report(0.5 + 0.5 * fraction, message)

    points = projection.embed(mu, method=method, seed=seed, progress=embed_progress)
    return points.astype(np.float32), mu.astype(np.float32)


# --------------------------------------------------------------------------------- cache files
def _check_mu(model, factors: dict) -> np.ndarray:
    """μ of the first CHECK_FACES faces under the model now → (C, D)."""
    few = {k: v[:CHECK_FACES] for k, v in factors.items()}
    return ops.encode_mean(model, sf.render(few))


def _from_files(model, folder: Path, method: str, n: int, seed: int,
                attributes: dict) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """(points, mu or None, file name) from a valid cache file in `folder`, else None."""
    path = folder / cache_file_name(method, n, seed)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                meta_ok = (int(z["format"]) == CACHE_FORMAT and str(z["method"]) == method
                           and int(z["n"]) == n and int(z["seed"]) == seed
                           and str(z["split"]) == SPLIT
                           and int(z["renderer_version"]) == sf.RENDERER_VERSION
                           and str(z["embed_params"]) == embed_params(method))
                points = np.asarray(z["points"], np.float32)
                mu = np.asarray(z["mu"], np.float32)
        except (OSError, ValueError, KeyError):  # damaged or foreign file: recompute
            meta_ok = False
        if (meta_ok and points.shape == (n, 2) and mu.shape == (n, int(model.config.latent_dim))
                and np.all(np.isfinite(points))):
            factors = sf.generate_factors(CHECK_FACES, sf.SPLIT_SEEDS[SPLIT])
            if np.max(np.abs(_check_mu(model, factors) - mu[:CHECK_FACES])) <= CHECK_TOLERANCE:
                return points, mu, path.name
    if method == "tsne":
        found = _from_evaluate_file(folder, n, seed, attributes)
        if found is not None:
            return found, None, TSNE_FILE
    return None


def _from_evaluate_file(folder: Path, n: int, seed: int, attributes: dict) -> np.ndarray | None:
    """Points of evaluate's tsne_smiling.npz if it is this map of these weights, else None."""
    path = folder / TSNE_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            points = np.asarray(z["points"], np.float32)
            labels = np.asarray(z["labels"])
            ok = str(z["eval_split"]) == SPLIT and int(z["eval_seed"]) == seed
        recorded = files.read_json(folder / checkpoints.METRICS_FILE).get(
            "eval_weights_sha256")
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    if not ok or points.shape != (n, 2) or not np.array_equal(labels, attributes["Smiling"]):
        return None
    if recorded is None or recorded != weights_sha256(folder / checkpoints.WEIGHTS_FILE):
        return None
    return points


def map_cache_dir(model_name: str) -> Path:
    """Where the app keeps the maps it computes for `model_name`: the cache folder
    (``$PLAYGROUND_CACHE``), never trained/. A file there is used only while its μ of the
    first faces matches the model's (see the module doc), so a retrained model is safe."""
    return disk_cache.cache_dir() / "latent-maps" / model_name


def _write_file(folder: Path, result: dict) -> str:
    """Save a computed map in `folder` → a note ("" when written)."""
    buf = io.BytesIO()
    np.savez(buf, format=np.array(CACHE_FORMAT), method=np.array(result["method"]),
             n=np.array(result["n"]), seed=np.array(result["seed"]), split=np.array(SPLIT),
             renderer_version=np.array(sf.RENDERER_VERSION),
             embed_params=np.array(embed_params(result["method"])),
             points=result["points"].astype(np.float32),
             mu=result["mu"].astype(np.float16))  # half the size; |error| ~ 1e-3 of μ
    path = folder / cache_file_name(result["method"], result["n"], result["seed"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        files.atomic_write_bytes(path, buf.getvalue())
    except OSError as err:
        return f"not cached: cannot write {path.name} in {folder} ({err.strerror})"
    return ""


# --------------------------------------------------------------------------------- colours
def colour_names() -> list[str]:
    """Everything a map can be coloured by: the CelebA attributes, then the factors."""
    return list(sf.ATTRIBUTE_NAMES) + list(sf.FACTOR_NAMES)


def check_colour(name) -> str:
    """`name` if a map can be coloured by it, else ValueError listing the choices."""
    if name not in colour_names():
        raise ValueError(f"unknown colour {name!r}: choose an attribute "
                         f"({', '.join(sf.ATTRIBUTE_NAMES)}) or a factor "
                         f"({', '.join(sf.FACTOR_NAMES)})")
    return name


def colour_values(result: dict, name: str) -> dict:
    """The values of one attribute or factor for every point of a map.

    Returns:
        dict with ``name``; ``kind``: "attribute" (0/1, categories ("no", "yes")),
        "categorical" (a factor's category index, ``categories`` its names) or "continuous"
        (``values`` float, ``range`` (lo, hi) of the factor); ``values`` (N,); ``labels``
        (N,) int64 classes for `separation` (a continuous factor is split at its median:
        ``labels`` = value > median) and ``label_note`` saying how they were made.
    Raises:
        ValueError: a name that is neither an attribute nor a factor (the message lists them).
    """
    check_colour(name)
    if name in sf.ATTRIBUTE_NAMES:
        values = np.asarray(result["attributes"][name])
        return {"name": name, "kind": "attribute", "values": values, "categories": ("no", "yes"),
                "range": None, "labels": values.astype(np.int64), "label_note": ""}
    if name in sf.CATEGORICAL_FACTORS:
        values = np.asarray(result["factors"][name])
        return {"name": name, "kind": "categorical", "values": values,
                "categories": tuple(sf.CATEGORICAL_FACTORS[name]), "range": None,
                "labels": values.astype(np.int64), "label_note": ""}
    if name in sf.CONTINUOUS_FACTORS:
        values = np.asarray(result["factors"][name], np.float32)
        median = float(np.median(values))
        return {"name": name, "kind": "continuous", "values": values, "categories": None,
                "range": sf.CONTINUOUS_FACTORS[name],
                "labels": (values > median).astype(np.int64),
                "label_note": f"{name} split at its median {median:.2f}"}
    raise AssertionError(name)  # check_colour let through a name of neither kind


# --------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.pipelines.latent_map",
                                     description="Precompute latent maps next to a model so "
                                                 "the Latent map tab opens instantly.")
    parser.add_argument("names", nargs="+", help="β-VAE model names (e.g. vae-beta4)")
    parser.add_argument("--method", nargs="+", default=["tsne"], choices=METHODS)
    parser.add_argument("--n", type=int, default=DEFAULT_POINTS,
                        help=f"points per map ({MIN_POINTS}–{MAX_POINTS})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def progress(fraction, message):
        print(f"  [{fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    for name in args.names:
        for method in args.method:
            try:
                folder = checkpoints.resolve_model_dir(name, allow_paths=False)
                result = latent_map(name, method, args.n, args.seed, progress=progress,
                                    write_to=folder)
            except ValueError as err:
                parser.error(str(err))
            print(f"{name} {method} {args.n}: {result['source']}, {result['seconds']:.1f} s"
                  + (f" ({result['cache_note']})" if result["cache_note"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
