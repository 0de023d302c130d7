"""Paths through a β-VAE's latent space, as pure functions (no UI): traversals (one dimension
at a time, the Traverse tab) and interpolations between two faces (the Morph tab).

Shapes: D = latent dimensions, V = values per traversed dimension, T = frames; latents are numpy
float32, images numpy uint8 (N, 64, 64, 3).

    grid = traversal_grid(model, mu[0], order[:8], np.linspace(-3, 3, 9))   # (8, 9, 64, 64, 3)
    path = interpolate(mu[0], mu[1], steps=8, mode="slerp")                 # (8, D)
    frames = morph(model, face_a, face_b, steps=8, mode="slerp")            # (8, 64, 64, 3)

(`mu` from `playground.pipelines.vae.encode_mean`, `order` from its `dims_by_kl`.)
"""
from __future__ import annotations

import numpy as np
import torch

from playground.data.images import IMAGE_SIZE
from playground.pipelines.vae import decode, encode_mean, model_latent_dim

INTERPOLATION_MODES = ("lerp", "slerp")


def _as_vector(z, name: str) -> np.ndarray:
    """float64 copy of one latent vector (D,) given as numpy / tensor / list, with clear errors."""
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"{name} must be a latent vector of shape (D,), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z


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
    if z.shape[2] != model_latent_dim(model):
        raise ValueError(f"z0 has {z.shape[2]} dimensions, the model {model_latent_dim(model)}")
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

