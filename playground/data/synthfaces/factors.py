"""The 16 independent factors of a SynthFaces face, how they are drawn, and the CelebA-named
attributes derived from them."""
from __future__ import annotations

import numpy as np

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
