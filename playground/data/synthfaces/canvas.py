"""Drawing primitives of the SynthFaces renderer: signed distances of simple shapes, colours,
and the `Canvas` a batch of faces is painted on.

Coordinates: x right, y down, both in [-1, 1] over the image. Per-face parameters have shape
(B, 1, 1) and broadcast against the pixel grid (1, H, W).
"""
from __future__ import annotations

import math

import torch


# ----------------------------------------------------------------------------------------
# Rendering primitives. Coordinates: x right, y down, both in [-1, 1] over the image.
# Per-face parameters have shape (B, 1, 1) and broadcast against the pixel grid (1, H, W).
# ----------------------------------------------------------------------------------------
def ellipse_sd(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse (exact on circles)."""
    px, py = (x - cx) / rx, (y - cy) / ry
    px2, py2 = px * px, py * py
    k0 = torch.sqrt(px2 + py2)
    k1 = torch.sqrt(px2 / (rx * rx) + py2 / (ry * ry)).clamp_min(1e-6)
    return k0 * (k0 - 1.0) / k1


def segment_sd(x, y, x0, x1, yc, half_thickness):
    """Signed distance to a horizontal capsule from x0 to x1 at height yc."""
    dx = torch.clamp(torch.maximum(x0 - x, x - x1), min=0.0)
    return torch.sqrt(dx * dx + (y - yc) ** 2) - half_thickness


def col(c: torch.Tensor) -> torch.Tensor:
    """(B, 3) or (3,) colour -> broadcastable (B, 3, 1, 1)."""
    return (c if c.dim() == 2 else c[None]).reshape(-1, 3, 1, 1)


def hsv_to_rgb(h: torch.Tensor, s: float, v: float) -> torch.Tensor:
    """(B,) hues in [0, 1] -> (B, 3) RGB."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


class Canvas:
    """B faces being drawn and what their parts share.

    Fields: ``img`` (B, 3, H, W); planes (B or 1, H, W): X, Y (image grid), x, y (head frame),
    head_sd, head, head_diffuse, head_shade; per-face values (B, 1, 1), colours (B, 3, 1, 1).
    """

    def __init__(self, pixel: float, **fields):
        self.pixel = pixel
        self.__dict__.update(fields)

    def cover(self, sd: torch.Tensor) -> torch.Tensor:
        """Anti-aliased coverage of a pixel from the signed distance (negative = inside)."""
        return (0.5 - sd / self.pixel).clamp_(0.0, 1.0)

    def blend(self, color: torch.Tensor, alpha: torch.Tensor) -> None:
        """img <- img·(1-α) + color·α; color (B, 3, 1, 1) or (B, 3, H, W), alpha (B, H, W)."""
        a = alpha.unsqueeze(1)
        self.img.mul_(1.0 - a).add_(color * a)

    def diffuse(self, cx, cy, rx, ry) -> torch.Tensor:
        """Lambertian shading (B, H, W) of an ellipsoid bulging towards the viewer."""
        nx, ny = (self.x - cx) / rx, (self.y - cy) / ry
        nz = torch.sqrt((1 - nx * nx - ny * ny).clamp_min(0.0))
        return (nx * self.lx + ny * self.ly + nz * self.lz).clamp_min(0.0)

    def __getattr__(self, name: str):
        """A window's field, cut from the whole canvas on first use (:func:`_render_chunk`)."""
        if name.startswith("_") or "_cut" not in self.__dict__:
            raise AttributeError(name)
        whole, rows, cols, faces = self._cut
        v = getattr(whole, name)
        if isinstance(v, torch.Tensor):
            if v.shape[-2:] == whole.img.shape[-2:]:  # a plane
                v = v[..., rows, cols]
            if faces is not None and v.shape[0] == whole.img.shape[0]:
                v = v[faces]
        setattr(self, name, v)
        return v


def span(lo: float, hi: float, size: int) -> slice:
    """Pixel rows (or columns) that reach [lo, hi] in image coordinates, plus a pixel each side
    for the anti-aliased edge."""
    first = math.floor((lo + 1) / 2 * size) - 1
    return slice(max(0, first), max(0, min(size, math.ceil((hi + 1) / 2 * size) + 1)))
