"""SynthFaces: procedural 64x64 faces from independent, known factors.

Every face is drawn from 16 factors (`factors`), sampled independently, and rendered by a
batch-vectorised torch renderer (`renderer`); `splits` generates faces by seed and caches the
train / val / test splits. Because the factors are known, disentanglement and prompt adherence
can be measured.

Public API::

    images, factors, attributes = generate(n, seed)   # uint8 (N, 64, 64, 3), dicts of (N,)
    SynthFacesDataset("train")                        # torch Dataset over a cached split
"""
from playground.data.synthfaces.factors import (
                                                ATTRIBUTE_NAMES,
                                                ATTRIBUTE_THRESHOLDS,
                                                BLOCK,
                                                CATEGORICAL_FACTORS,
                                                CATEGORY_PROBS,
                                                CONTINUOUS_FACTORS,
                                                FACTOR_NAMES,
                                                IMAGE_SIZE,
                                                RENDERER_VERSION,
                                                SPLIT_SEEDS,
                                                SPLIT_SIZES,
                                                attributes_from_factors,
                                                default_factors,
                                                sample_factors,
                                                validate_factors,
)
from playground.data.synthfaces.renderer import render, render_parallel
from playground.data.synthfaces.splits import (
                                                SynthFacesDataset,
                                                generate,
                                                generate_factors,
                                                load_split,
)

__all__ = [
    "ATTRIBUTE_NAMES", "ATTRIBUTE_THRESHOLDS", "BLOCK", "CATEGORICAL_FACTORS",
    "CATEGORY_PROBS", "CONTINUOUS_FACTORS", "FACTOR_NAMES", "IMAGE_SIZE",
    "RENDERER_VERSION", "SPLIT_SEEDS", "SPLIT_SIZES", "attributes_from_factors",
    "default_factors", "sample_factors", "validate_factors", "render", "render_parallel",
    "SynthFacesDataset", "generate", "generate_factors", "load_split",
]
