"""What the Traverse and Morph tabs do with a trained β-VAE, as pure functions (no UI).

Shapes: N = images, D = latent dimensions (128 for the shipped models), V = values per
traversed dimension, T = frames. Images crossing this module's boundary are numpy uint8
(N, 64, 64, 3) (what the UI shows); latents are numpy float32 (N, D) or (D,).

    model = get_model("vae-beta10")                 # LRU-cached, reloaded when the file changes
    order, kl = dims_by_kl(model)                   # dims ranked by KL on 512 SynthFaces val faces
    mu = encode_mean(model, images)                 # (N, D): z = μ, the posterior mean
    grid = traversal_grid(model, mu[0], order[:8], np.linspace(-3, 3, 9))   # (8, 9, 64, 64, 3)
    path = interpolate(mu[0], mu[1], steps=8, mode="slerp")                 # (8, D)
    gif = gif_bytes(decode(model, path), fps=8, pingpong=True)              # bytes

Speed: all torch work here runs on one thread, in chunks of 64 images (`inference`). On the
2-core machine with other work running (training), one thread is several times faster than two
for these small models: a 1-face decode takes ~2 ms against ~8 ms, 8 faces ~13 ms against
~60 ms, 512 encodes ~0.5 s against ~1.1 s (OpenMP threads wait for a busy core). Under OpenMP
the thread count belongs to the calling thread, so other threads (other app requests, a
training thread) are unaffected, and it is restored on exit.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from playground.data.images import IMAGE_SIZE, images_to_tensor, tensor_to_images
from playground.evaluation.metrics import kl_per_dim
from playground.pipelines.inputs import check_seed, whole_number
from playground.store import checkpoints
from playground.store.model_cache import StampedCache, weights_stamp

CACHE_SIZE = 4  # models kept loaded (3 shipped βs + one run)
REFERENCE_SIZE = 512  # SynthFaces val faces used to rank latent dimensions by KL
CHUNK = 64  # images per forward pass when encoding/decoding a large batch
INTERPOLATION_MODES = ("lerp", "slerp")
TEST_SPLIT = "test"  # the split "a face from the data" indexes into

_models = StampedCache(CACHE_SIZE)  # name → loaded β-VAE, reloaded when its weights change
_kl_cache: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[np.ndarray, np.ndarray]]" = (
    weakref.WeakKeyDictionary())
_kl_lock = threading.Lock()


# --------------------------------------------------------------------------------- models
def list_vae_models() -> list[str]:
    """Names of the β-VAE models `get_model` can open (trained/ first, then runs/)."""
    return [m["name"] for m in checkpoints.list_models(kind="vae")]


def default_model(names: list[str], preferred: str = "vae-beta10") -> str | None:
    """`preferred` if it is in `names`, else the first name, else None (no models)."""
    if preferred in names:
        return preferred
    return names[0] if names else None


def model_beta(model: torch.nn.Module) -> float:
    """The β the model was trained with (from its config)."""
    return float(model.config.beta)


def get_model(name: str) -> torch.nn.Module:
    """A β-VAE by bare name (e.g. ``"vae-beta4"``), from a small LRU cache.

    The cache is keyed by name and checked against the weights file's modification time and
    size, so a run that writes a new checkpoint is reloaded on the next call.

    Raises:
        ValueError: no name, an unsafe name, an unknown name (the message lists the available
            models) or a model that is not a β-VAE.
    """
    if not name:
        available = list_vae_models()
        raise ValueError("no β-VAE model chosen: " + (f"pick one of {', '.join(available)}"
                                                      if available else no_models_hint()))
    if not isinstance(name, str) or not checkpoints.is_valid_name(name):
        raise ValueError(f"invalid model name {name!r}: use a name from the list "
                         f"({', '.join(list_vae_models()) or 'none available'})")
    # An unknown name raises ModelNotFoundError, a ValueError listing the available models.
    folder = checkpoints.resolve_model_dir(name, allow_paths=False)
    stamp = weights_stamp(folder)

    def load():
        kind = checkpoints.read_json(folder / checkpoints.CONFIG_FILE).get("kind")
        if kind != "vae":
            raise ValueError(f"model {name!r} is a {kind!r} model, not a β-VAE")
        return checkpoints.load_model(name, allow_paths=False)

    return _models.get(name, stamp, load)


def clear_model_cache() -> None:
    """Forget every loaded model (tests; after deleting a run)."""
    _models.clear()


def no_models_hint() -> str:
    """What to say when there is no β-VAE: where the app looked and how to train one."""
    return (f"no β-VAE models found in {checkpoints.trained_dir()} or {checkpoints.runs_dir()}. "
            "Train one with `python -m playground.train vae --beta 4 --minutes 10` "
            "(it appears as runs/vae-beta4).")


# --------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def inference():
    """inference_mode on one torch thread (the caller's thread count is restored afterwards):
    on the 2-core machine with training running, one thread is faster for these small models.
    Wrap every chunk of work, not a whole generator (a UI may resume it on another thread)."""
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _param(model: torch.nn.Module) -> torch.Tensor:
    return next(model.parameters())


def _latent_dim(model: torch.nn.Module) -> int:
    return int(model.config.latent_dim)


def _as_latents(z, d: int, name: str = "z") -> np.ndarray:
    """float32 (N, d) copy of a numpy array / tensor / list, with clear errors."""
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != d:
        raise ValueError(f"{name} must have shape (N, {d}), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z


def _as_vector(z, name: str) -> np.ndarray:
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"{name} must be a latent vector of shape (D,), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z


# --------------------------------------------------------------------------------- encode / decode
def encode_moments(model, images) -> tuple[np.ndarray, np.ndarray]:
    """q(z | x) = N(μ, diag σ²) for each image → (mu (N, D), logvar (N, D)), float32.

    Args:
        images: uint8 (N, 64, 64, 3), or float in [0, 1] (same layout or (N, 3, 64, 64) tensor).
    """
    p = _param(model)
    with inference():  # the uint8 → float conversion too: it is torch work
        x = images_to_tensor(images)
        moments = [model.encode(c.to(device=p.device, dtype=p.dtype)) for c in x.split(CHUNK)]
        if not moments:
            raise ValueError("no images to encode")
        mu = torch.cat([m[0] for m in moments]).float().cpu().numpy()  # (N, D)
        logvar = torch.cat([m[1] for m in moments]).float().cpu().numpy()  # (N, D)
    return mu, logvar


def encode_mean(model, images) -> np.ndarray:
    """The posterior mean μ(x) of each image → float32 (N, D).

    The sliders start from μ, not from a sample z = μ + σ ⊙ ε: the mean is the face the model
    is most sure about, and it does not flicker between calls.
    """
    return encode_moments(model, images)[0]


def decode(model, z) -> np.ndarray:
    """Mean image of p(x | z) for each latent: z (N, D) → uint8 (N, 64, 64, 3)."""
    z = _as_latents(z, _latent_dim(model))
    p = _param(model)
    if not len(z):
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    with inference():  # the float → uint8 conversion too: it is torch work
        z = torch.from_numpy(z).to(device=p.device, dtype=p.dtype)
        return np.concatenate([tensor_to_images(model.decode(c).float())
                               for c in z.split(CHUNK)])


def reconstruct(model, images) -> np.ndarray:
    """decode(encode_mean(images)): uint8 (N, 64, 64, 3) → uint8 (N, 64, 64, 3)."""
    return decode(model, encode_mean(model, images))


def prior_latents(n: int, latent_dim: int, seed: int) -> np.ndarray:
    """n draws z ~ N(0, I) from a CPU `torch.Generator` seeded with `seed` → float32 (n, D).

    The same seed gives the same z for every model with the same D, so models can be compared
    on identical latents.
    """
    n, seed = int(n), int(seed)
    if not 0 <= n <= 1024:
        raise ValueError(f"number of samples must be between 0 and 1024, got {n}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be between 0 and 2^63 - 1, got {seed}")
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim, generator=g).numpy()


def sample(model, n: int, seed: int) -> np.ndarray:
    """Random faces: decode `n` prior draws (see `prior_latents`) → uint8 (n, 64, 64, 3)."""
    return decode(model, prior_latents(n, _latent_dim(model), seed))


# --------------------------------------------------------------------------------- KL ranking
@lru_cache(maxsize=2)
def reference_images(n: int = REFERENCE_SIZE) -> np.ndarray:
    """The first `n` faces of the SynthFaces validation split → uint8 (n, 64, 64, 3) (cached).

    Only these faces are rendered (every prefix of a split is stable), not the whole split.
    """
    from playground.data import synthfaces as sf

    if not 2 <= n <= sf.SPLIT_SIZES["val"]:
        raise ValueError(f"reference batch size must be in 2..{sf.SPLIT_SIZES['val']}, got {n}")
    images = sf.render(sf.generate_factors(n, sf.SPLIT_SEEDS["val"]))
    images.setflags(write=False)
    return images


def dims_by_kl(model, images=None) -> tuple[np.ndarray, np.ndarray]:
    """Latent dimensions ranked by how much information they carry.

        KL_d = E_x[ ½ (μ_d² + σ_d² − 1 − log σ_d²) ]      (nats, averaged over the images)

    A dimension with KL ≈ 0 has collapsed to the prior: the decoder ignores it, and moving its
    slider changes nothing. The higher β, the fewer dimensions stay active.

    Args:
        model: a β-VAE.
        images: uint8 (N, 64, 64, 3) faces; None uses the 512-face SynthFaces reference batch
            (`reference_images`), and the result is cached for this model object.
    Returns:
        (order (D,) int64: dimension indices, highest KL first; kl (D,) float64 per dimension).
    """
    if images is None:
        with _kl_lock:
            hit = _kl_cache.get(model)
        if hit is not None:
            return hit
        result = _rank(model, reference_images(REFERENCE_SIZE))
        result[0].setflags(write=False)
        result[1].setflags(write=False)
        with _kl_lock:
            _kl_cache[model] = result
        return result
    return _rank(model, images)


def _rank(model, images) -> tuple[np.ndarray, np.ndarray]:
    mu, logvar = encode_moments(model, images)
    kl = kl_per_dim(mu, logvar)  # (D,)
    order = np.argsort(-kl, kind="stable").astype(np.int64)
    return order, kl


# --------------------------------------------------------------------------------- traversal
def with_values(z0, dims, values) -> np.ndarray:
    """Copy of z0 (D,) with ``z[dims[i]] = values[i]`` → float32 (D,)."""
    z = _as_vector(z0, "z0").astype(np.float32)
    dims = _check_dims(dims, z.size)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if len(values) != len(dims):
        raise ValueError(f"got {len(values)} values for {len(dims)} dimensions")
    z[dims] = values
    return z


def _check_dims(dims, d: int) -> np.ndarray:
    dims = np.asarray(dims).reshape(-1)
    if dims.size and not np.issubdtype(dims.dtype, np.integer):
        if not np.all(np.equal(np.mod(dims, 1), 0)):
            raise ValueError(f"latent dimensions must be integers, got {dims.tolist()}")
    dims = dims.astype(np.int64)
    if dims.size and (dims.min() < 0 or dims.max() >= d):
        raise ValueError(f"latent dimensions must be in 0..{d - 1}, got {dims.tolist()}")
    return dims


def traversal_latents(z0, dims, values) -> np.ndarray:
    """Latents of a traversal: row i sets dimension ``dims[i]`` to each of `values` in turn,
    every other coordinate stays at z0 → float32 (len(dims), V, D)."""
    z0 = _as_vector(z0, "z0").astype(np.float32)
    dims = _check_dims(dims, z0.size)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if not dims.size or not values.size:
        raise ValueError("a traversal needs at least one dimension and one value")
    if not np.all(np.isfinite(values)):
        raise ValueError("traversal values must be finite")
    z = np.repeat(z0[None, None], len(dims), 0).repeat(len(values), 1)  # (R, V, D)
    z[np.arange(len(dims)), :, dims] = values  # row r: z[dims[r]] = v
    return z


def traversal_grid(model, z0, dims, values) -> np.ndarray:
    """Decode a latent traversal → uint8 (len(dims), V, 64, 64, 3).

    Cell (i, j) is decode(z0 with ``z[dims[i]] = values[j]``), so a row shows what one
    dimension does while the others hold still.

    Args:
        z0: (D,) base latent (e.g. the posterior mean of a face).
        dims: latent dimension indices, one row each.
        values: (V,) values each dimension takes (e.g. ``np.linspace(-3, 3, 9)``).
    """
    z = traversal_latents(z0, dims, values)  # (R, V, D)
    if z.shape[2] != _latent_dim(model):
        raise ValueError(f"z0 has {z.shape[2]} dimensions, the model {_latent_dim(model)}")
    r, v, d = z.shape
    return decode(model, z.reshape(r * v, d)).reshape(r, v, IMAGE_SIZE, IMAGE_SIZE, 3)


# --------------------------------------------------------------------------------- morphing
def interpolate(z_a, z_b, steps: int = 8, mode: str = "lerp") -> np.ndarray:
    """A path of `steps` latents from z_a to z_b (both ends included) → float32 (steps, D).

    lerp:  z_t = (1 − t) z_a + t z_b
    slerp: z_t = sin((1 − t) Ω) / sin Ω · z_a + sin(t Ω) / sin Ω · z_b,  cos Ω = ẑ_a · ẑ_b
           (rotate along the great circle, with the norm interpolated linearly, so points stay
           at the typical radius √D of a Gaussian instead of cutting through the low-norm
           middle). Parallel vectors (Ω ≈ 0) or a zero vector fall back to lerp; antiparallel
           ones (Ω ≈ π, no unique great circle) raise ValueError.

    With t = i / (steps − 1), i = 0 … steps − 1. The endpoints are exactly z_a and z_b.
    """
    a, b = _as_vector(z_a, "z_a"), _as_vector(z_b, "z_b")
    if a.shape != b.shape:
        raise ValueError(f"z_a and z_b must have the same shape, got {a.shape} and {b.shape}")
    if isinstance(steps, float) and not steps.is_integer():
        raise ValueError(f"steps must be a whole number, got {steps}")
    steps = int(steps)
    if not 2 <= steps <= 256:
        raise ValueError(f"steps must be between 2 and 256, got {steps}")
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"mode must be one of {INTERPOLATION_MODES}, got {mode!r}")
    t = np.linspace(0.0, 1.0, steps)[:, None]  # (steps, 1)
    path = (1 - t) * a + t * b  # lerp, (steps, D)
    if mode == "slerp":
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na > 1e-12 and nb > 1e-12:
            cos = float(np.clip(a @ b / (na * nb), -1.0, 1.0))
            omega = np.arccos(cos)
            if np.pi - omega < 1e-6:
                raise ValueError("slerp between opposite vectors is undefined (every great "
                                 "circle joins them); use lerp or another pair")
            if omega > 1e-6:  # otherwise (near-)parallel: lerp is the limit
                ua, ub = a / na, b / nb
                direction = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
                path = direction * ((1 - t) * na + t * nb)
    path[0], path[-1] = a, b  # exact endpoints despite rounding
    return path.astype(np.float32)


def morph(model, image_a, image_b, steps: int = 8, mode: str = "lerp") -> np.ndarray:
    """Decode the path between two faces' posterior means → uint8 (steps, 64, 64, 3).

    Args:
        image_a, image_b: uint8 (64, 64, 3) faces.
    """
    mu = encode_mean(model, np.stack([_check_face(image_a, "face A"),
                                      _check_face(image_b, "face B")]))
    return decode(model, interpolate(mu[0], mu[1], steps, mode))


def _check_face(image, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) or arr.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 ({IMAGE_SIZE}, {IMAGE_SIZE}, 3) image, got "
                         f"{arr.dtype} {arr.shape}")
    return arr


# --------------------------------------------------------------------------------- start faces
def random_face(seed: int) -> np.ndarray:
    """The SynthFaces face of stream `seed` (the first face of ``generate(1, seed)``)
    → uint8 (64, 64, 3)."""
    from playground.data import synthfaces as sf

    return sf.render(sf.generate_factors(1, check_seed(seed)))[0]


def dataset_face(index: int, split: str = TEST_SPLIT) -> np.ndarray:
    """Face number `index` of a SynthFaces split → uint8 (64, 64, 3).

    Renders just that face: the same pixels as ``SynthFacesDataset(split).images[index]``
    without generating (or loading) the whole split.
    """
    from playground.data import synthfaces as sf

    if split not in sf.SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; choose one of {list(sf.SPLIT_SIZES)}")
    index, size = whole_number(index, "index"), sf.SPLIT_SIZES[split]
    if not 0 <= index < size:
        raise ValueError(f"data index must be between 0 and {size - 1} (the SynthFaces "
                         f"{split} split has {size} faces), got {index}")
    factors = sf.generate_factors(index + 1, sf.SPLIT_SEEDS[split])
    return sf.render({k: v[index:index + 1] for k, v in factors.items()})[0]


# --------------------------------------------------------------------------------- uploads
_MAX_UPLOAD_PIXELS = 40_000_000  # refuse larger pictures (decompression bombs)


def prepare_upload(source) -> tuple[np.ndarray, str]:
    """Any picture → a 64×64 RGB face the models can encode, and a note of what was done.

    Steps: first frame of an animation; EXIF rotation applied; any mode to RGB (transparent
    areas on white; 16-bit and 32-bit grey scaled to 8 bits); centre crop to a square; resize to
    64×64 with an antialiasing (Lanczos) filter.

    Args:
        source: a file path, a PIL image, or a uint8 numpy array (H, W), (H, W, 3) or (H, W, 4).
    Returns:
        (uint8 (64, 64, 3), notice such as "cropped 300×200 → 200×200, resized to 64×64").
    Raises:
        ValueError: "not an image …" for anything Pillow cannot read as a raster picture
            (text, HTML, SVG, PDF, a truncated file), or a picture that is too large.
    """
    if isinstance(source, np.ndarray):
        image = _array_to_pil(source)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (str, Path)):
        image = _open_image(Path(source))
    else:
        raise ValueError(f"not an image: expected a file path, a PIL image or a numpy array, "
                         f"got {type(source).__name__}")
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
        notes.append(f"first of {image.n_frames} frames")
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block is no reason to refuse the picture
        pass
    rgb, conversion = _to_rgb(image)
    if conversion:
        notes.append(conversion)
    w, h = rgb.size
    if w < 1 or h < 1:
        raise ValueError("not an image: it has no pixels")
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        rgb = rgb.crop((left, top, left + side, top + side))
        notes.append(f"cropped {w}×{h} → {side}×{side}")
    if side != IMAGE_SIZE:
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
        verb = "resized" if side > IMAGE_SIZE else "enlarged"
        size_note = f"{w}×{h} " if w == h else ""  # a crop already named the size
        notes.append(f"{verb} {size_note}to {IMAGE_SIZE}×{IMAGE_SIZE}")
    if not notes:
        notes.append(f"already {IMAGE_SIZE}×{IMAGE_SIZE} RGB, used as is")
    return np.asarray(rgb, dtype=np.uint8).copy(), ", ".join(notes)


def _open_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise ValueError(f"not an image: no file at {path}")
    head = path.read_bytes()[:512].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype", b"<html")) or b"<svg" in head:
        raise ValueError(f"not an image: {path.name} is SVG/HTML/XML text; upload a raster "
                         "picture (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    try:
        image = Image.open(path)
        if image.width * image.height > _MAX_UPLOAD_PIXELS:
            raise ValueError(f"image too large: {image.width}×{image.height} pixels "
                             f"(at most {_MAX_UPLOAD_PIXELS // 1_000_000} megapixels)")
        image.load()
    except ValueError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as e:
        detail = str(e).replace(str(path), path.name)  # no server paths in the message
        raise ValueError(f"not an image: Pillow cannot read {path.name} as a picture "
                         f"(PNG, JPEG, WebP, GIF, BMP, TIFF) — {detail}") from None
    return image


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"not an image: arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4), "
                         f"got {arr.dtype} {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr))


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str]:
    """Any PIL mode → RGB, and a short note (empty for an RGB picture)."""
    mode = image.mode
    if mode == "RGB":
        return image, ""
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float grey
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            top, how = 65535.0, "16-bit grey scaled to 8 bits"
        elif mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            top, how = 1.0, "float grey scaled to 8 bits"
        else:
            top = 255.0 if (arr.size and np.nanmax(arr) <= 255) else max(np.nanmax(arr), 1.0)
            how = f"{'32-bit' if mode == 'I' else 'float'} grey scaled to 8 bits"
        grey = np.clip(np.nan_to_num(arr) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB"), how
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return (Image.alpha_composite(background, rgba).convert("RGB"),
                f"{mode} → RGB (transparent areas on white)")
    return image.convert("RGB"), f"{mode} → RGB"
