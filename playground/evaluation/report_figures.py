"""The figures of the β-VAE report: reconstructions, prior generations, interpolations, latent
traversals and the t-SNE panels, each a PNG drawn from the models."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from playground.data.images import images_to_tensor, tensor_to_images
from playground.evaluation import plots

N_SHOW = 8  # test faces in the reconstruction / generation rows
N_STEPS = 8  # interpolation steps, end points included
TRAVERSAL_DIMS = 8  # top-KL dimensions in a traversal grid
TRAVERSAL_VALUES = tuple(np.linspace(-3.0, 3.0, 9).round(2))  # values given to the swept dimension
SCALE = 2  # nearest-neighbour upscaling of the 64x64 faces


def _model_device(model) -> torch.device:
    """Where the model's weights live (the CPU for a model without parameters)."""
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
    return tensor_to_images(model.decode(z.to(p_device)))


def interpolation_pair(labels: np.ndarray | None, n: int) -> tuple[int, int]:
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
