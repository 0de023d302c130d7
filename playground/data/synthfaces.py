"""SynthFaces: procedural 64x64 faces from independent, known factors.

Every face is drawn from 16 factors (DESIGN.md §2), sampled independently, and rendered by a
batch-vectorised torch renderer. Each part of the face is a shape with an (approximate)
signed distance ``d`` to its outline; its anti-aliased coverage of a pixel is
``clamp(0.5 - d / pixel, 0, 1)`` — analytic anti-aliasing, the cheap equivalent of
supersampling a hard edge. Parts are alpha-blended back to front.

Because the factors are known, disentanglement and prompt adherence can be measured.

Public API::

    images, factors, attributes = generate(n, seed)   # uint8 (N, 64, 64, 3), dicts of (N,)
    SynthFacesDataset("train")                        # torch Dataset over a cached split
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

# Continuous factors: name -> (low, high). Drawn uniformly and independently.
CONTINUOUS_FACTORS: dict[str, tuple[float, float]] = {
    "yaw": (-1.0, 1.0),  # head turn, -1 = facing image-left, +1 = facing image-right
    "roll": (-1.0, 1.0),  # in-plane tilt
    "light": (-1.0, 1.0),  # light azimuth: -1 = lit from image-left, +1 = from image-right
    "skin": (0.0, 1.0),  # skin tone, 0 = pale, 1 = dark
    "width": (0.0, 1.0),  # face width, 0 = narrow, 1 = wide (-> Chubby)
    "smile": (-1.0, 1.0),  # mouth curve, -1 = frown, +1 = grin
    "mouth_open": (0.0, 1.0),  # 0 = closed
    "eye_open": (0.0, 1.0),  # 0 = almost shut
    "brow": (0.0, 1.0),  # brow arch, 0 = flat
    "background": (0.0, 1.0),  # background hue
}
# Categorical factors: name -> category names (the factor value is the index).
CATEGORICAL_FACTORS: dict[str, tuple[str, ...]] = {
    "hair_color": ("black", "brown", "blond", "gray"),
    "hair_style": ("bald", "short", "long", "bangs"),
    "facial_hair": ("none", "mustache", "goatee", "beard"),
    "eyeglasses": ("no", "yes"),
    "hat": ("no", "yes"),
    "lipstick": ("no", "yes"),
}
# Probability of each category (uniform where not listed).
CATEGORY_PROBS: dict[str, tuple[float, ...]] = {
    "hair_style": (0.12, 0.38, 0.30, 0.20),  # bald is rarer, as in CelebA
    "facial_hair": (0.55, 0.15, 0.15, 0.15),  # most faces have none
    "eyeglasses": (0.70, 0.30),
    "hat": (0.80, 0.20),
    "lipstick": (0.65, 0.35),
}
FACTOR_NAMES: tuple[str, ...] = (
    "yaw", "roll", "light", "skin", "width", "smile", "mouth_open", "eye_open", "brow",
    "hair_color", "hair_style", "eyeglasses", "hat", "facial_hair", "lipstick", "background",
)
# CelebA-named binary attributes derived from the factors (thresholds in `attributes_from_factors`).
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "Arched_Eyebrows", "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Chubby",
    "Eyeglasses", "Goatee", "Gray_Hair", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Pale_Skin", "Smiling", "Wearing_Hat", "Wearing_Lipstick",
)
# Thresholds on continuous factors that define the derived attributes.
ATTRIBUTE_THRESHOLDS: dict[str, tuple[str, str, float]] = {
    "Smiling": ("smile", ">", 0.0),  # corners of the mouth above its centre: ~50 %
    "Mouth_Slightly_Open": ("mouth_open", ">", 0.5),
    "Narrow_Eyes": ("eye_open", "<", 0.25),
    "Arched_Eyebrows": ("brow", ">", 0.6),
    "Pale_Skin": ("skin", "<", 0.2),
    "Chubby": ("width", ">", 0.75),  # the widest quarter of faces
}

IMAGE_SIZE = 64
RENDERER_VERSION = 2  # bump when the picture changes: it invalidates cached splits
BLOCK = 1000  # faces per independently seeded block (makes every prefix of a split stable)
SPLIT_SIZES = {"train": 60_000, "val": 5_000, "test": 5_000}
SPLIT_SEEDS = {"train": 1_000, "val": 1_001, "test": 1_002}

# Fixed palettes (RGB in [0, 1]).
_HAIR_RGB = torch.tensor([[0.09, 0.07, 0.07], [0.42, 0.25, 0.12], [0.92, 0.78, 0.42],
                          [0.72, 0.72, 0.74]])
_SKIN_STOPS = torch.tensor([[0.99, 0.87, 0.80], [0.86, 0.64, 0.47], [0.42, 0.27, 0.18]])
_SHIRT_RGB = torch.tensor([0.30, 0.36, 0.45])
_HAT_RGB = torch.tensor([0.62, 0.16, 0.14])
_IRIS_RGB = torch.tensor([0.33, 0.21, 0.12])
_LIPSTICK_RGB = torch.tensor([0.78, 0.08, 0.22])


# ----------------------------------------------------------------------------------------
# Factors and attributes
# ----------------------------------------------------------------------------------------
def sample_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` independent factor vectors: float32 for continuous, int64 for categorical."""
    factors: dict[str, np.ndarray] = {}
    for name in FACTOR_NAMES:
        if name in CONTINUOUS_FACTORS:
            low, high = CONTINUOUS_FACTORS[name]
            factors[name] = rng.uniform(low, high, size=n).astype(np.float32)
        else:
            k = len(CATEGORICAL_FACTORS[name])
            p = CATEGORY_PROBS.get(name, (1.0 / k,) * k)
            factors[name] = rng.choice(k, size=n, p=p).astype(np.int64)
    return factors


