"""SynthFaces: procedural 64x64 faces from independent, known factors.

(Work in progress: the constants below are the stable API; the renderer follows.)
"""
from __future__ import annotations

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
