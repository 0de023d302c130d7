"""A trained β-VAE as pure functions (no UI): which models exist, loading one (cached), encoding
faces, decoding latents, and ranking latent dimensions by KL.

Shapes: N = images, D = latent dimensions (128 for the shipped models). Images crossing this
module's boundary are numpy uint8 (N, 64, 64, 3) (what the UI shows); latents are numpy float32
(N, D) or (D,).

    model = get_model("vae-beta10")                 # LRU-cached, reloaded when the file changes
    order, kl = dims_by_kl(model)                   # dims ranked by KL on 512 SynthFaces val faces
    mu = encode_mean(model, images)                 # (N, D): z = μ, the posterior mean
    faces = decode(model, mu)                       # (N, 64, 64, 3)

Traversals and morphs walk this latent space in `playground.pipelines.latent_paths`; the faces a
tab starts from (SynthFaces, uploads) come from `playground.pipelines.face_sources`. All torch
work here runs in chunks of 64 images under `playground.pipelines.inference.inference` (one
thread: faster for these small models on a busy 2-core machine).
"""
from __future__ import annotations

import threading
import weakref
from functools import lru_cache

import numpy as np
import torch

from playground.data.images import IMAGE_SIZE, images_to_tensor, tensor_to_images
from playground.evaluation.metrics import kl_per_dim
from playground.pipelines.inference import inference
from playground.store import checkpoints, files
from playground.store.model_cache import StampedCache, weights_stamp

CACHE_SIZE = 4  # models kept loaded (3 shipped βs + one run)
REFERENCE_SIZE = 512  # SynthFaces val faces used to rank latent dimensions by KL
CHUNK = 64  # images per forward pass when encoding/decoding a large batch


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
        kind = files.read_json(folder / checkpoints.CONFIG_FILE).get("kind")
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
def _param(model: torch.nn.Module) -> torch.Tensor:
    return next(model.parameters())


def model_latent_dim(model: torch.nn.Module) -> int:
    """D, the number of latent dimensions of a β-VAE."""
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
    z = _as_latents(z, model_latent_dim(model))
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
    return decode(model, prior_latents(n, model_latent_dim(model), seed))


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