def attributes_from_factors(factors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CelebA-named 0/1 attributes (uint8, shape (N,)) derived from the factors."""
    f = {k: np.asarray(v) for k, v in factors.items()}
    attrs: dict[str, np.ndarray] = {}
    for name, (factor, op, threshold) in ATTRIBUTE_THRESHOLDS.items():
        attrs[name] = (f[factor] > threshold) if op == ">" else (f[factor] < threshold)
    hair_color, hair_style, facial = f["hair_color"], f["hair_style"], f["facial_hair"]
    bald = hair_style == 0
    attrs["Bald"] = bald
    attrs["Bangs"] = hair_style == 3
    # A bald head shows no hair colour.
    for i, name in enumerate(("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair")):
        attrs[name] = (hair_color == i) & ~bald
    attrs["Eyeglasses"] = f["eyeglasses"] == 1
    attrs["Wearing_Hat"] = f["hat"] == 1
    attrs["Wearing_Lipstick"] = f["lipstick"] == 1
    attrs["Mustache"] = facial == 1
    attrs["Goatee"] = facial == 2
    attrs["No_Beard"] = facial == 0
    return {name: attrs[name].astype(np.uint8) for name in ATTRIBUTE_NAMES}


def default_factors(n: int = 1) -> dict[str, np.ndarray]:
    """A neutral face: every continuous factor at its midpoint (smile slightly positive)."""
    base = {name: (lo + hi) / 2 for name, (lo, hi) in CONTINUOUS_FACTORS.items()}
    base.update(smile=0.5, mouth_open=0.2, eye_open=0.7, skin=0.3, background=0.58)
    cats = {"hair_color": 1, "hair_style": 1, "facial_hair": 0, "eyeglasses": 0, "hat": 0,
            "lipstick": 0}
    out: dict[str, np.ndarray] = {}
    for name in FACTOR_NAMES:
        if name in CONTINUOUS_FACTORS:
            out[name] = np.full(n, base[name], dtype=np.float32)
        else:
            out[name] = np.full(n, cats[name], dtype=np.int64)
    return out


def validate_factors(factors: dict[str, np.ndarray]) -> int:
    """Check names, shapes and ranges; return N. Raises ValueError with what is wrong."""
    missing = [name for name in FACTOR_NAMES if name not in factors]
    if missing:
        raise ValueError(f"missing factors: {missing}")
    sizes = {np.asarray(factors[name]).shape for name in FACTOR_NAMES}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"every factor must be a 1-D array of the same length, got {sizes}")
    for name, (lo, hi) in CONTINUOUS_FACTORS.items():
        v = np.asarray(factors[name], dtype=np.float64)
        if v.size and (not np.isfinite(v).all() or v.min() < lo - 1e-6 or v.max() > hi + 1e-6):
            raise ValueError(f"factor {name!r} must lie in [{lo}, {hi}]")
    for name, cats in CATEGORICAL_FACTORS.items():
        v = np.asarray(factors[name])
        if v.size and (v.min() < 0 or v.max() >= len(cats)):
            raise ValueError(f"factor {name!r} must be an index into {cats}")
    return next(iter(sizes))[0]


# ----------------------------------------------------------------------------------------
# Rendering primitives. Coordinates: x right, y down, both in [-1, 1] over the image.
# Per-face parameters have shape (B, 1, 1) and broadcast against the pixel grid (1, H, W).
# ----------------------------------------------------------------------------------------
_PIXEL = 2.0 / IMAGE_SIZE


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x[None], y[None]  # (1, H, W) each


def _coverage(sd: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage of a pixel from the signed distance (negative = inside)."""
    return (0.5 - sd / _PIXEL).clamp_(0.0, 1.0)


def _ellipse_sd(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse (exact on circles)."""
    px, py = (x - cx) / rx, (y - cy) / ry
    k0 = torch.sqrt(px * px + py * py)
    k1 = torch.sqrt(px * px / (rx * rx) + py * py / (ry * ry)).clamp_min(1e-6)
    return k0 * (k0 - 1.0) / k1


def _segment_sd(x, y, x0, x1, yc, half_thickness):
    """Signed distance to a horizontal capsule from x0 to x1 at height yc."""
    dx = torch.clamp(torch.maximum(x0 - x, x - x1), min=0.0)
    return torch.sqrt(dx * dx + (y - yc) ** 2) - half_thickness


def _blend(img: torch.Tensor, color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """img (B, 3, H, W) <- img·(1-α) + color·α with color (B, 3, 1, 1) or (B, 3, H, W)."""
    a = alpha.unsqueeze(1)
    return img.mul_(1.0 - a).add_(color * a)


def _col(c: torch.Tensor) -> torch.Tensor:
    """(B, 3) or (3,) colour -> broadcastable (B, 3, 1, 1)."""
    return (c if c.dim() == 2 else c[None]).reshape(-1, 3, 1, 1)


def _hsv_to_rgb(h: torch.Tensor, s: float, v: float) -> torch.Tensor:
    """(B,) hues in [0, 1] -> (B, 3) RGB."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _render_chunk(f: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Render one batch of faces. f: factor name -> (B,) tensor. Returns (B, 3, H, W) in [0, 1]."""
    B = f["yaw"].shape[0]
    X, Y = _grid(size)

    def p(name):  # per-face parameter, shape (B, 1, 1)
        return f[name].float().view(B, 1, 1)

    yaw, roll, light, width = p("yaw"), p("roll"), p("light"), p("width")
    smile, mouth_open, eye_open, brow = p("smile"), p("mouth_open"), p("eye_open"), p("brow")
    hair_style, facial_hair = f["hair_style"].view(B, 1, 1), f["facial_hair"].view(B, 1, 1)
    hair_rgb = _HAIR_RGB[f["hair_color"]]  # (B, 3)
    skin_t = f["skin"].float()[:, None]  # (B, 1): piecewise-linear through the three stops
    skin_rgb = torch.where(skin_t < 0.5,
                           _SKIN_STOPS[0] + (_SKIN_STOPS[1] - _SKIN_STOPS[0]) * skin_t * 2,
                           _SKIN_STOPS[1] + (_SKIN_STOPS[2] - _SKIN_STOPS[1]) * (skin_t * 2 - 1))

    # Background: a hue, slightly lighter at the top.
    bg = _hsv_to_rgb(f["background"].float(), 0.38, 0.86)
    img = _col(bg) * (1.06 - 0.12 * (Y[:, None] + 1) / 2)
    img = img.expand(B, 3, size, size).clone()

    # Shoulders and neck are not tilted.
    shoulders = _coverage(_ellipse_sd(X, Y, 0.0, 1.32, 0.9, 0.52))
    img = _blend(img, _col(_SHIRT_RGB) * (1.0 - 0.15 * light * X)[:, None], shoulders)
    neck_half = 0.16 + 0.06 * width
    neck_sd = torch.maximum(X.abs() - neck_half, 0.4 - Y)
    neck_shade = (0.78 - 0.25 * light * (-X / neck_half).clamp(-1, 1)).clamp(0.3, 1.0)
    img = _blend(img, _col(skin_rgb) * neck_shade[:, None] * 0.92, _coverage(neck_sd))

    # Head frame: roll rotates everything above the neck around a pivot at the chin.
    angle = roll * 0.32
    cos, sin = torch.cos(angle), torch.sin(angle)
    pivot_y = 0.55
    x = cos * X + sin * (Y - pivot_y)
    y = -sin * X + cos * (Y - pivot_y) + pivot_y

    head_cx, head_cy = 0.0, 0.02
    head_rx, head_ry = 0.46 + 0.16 * width, 0.6
    feat_cx = yaw * 0.17  # features slide towards the side the head turns to

    # Light direction (image coordinates, z towards the viewer).
    lx, ly = light * 0.9, torch.full_like(light, -0.3)
    lz = torch.sqrt((1 - lx * lx - ly * ly).clamp_min(0.05))

    def diffuse(cx, cy, rx, ry):
        nx, ny = (x - cx) / rx, (y - cy) / ry
        nz = torch.sqrt((1 - nx * nx - ny * ny).clamp_min(0.0))
        return (nx * lx + ny * ly + nz * lz).clamp_min(0.0)

    hair_col = _col(hair_rgb)
    has_hair = hair_style != 0

    # Long hair: a layer behind the head.
    long_hair = (hair_style == 2).float()
    back_sd = torch.maximum(_ellipse_sd(x, y, head_cx - yaw * 0.05, head_cy + 0.12,
                                        head_rx + 0.15, 0.78), y - 0.78)
    img = _blend(img, hair_col * (0.55 + 0.35 * diffuse(0.0, 0.1, head_rx + 0.2, 0.9))[:, None],
                 _coverage(back_sd) * long_hair)

    # Ears: the one on the side the head turns away from shows more.
    for side in (-1.0, 1.0):
        ear_rx = 0.075 * (1.0 - 0.6 * side * yaw).clamp(0.15, 1.6)
        ear_cx = side * (head_rx - 0.01) + yaw * 0.06
        ear = _coverage(_ellipse_sd(x, y, ear_cx, head_cy + 0.04, ear_rx, 0.13))
        ear_shade = 0.62 + 0.3 * (side * light).clamp_min(0.0)
        img = _blend(img, _col(skin_rgb) * ear_shade[:, None], ear)

    # Head, shaded by a Lambertian ellipsoid.
    head_sd = _ellipse_sd(x, y, head_cx, head_cy, head_rx, head_ry)
    head = _coverage(head_sd)
    head_diffuse = diffuse(head_cx, head_cy, head_rx, head_ry)
    head_shade = 0.42 + 0.68 * head_diffuse
    img = _blend(img, _col(skin_rgb) * head_shade[:, None], head)

    # The small parts are drawn only on the band of rows they can reach (any roll, any yaw):
    # about half the frame, which roughly halves the renderer's cost.
    def band(y0: float, y1: float) -> slice:
        return slice(max(0, int((y0 + 1) / 2 * size)), min(size, int(math.ceil((y1 + 1) / 2 * size))))

    eye_rows = band(-0.5, 0.3)  # brows, eyes, glasses
    low_rows = band(-0.2, 0.85)  # nose, mouth, facial hair
    skin_col = _col(skin_rgb)

    # Eyes: sclera whose height follows eye_open, iris and pupil clipped to it, lid line.
    eye_y = head_cy - 0.04
    eye_gap = 0.2 * (1.0 - 0.12 * yaw.abs())
    gaze = yaw * 0.025
    xe, ye, he, ie = x[:, eye_rows], y[:, eye_rows], head[:, eye_rows], img[:, :, eye_rows]
    brow_rgb = torch.where(has_hair.view(B, 1, 1, 1), hair_col * 0.8, skin_col * 0.45)
    for side in (-1.0, 1.0):
        ex = feat_cx + side * eye_gap
        e_rx = 0.095 * (1.0 - 0.25 * side * yaw)
        e_ry = 0.008 + 0.07 * eye_open
        sclera_sd = _ellipse_sd(xe, ye, ex, eye_y, e_rx, e_ry)
        sclera = _coverage(sclera_sd)
        _blend(ie, _col(torch.tensor([0.96, 0.96, 0.94])), sclera * he)
        r_iris, r_pupil = torch.full_like(e_rx, 0.05), torch.full_like(e_rx, 0.022)
        iris = _coverage(_ellipse_sd(xe, ye, ex + gaze, eye_y, r_iris, r_iris)) * sclera
        _blend(ie, _col(_IRIS_RGB), iris)
        pupil = _coverage(_ellipse_sd(xe, ye, ex + gaze, eye_y, r_pupil, r_pupil)) * sclera
        _blend(ie, _col(torch.tensor([0.02, 0.02, 0.02])), pupil)
        lid = _coverage(sclera_sd.abs() - 0.012) * (ye < eye_y + 0.2 * e_ry).float()
        _blend(ie, skin_col * 0.35, lid * he)

        # Brow: a capsule bent upwards in the middle by `brow`.
        bx = ex + side * 0.01
        half = 0.1
        t = ((xe - bx) / half).clamp(-1, 1)
        curve = eye_y - 0.13 - 0.02 * brow - 0.09 * brow * (1 - t * t)
        brow_sd = torch.sqrt(((xe - bx).abs() - half).clamp_min(0) ** 2 + (ye - curve) ** 2)
        brow_sd = brow_sd - (0.022 - 0.008 * t.abs())
        _blend(ie, brow_rgb, _coverage(brow_sd) * he)

    # Nose: shadow on the side away from the light, nostrils, highlight on the lit side.
    xl, yl, hl, il = x[:, low_rows], y[:, low_rows], head_sd[:, low_rows], img[:, :, low_rows]
    nose_x = feat_cx + yaw * 0.07
    nose_y = head_cy + 0.14
    shadow_side = -torch.sign(light) * (light.abs() > 0.05).float()
    nose_shadow = _coverage(_ellipse_sd(xl, yl, nose_x + shadow_side * 0.045, nose_y,
                                        torch.full_like(yaw, 0.03), torch.full_like(yaw, 0.13)))
    _blend(il, skin_col * 0.55, nose_shadow * (0.2 + 0.5 * light.abs()) * head[:, low_rows])
    nose_tip = _coverage(_ellipse_sd(xl, yl, nose_x, nose_y + 0.1, torch.full_like(yaw, 0.07),
                                     torch.full_like(yaw, 0.045)))
    _blend(il, skin_col * (0.62 + 0.2 * (1 - light.abs()))[:, None], nose_tip * 0.6)
    for side in (-1.0, 1.0):
        nostril = _coverage(_ellipse_sd(xl, yl, nose_x + side * 0.035, nose_y + 0.125,
                                        torch.full_like(yaw, 0.018), torch.full_like(yaw, 0.011)))
        _blend(il, skin_col * 0.3, nostril)

    # Mouth geometry: centre line bends with `smile`, opening grows with `mouth_open`.
    mouth_x = feat_cx + yaw * 0.03
    mouth_y = head_cy + 0.37
    mouth_w = 0.18 + 0.05 * smile.clamp_min(0)
    u = (xl - mouth_x) / mouth_w
    inside_w = (1.0 - u * u).clamp_min(0.0)
    centre = mouth_y + smile * 0.15 * (inside_w - 0.5)
    taper = torch.sqrt(inside_w)
    gap = (0.004 + 0.05 * mouth_open) * taper

    # Facial hair behind the mouth: beard (jaw and chin) and goatee.
    hole_sd = _ellipse_sd(xl, yl, mouth_x, centre, mouth_w + 0.03, gap + 0.05)
    beard_sd = torch.maximum(torch.maximum(hl, (mouth_y - 0.1) - yl), -hole_sd)
    beard = _coverage(beard_sd) * (facial_hair == 3).float()
    beard_shade = 0.65 + 0.3 * head_diffuse[:, low_rows]
    _blend(il, hair_col * beard_shade[:, None], beard)
    goatee_sd = torch.maximum(_ellipse_sd(xl, yl, mouth_x, mouth_y + 0.16,
                                          torch.full_like(yaw, 0.1), torch.full_like(yaw, 0.09)),
                              -hole_sd)
    _blend(il, hair_col * 0.9, _coverage(goatee_sd) * (facial_hair == 2).float())

    # Lips and the open mouth (dark, with a row of teeth).
    lip_rgb = torch.where(f["lipstick"].view(B, 1, 1, 1) == 1, _col(_LIPSTICK_RGB),
                          skin_col * torch.tensor([0.78, 0.52, 0.52]).view(1, 3, 1, 1))
    lip_sd = torch.maximum((yl - centre).abs() - gap - 0.03 * taper, u.abs() - 1.0)
    _blend(il, lip_rgb * (0.8 + 0.2 * head_shade[:, low_rows])[:, None], _coverage(lip_sd))
    inner_sd = torch.maximum((yl - centre).abs() - gap, u.abs() - 0.97)
    inner = _coverage(inner_sd)
    _blend(il, _col(torch.tensor([0.22, 0.04, 0.05])), inner)
    teeth = inner * _coverage(yl - (centre - gap + 0.7 * gap + 0.004))
    _blend(il, _col(torch.tensor([0.93, 0.92, 0.86])), teeth * (mouth_open > 0.2).float())

    # Mustache above the upper lip (follows the mouth curve).
    must_sd = torch.maximum((yl - (centre - gap - 0.06)).abs() - 0.028, u.abs() - 1.1)
    is_must = ((facial_hair == 1) | (facial_hair == 3)).float()
    _blend(il, hair_col * 0.85, _coverage(must_sd) * is_must * head[:, low_rows])

    # Hair on top of the head: short and long share a hairline; bangs come lower with a fringe.
    cap_sd = _ellipse_sd(x, y, head_cx - yaw * 0.04, head_cy - 0.03, head_rx + 0.05, head_ry + 0.06)
    side_frac = ((x - head_cx - feat_cx * 0.5).abs() / head_rx).clamp(0, 1.5)
    bangs = hair_style == 3
    amp = torch.where(bangs, 0.35, 0.5)
    hairline = (torch.where(bangs, head_cy - 0.27, head_cy - 0.38) + amp * side_frac ** 3
                + 0.012 * torch.sin(x * 35) * bangs)
    slope = 3 * amp * side_frac ** 2 / head_rx + 0.42 * bangs  # |d hairline / dx|, bounded
    hairline_sd = (y - hairline) / torch.sqrt(1 + slope * slope)
    cap = _coverage(torch.maximum(cap_sd, hairline_sd)) * has_hair.float()
    hair_shade = 0.55 + 0.55 * diffuse(head_cx, head_cy - 0.03, head_rx + 0.05, head_ry + 0.06)
    img = _blend(img, hair_col * hair_shade[:, None], cap)

    # Hat: crown and brim in one colour, with a darker band.
    hat = f["hat"].view(B, 1, 1).float()
    crown_sd = torch.maximum(torch.maximum((x - head_cx).abs() - (head_rx - 0.02),
                                           y - (head_cy - 0.38)), (head_cy - 0.95) - y)
    crown = _coverage(torch.minimum(crown_sd, _ellipse_sd(x, y, head_cx, head_cy - 0.9,
                                                          head_rx - 0.02, torch.full_like(yaw, 0.1))))
    hat_shade = (0.8 - 0.25 * light * (x - head_cx) / head_rx).clamp(0.4, 1.1)
    img = _blend(img, _col(_HAT_RGB) * hat_shade[:, None], crown * hat)
    band_sd = torch.maximum((y - (head_cy - 0.45)).abs() - 0.04, (x - head_cx).abs() - (head_rx - 0.02))
    img = _blend(img, _col(_HAT_RGB) * 0.45, _coverage(band_sd) * hat)
    brim = _coverage(_ellipse_sd(x, y, head_cx + yaw * 0.05, head_cy - 0.38, head_rx + 0.2,
                                 torch.full_like(yaw, 0.065)))
    img = _blend(img, _col(_HAT_RGB) * 0.7, brim * hat)

    # Eyeglasses: two rims, a bridge, the arms to the ears, faintly tinted lenses.
    glasses = f["eyeglasses"].view(B, 1, 1).float()
    frame_rgb = _col(torch.tensor([0.06, 0.06, 0.08]))
    ie = img[:, :, eye_rows]
    rims = torch.zeros_like(xe.expand(B, -1, -1))
    lenses = torch.zeros_like(rims)
    for side in (-1.0, 1.0):
        ex = feat_cx + side * eye_gap
        g_rx = 0.135 * (1.0 - 0.25 * side * yaw)
        lens_sd = _ellipse_sd(xe, ye, ex, eye_y + 0.01, g_rx, torch.full_like(yaw, 0.1))
        rims = torch.maximum(rims, _coverage(lens_sd.abs() - 0.016))
        lenses = torch.maximum(lenses, _coverage(lens_sd))
        arm_x0 = torch.minimum(ex + side * g_rx, side * head_rx)
        arm_x1 = torch.maximum(ex + side * g_rx, side * head_rx)
        arm = _segment_sd(xe, ye, arm_x0, arm_x1, eye_y - 0.04, 0.012)
        rims = torch.maximum(rims, _coverage(arm))
    bridge = _coverage(_segment_sd(xe, ye, feat_cx - eye_gap + 0.12, feat_cx + eye_gap - 0.12,
                                   eye_y - 0.01, 0.013))
    _blend(ie, _col(torch.tensor([0.85, 0.9, 1.0])), lenses * glasses * 0.18)
    _blend(ie, frame_rgb, torch.maximum(rims, bridge) * glasses)
    return img.clamp_(0.0, 1.0)


def render(factors: dict[str, np.ndarray], size: int = IMAGE_SIZE,
           chunk: int = 64) -> np.ndarray:
    """Render faces from factors. Returns uint8 (N, size, size, 3).

    Runs on one thread: the renderer is many small element-wise ops, where torch's
    intra-op threads cost more in synchronisation than they give (and collapse when the
    cores are busy). Large batches go to several processes instead (:func:`generate`).
    """
    n = validate_factors(factors)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    global _PIXEL
    old_pixel, _PIXEL = _PIXEL, 2.0 / size
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for start in range(0, n, chunk):
                sl = slice(start, start + chunk)
                f = {k: torch.from_numpy(np.ascontiguousarray(np.asarray(v)[sl])) for k, v in
                     factors.items() if k in FACTOR_NAMES}
                img = _render_chunk(f, size)  # (B, 3, H, W)
                out[sl] = (img.permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).numpy()
    finally:
        _PIXEL = old_pixel
        torch.set_num_threads(old_threads)
    return out


def _render_block(factors: dict[str, np.ndarray]) -> np.ndarray:
    return render(factors)


def render_parallel(factors: dict[str, np.ndarray], workers: int | None = None,
                    progress: bool = False) -> np.ndarray:
    """:func:`render` spread over ``workers`` processes (default: one per core, at most 8)."""
    n = validate_factors(factors)
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or n <= 2 * BLOCK:
        return render(factors)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    starts = range(0, n, BLOCK)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    # "spawn": a forked child of a process that already ran torch's OpenMP can hang.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        blocks = pool.map(_render_block, [{k: v[s:s + BLOCK] for k, v in factors.items()}
                                          for s in starts])
        for s, images in tqdm(zip(starts, blocks), total=len(starts), disable=not progress,
                              desc="SynthFaces", unit="k img"):
            out[s:s + len(images)] = images
    return out


# ----------------------------------------------------------------------------------------
# Generation, cached splits, Dataset
# ----------------------------------------------------------------------------------------
def _block_factors(seed: int, block: int, count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
    return sample_factors(count, rng)


def generate_factors(n: int, seed: int) -> dict[str, np.ndarray]:
    """Factors of the first ``n`` faces of stream ``seed`` (every prefix is stable)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    blocks = [_block_factors(seed, b, BLOCK) for b in range(math.ceil(n / BLOCK))]
    if not blocks:
        return {name: np.zeros(0, np.float32 if name in CONTINUOUS_FACTORS else np.int64)
                for name in FACTOR_NAMES}
    return {name: np.concatenate([blk[name] for blk in blocks])[:n] for name in FACTOR_NAMES}


def generate(n: int, seed: int = 0, progress: bool = False):
    """Make ``n`` faces from ``seed`` (in several processes when ``n`` is large).

    Returns:
        images: uint8 (N, 64, 64, 3)
        factors: dict name -> (N,) float32 (continuous) or int64 (categorical index)
        attributes: dict CelebA name -> (N,) uint8 0/1
    """
    factors = generate_factors(n, seed)
    images = render_parallel(factors, progress=progress)
    return images, factors, attributes_from_factors(factors)


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Where generated splits live: ``root``, $PLAYGROUND_CACHE, or ~/.cache/playground."""
    if root is not None:
        return Path(root)
    if os.environ.get("PLAYGROUND_CACHE"):
        return Path(os.environ["PLAYGROUND_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "playground"


def load_split(split: str, root=None, progress: bool = True):
    """The full ``split`` ("train", "val", "test"), generated on first use and cached as .npz.

    Returns (images, factors, attributes) like :func:`generate`.
    """
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_SIZES)}")
    n, seed = SPLIT_SIZES[split], SPLIT_SEEDS[split]
    path = cache_dir(root) / f"synthfaces-v{RENDERER_VERSION}" / f"{split}-{n}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                images = z["images"]
                factors = {name: z[f"factor_{name}"] for name in FACTOR_NAMES}
            return images, factors, attributes_from_factors(factors)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache is regenerated
    images, factors, attributes = generate(n, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, images=images, **{f"factor_{k}": v for k, v in factors.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return images, factors, attributes


class SynthFacesDataset(torch.utils.data.Dataset):
    """A SynthFaces split as a torch Dataset.

    Items: ``{"image": float32 (3, 64, 64) in [0, 1], "attributes": float32 (A,), "index": int}``
    (the same format as :class:`playground.data.celeba.CelebADataset`).

    Args:
        split: "train" (60k), "val" (5k) or "test" (5k); fixed seeds, so fixed faces.
        n: keep only the first ``n`` faces. Small ``n`` renders them directly (no cache).
        root: cache folder (default $PLAYGROUND_CACHE or ~/.cache/playground).
    """

    attribute_names: list[str] = list(ATTRIBUTE_NAMES)

    def __init__(self, split: str = "train", n: int | None = None, root=None):
        if split not in SPLIT_SIZES:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_SIZES)}")
        full = SPLIT_SIZES[split]
        if n is not None and not 0 < n <= full:
            raise ValueError(f"n must be in 1..{full} for split {split!r}, got {n}")
        if n is not None and n <= 5_000:
            images, factors, attrs = generate(n, SPLIT_SEEDS[split])
        else:
            images, factors, attrs = load_split(split, root)
            if n is not None:
                images = images[:n]
                factors = {k: v[:n] for k, v in factors.items()}
                attrs = {k: v[:n] for k, v in attrs.items()}
        self.split = split
        self.images = images  # uint8 (N, 64, 64, 3)
        self.factors = factors
        self.attributes = attrs
        self._attr_matrix = torch.from_numpy(
            np.stack([attrs[name] for name in self.attribute_names], axis=1).astype(np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float().div_(255.0)
        return {"image": image, "attributes": self._attr_matrix[index], "index": int(index)}

    def image_tensor(self) -> torch.Tensor:
        """All images as one uint8 tensor (N, 3, 64, 64) — the fast path for trainers."""
        return torch.from_numpy(self.images).permute(0, 3, 1, 2).contiguous()
